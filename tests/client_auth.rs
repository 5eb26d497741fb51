//! Client keys: an encrypted key with its passphrase typed on the terminal
//! (and a clear failure without a terminal), a real `ssh-agent` holding
//! the key, a key file readable by others refused, and OpenSSH's default
//! identities in `~/.ssh` offered as `ssh` offers them.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::porthole_cli::{Porthole, SshAgent, Tmux};
use common::{require_peer, Agent, AgentSpec, KeyKind, KeyPair};

const PASSPHRASE: &str = "correct horse battery";

fn agent_for(key: &KeyPair) -> (Agent, String) {
    let agent = AgentSpec::new().authorize(key).spawn();
    let target = format!("root@127.0.0.1:{}", agent.port());
    (agent, target)
}

/// `exec TARGET [-i KEY] --fingerprint FP -- COMMAND`, the host key pinned
/// so that only the client keys are under test.
fn exec_args<'a>(
    target: &'a str,
    agent: &'a Agent,
    key: Option<&'a str>,
    command: &'a str,
) -> Vec<&'a str> {
    let mut args = vec!["exec", target];
    if let Some(key) = key {
        args.extend(["-i", key]);
    }
    args.extend(["--fingerprint", agent.fingerprint(), "--", command]);
    args
}

#[test]
fn an_encrypted_key_asks_for_its_passphrase_on_the_terminal() {
    let (Some(_), Some(_)) = (require_peer("tmux"), require_peer("ssh-keygen")) else {
        return;
    };
    let p = Porthole::new();
    let key = KeyPair::generate_with_passphrase(p.scratch(), KeyKind::Ed25519, PASSPHRASE);
    let (agent, target) = agent_for(&key);
    let key_path = key.private_path().to_str().expect("utf-8 path");
    let run = p.shell_line(&exec_args(
        &target,
        &agent,
        Some(key_path),
        "echo secret-$((6*7))",
    ));
    // Three tries, as OpenSSH gives: a wrong passphrase, then the right one
    // in the same run; then a run with three wrong ones.
    let line =
        format!("{run}; echo \"first exited with $?\"; {run}; echo \"second exited with $?\"");
    let tmux = Tmux::start(&line);
    tmux.wait_for(&format!("Passphrase for {key_path}: "));
    tmux.type_text("not the passphrase");
    tmux.enter();
    tmux.wait_for(&format!("Bad passphrase, try again for {key_path}: "));
    tmux.type_text(PASSPHRASE);
    tmux.enter();
    let pane = tmux.wait_for("first exited with 0");
    assert!(pane.contains("secret-42"), "{pane}");
    for n in 1..=3 {
        poll_prompt(&tmux, 2 + n);
        tmux.type_text("still not it");
        tmux.enter();
    }
    let pane = tmux.wait_for("second exited with 255");
    assert!(pane.contains("wrong passphrase"), "{pane}");
    assert!(
        !pane.contains("not the passphrase") && !pane.contains("still not it"),
        "a passphrase was echoed:\n{pane}"
    );
    assert!(
        !pane.contains(PASSPHRASE),
        "the passphrase was echoed:\n{pane}"
    );
}

/// Waits until the pane shows a passphrase prompt (first or retry) `n`
/// times.
fn poll_prompt(tmux: &Tmux, n: usize) -> String {
    common::porthole_cli::poll_until(common::porthole_cli::DEADLINE, || {
        let pane = tmux.capture();
        let prompts =
            pane.matches("Passphrase for ").count() + pane.matches("try again for ").count();
        (prompts >= n).then_some(pane)
    })
    .unwrap_or_else(|| panic!("prompt {n} never came:\n{}", tmux.capture()))
}

#[test]
fn an_encrypted_key_without_a_terminal_fails_clearly() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let key = KeyPair::generate_with_passphrase(p.scratch(), KeyKind::Ed25519, PASSPHRASE);
    let (agent, target) = agent_for(&key);
    let key_path = key.private_path().to_str().expect("utf-8 path");
    let o = p.run(&exec_args(&target, &agent, Some(key_path), "echo ran"));
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(o.stderr.starts_with("porthole: "), "{}", o.describe());
    assert!(
        o.stderr
            .contains(&format!("{key_path} is encrypted and there is no terminal")),
        "{}",
        o.describe()
    );
    assert!(!o.stdout.contains("ran"));
}

