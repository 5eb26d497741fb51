//! `porthole shell` in a real terminal (tmux), against `porthole-agent`
//! and against OpenSSH `sshd`: a PTY shell driven by keystrokes prints a
//! computed value and the terminal's size, and its exit code comes back.

mod common;

use common::porthole_cli::{poll_until, Porthole, Server, Tmux, DEADLINE};
use common::{require_peer, AgentSpec, KeyKind, KeyPair};

fn check_shell(p: &Porthole, target: &str, connect: &[&str]) {
    let mut args = vec!["shell", target];
    args.extend_from_slice(connect);
    let line = format!("{}; echo \"porthole exited with $?\"", p.shell_line(&args));
    let tmux = Tmux::start(&line);
    // porthole prints nothing itself: the first text is the remote prompt.
    poll_until(DEADLINE, || {
        (!tmux.capture().trim().is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("no prompt from the remote shell:\n{}", tmux.capture()));
    tmux.type_text("echo shell-$((6*7)) size-$(stty size | tr ' ' x)");
    tmux.enter();
    // The typed line shows `$((6*7))`; only the shell's output shows 42.
    let pane = tmux.wait_for("shell-42 size-40x120");
    assert!(!pane.contains("porthole exited"), "{pane}");
    tmux.type_text("exit 7");
    tmux.enter();
    tmux.wait_for("porthole exited with 7");
}

#[test]
fn shell_in_terminal_against_porthole_agent() {
    if require_peer("tmux").is_none() {
        return;
    }
    let p = Porthole::new();
    let Some(server) = Server::agent(&p) else {
        return;
    };
    check_shell(&p, &server.target, &server.connect_args());
}

#[test]
fn shell_in_terminal_against_openssh_sshd() {
    if require_peer("tmux").is_none() {
        return;
    }
    let p = Porthole::new();
    let Some(server) = Server::sshd(&p) else {
        return;
    };
    check_shell(&p, &server.target, &server.connect_args());
}

#[test]
fn sigterm_ends_the_shell_and_restores_the_terminal() {
    let (Some(_), Some(_)) = (require_peer("tmux"), require_peer("ssh-keygen")) else {
        return;
    };
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let agent = AgentSpec::new().authorize(&key).spawn();
    let target = format!("root@127.0.0.1:{}", agent.port());
    let key_path = key.private_path().to_str().expect("utf-8 path");
    let shell = p.shell_line(&[
        "shell",
        &target,
        "-i",
        key_path,
        "--fingerprint",
        agent.fingerprint(),
    ]);
    // After porthole: print the local terminal's echo/icanon flags.
    let line = format!(
        "{shell}; echo \"porthole exited with $?\"; \
         echo \"modes: $(stty -a | tr ' ;' '\\n\\n' | grep -x -e echo -e -echo -e icanon -e -icanon | tr '\\n' ' ')\""
    );
    let tmux = Tmux::start(&line);
    poll_until(DEADLINE, || {
        (!tmux.capture().trim().is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("no prompt from the remote shell:\n{}", tmux.capture()));
    tmux.type_text("echo raw-$((6*7))");
    tmux.enter();
    tmux.wait_for("raw-42");

    let bin = common::porthole_cli::porthole_bin();
    let porthole = poll_until(DEADLINE, || {
        common::pids_matching(key_path)
            .into_iter()
            .find(|&pid| common::cmdline(pid).is_some_and(|c| c.starts_with(bin)))
    })
    .expect("the porthole shell process");
    common::signal(porthole, nix::sys::signal::Signal::SIGTERM);
    let pane = tmux.wait_for("modes: ");
    assert!(pane.contains("porthole exited with "), "{pane}");
    let modes = pane
        .lines()
        .find_map(|l| l.strip_prefix("modes: "))
        .expect("modes line");
    let modes: Vec<&str> = modes.split_whitespace().collect();
    assert!(
        modes.contains(&"echo") && modes.contains(&"icanon"),
        "the terminal was left in raw mode: {modes:?}\n{pane}"
    );
}
