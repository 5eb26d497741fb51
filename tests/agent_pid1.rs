//! The agent as a container's PID 1 (the Dockerfile's ENTRYPOINT), in a
//! real PID namespace made with `unshare`: orphaned processes are reaped,
//! the wrapped command's exit code still comes out, and a stop signal sent
//! to PID 1 still reaches the wrapped command.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    agent_bin, descendants, drain_into, require_peer, run_with_timeout, show, signal, stdout_of,
    wait_child, KeyKind, KeyPair, SharedBuf,
};

const WAIT: Duration = Duration::from_secs(30);

/// `unshare --pid --fork --mount-proc porthole-agent ... -- sh -c SCRIPT`:
/// the agent is PID 1 of a fresh PID namespace.
fn agent_as_pid1(unshare: &std::path::Path, key: &KeyPair, script: &str) -> Command {
    let mut cmd = Command::new(unshare);
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(agent_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--advertise-address",
            "127.0.0.1",
        ])
        .args(["--authorized-key", key.public_line()])
        .args(["--", "sh", "-c", script])
        .env_remove("PORTHOLE_NO_INIT")
        .stdin(Stdio::null());
    cmd
}

/// The `ps -eo pid,ppid,stat,comm` lines of zombies.
fn zombies(ps: &str) -> Vec<&str> {
    ps.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|s| s.starts_with('Z'))
        })
        .collect()
}

#[test]
fn as_pid1_the_agent_reaps_orphans_and_keeps_the_exit_code() {
    let (Some(unshare), Some(_), Some(_)) = (
        require_peer("unshare"),
        require_peer("ps"),
        require_peer("ssh-keygen"),
    ) else {
        return;
    };
    let dir = common::temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    // The inner shell exits at once, so its `sleep` is orphaned to PID 1
    // and exits a moment later: a zombie unless PID 1 reaps it.
    let script = "sh -c 'sleep 0.2 &'; sleep 1.5; ps -eo pid,ppid,stat,comm; exit 7";

    let out = run_with_timeout(&mut agent_as_pid1(&unshare, &key, script), WAIT);
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let ps = stdout_of(&out);
    assert!(ps.contains("::ssh::"), "the agent served: {}", show(&out));
    assert!(ps.contains("sleep") || ps.contains(" sh"), "{ps}");
    assert_eq!(zombies(&ps), Vec::<&str>::new(), "{ps}");

    // The same without the reaper leaves the zombie: the check above can
    // see one.
    let mut bare = agent_as_pid1(&unshare, &key, script);
    bare.env("PORTHOLE_NO_INIT", "1");
    let out = run_with_timeout(&mut bare, WAIT);
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let ps = stdout_of(&out);
    assert_eq!(zombies(&ps).len(), 1, "{ps}");
}

#[test]
fn as_pid1_the_agent_passes_a_stop_signal_to_the_wrapped_command() {
    let (Some(unshare), Some(_)) = (require_peer("unshare"), require_peer("ssh-keygen")) else {
        return;
    };
    let dir = common::temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let script = "trap 'echo got-term; exit 143' TERM; echo ready; sleep 30 & wait";
    let mut child = agent_as_pid1(&unshare, &key, script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start unshare");
    let out = SharedBuf::default();
    let err = SharedBuf::default();
    let readers = [
        drain_into(child.stdout.take().expect("stdout"), out.clone()),
        drain_into(child.stderr.take().expect("stderr"), err.clone()),
    ];
    assert!(
        out.wait_for("ready", WAIT),
        "the command never started:\n{}\n{}",
        out.text(),
        err.text()
    );

    // PID 1 of the namespace is unshare's child: what `docker stop` signals.
    let unshare_pid = child.id();
    let pid1 = descendants(unshare_pid)
        .into_iter()
        .find(|&p| common::stat_parent(p) == Some(unshare_pid))
        .expect("the namespace's PID 1");
    signal(pid1, nix::sys::signal::Signal::SIGTERM);

    let status = wait_child(&mut child, WAIT);
    if status.is_none() {
        let _ = child.kill();
    }
    for r in readers {
        let _ = r.join();
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(143),
        "{}\n{}",
        out.text(),
        err.text()
    );
    assert!(out.text().contains("got-term"), "{}", out.text());
}