#[test]
fn keys_held_by_a_real_ssh_agent_authenticate() {
    let (Some(_), Some(_), Some(_)) = (
        require_peer("ssh-agent"),
        require_peer("ssh-add"),
        require_peer("ssh-keygen"),
    ) else {
        return;
    };
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let (agent, target) = agent_for(&key);
    let ssh_agent = SshAgent::start();
    ssh_agent.add(key.private_path());
    assert!(
        ssh_agent.list().contains("SHA256:"),
        "the agent holds the key"
    );
    // Move the key file away: only the agent can sign now.
    std::fs::remove_file(key.private_path()).expect("remove the key file");
    let args = exec_args(&target, &agent, None, "echo via-agent");

    let o = p.run_with_env(&args, &[("SSH_AUTH_SOCK", &ssh_agent.sock)]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.stdout, "via-agent\n");

    // Without the agent there is no key at all.
    let o = p.run(&args);
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(
        o.stderr.contains("accepted none of the keys"),
        "{}",
        o.describe()
    );
}

#[test]
fn a_key_readable_by_others_is_refused() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let (agent, target) = agent_for(&key);
    let key_path = key.private_path().to_str().expect("utf-8 path");
    let set_mode = |mode| {
        std::fs::set_permissions(key.private_path(), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    };
    let args = exec_args(&target, &agent, Some(key_path), "echo ran");

    set_mode(0o644);
    let o = p.run(&args);
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(o.stderr.starts_with("porthole: "), "{}", o.describe());
    assert!(
        o.stderr.contains(&format!("chmod 600 {key_path}")),
        "{}",
        o.describe()
    );
    assert!(!o.stdout.contains("ran"));

    set_mode(0o600);
    let o = p.run(&args);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (0, "ran\n"),
        "{}",
        o.describe()
    );
}

#[test]
fn openssh_default_identities_are_offered_as_ssh_does() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let ssh_dir = p.home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).expect("~/.ssh");
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // The user's everyday ECDSA key, the one the agent accepts, and an
    // encrypted ed25519 key it does not know, tried first and skipped.
    let everyday = KeyPair::generate(p.scratch(), KeyKind::Ecdsa);
    std::fs::rename(everyday.private_path(), ssh_dir.join("id_ecdsa")).expect("move key");
    let locked = KeyPair::generate_with_passphrase(p.scratch(), KeyKind::Ed25519, PASSPHRASE);
    std::fs::rename(locked.private_path(), ssh_dir.join("id_ed25519")).expect("move key");
    let (agent, target) = agent_for(&everyday);
    let args = exec_args(&target, &agent, None, "echo via-dot-ssh");

    let o = p.run(&args);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.stdout, "via-dot-ssh\n");
    assert!(
        !p.default_key().exists(),
        "no porthole key was made or needed"
    );

    // Without the accepted key, the error names the skipped one and why.
    std::fs::remove_file(ssh_dir.join("id_ecdsa")).expect("remove key");
    let o = p.run(&args);
    assert_eq!(o.code(), 255, "{}", o.describe());
    let skipped = format!(
        "{} skipped: encrypted and no terminal to ask",
        ssh_dir.join("id_ed25519").display()
    );
    assert!(o.stderr.contains(&skipped), "{}", o.describe());
    assert!(!o.stdout.contains("via-dot-ssh"));
}

/// The console checks its `-i` key before it opens anything: a missing key
/// or one readable by others is a plain error on a plain terminal, and no
/// source (not even the embedded demo) is started.
#[test]
fn the_console_checks_its_key_before_it_opens() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let missing = p.scratch().join("no-such-key");
    let missing = missing.to_str().expect("utf-8 path");
    let o = p.run(&["-i", missing]);
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(
        o.stderr
            .starts_with(&format!("porthole: cannot read private key {missing}")),
        "{}",
        o.describe()
    );

    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    std::fs::set_permissions(key.private_path(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let key_path = key.private_path().to_str().expect("utf-8 path");
    let o = p.run(&["-i", key_path]);
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(
        o.stderr.contains(&format!("run `chmod 600 {key_path}`")),
        "{}",
        o.describe()
    );
    // Nothing was started: no control plane, no demo executions.
    assert!(
        !p.data_dir.join("control").exists(),
        "a control plane was started"
    );
}

#[test]
fn the_public_half_given_with_i_is_named_and_a_refused_key_prints_its_line() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let (agent, target) = agent_for(&key);

    let public = key.public_path().to_str().expect("utf-8 path");
    let o = p.run(&exec_args(&target, &agent, Some(public), "echo ran"));
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(
        o.stderr.contains(&format!(
            "{public} is the public half of a key; pass the private key {}",
            key.private_path().display()
        )),
        "{}",
        o.describe()
    );
    assert!(!o.stderr.contains("chmod"), "{}", o.describe());

    // A key the agent does not know: the error names it and prints the
    // line that would let it in.
    let other = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let other_path = other.private_path().to_str().expect("utf-8 path");
    let o = p.run(&exec_args(&target, &agent, Some(other_path), "echo ran"));
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(o.stderr.contains(other_path), "{}", o.describe());
    let line = other
        .public_line()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(o.stderr.contains(&line), "{}", o.describe());
}
