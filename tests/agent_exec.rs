//! OpenSSH client against `porthole-agent`: commands, exit codes, stderr,
//! PTYs and interactive shells.

mod common;

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn exec_exit_code_with(kind: KeyKind) {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), kind);
    let agent = Agent::with_key(&key, &[]);
    let out = run_with_timeout(agent.ssh(&p.ssh, &key).arg("echo hi; exit 3"), T);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{} key: {}\n{}",
        kind.as_str(),
        show(&out),
        agent.dump()
    );
    assert_eq!(stdout_of(&out), "hi\n", "{}", show(&out));
}

#[test]
fn exec_prints_output_and_propagates_exit_code_ed25519() {
    exec_exit_code_with(KeyKind::Ed25519);
}

#[test]
fn exec_with_rsa_client_key() {
    exec_exit_code_with(KeyKind::Rsa);
}

#[test]
fn exec_with_ecdsa_client_key() {
    exec_exit_code_with(KeyKind::Ecdsa);
}

#[test]
fn exec_stderr_stays_on_stderr() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let out = run_with_timeout(
        agent
            .ssh(&p.ssh, &key)
            .arg("echo out-line; echo err-line >&2"),
        T,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    let (o, e) = (stdout_of(&out), stderr_of(&out));
    assert!(o.contains("out-line"), "{}", show(&out));
    assert!(
        !o.contains("err-line"),
        "stderr leaked into stdout: {}",
        show(&out)
    );
    assert!(e.contains("err-line"), "{}", show(&out));
    assert!(!e.contains("out-line"), "{}", show(&out));
}

#[test]
fn exec_runs_in_the_agents_directory_with_its_environment() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let workdir = dir.path().join("work");
    std::fs::create_dir(&workdir).expect("mkdir");
    let agent = AgentSpec::new()
        .authorize(&key)
        .cwd(&workdir)
        .env("PORTHOLE_TEST_MARKER", "marker-value-17")
        .spawn();
    let out = run_with_timeout(
        agent
            .ssh(&p.ssh, &key)
            .arg("pwd; echo \"marker=$PORTHOLE_TEST_MARKER\""),
        T,
    );
    assert!(out.status.success(), "{}\n{}", show(&out), agent.dump());
    let text = stdout_of(&out);
    let real = std::fs::canonicalize(&workdir).expect("canonicalize");
    assert!(
        text.lines().next() == Some(real.to_str().expect("utf-8 path")),
        "expected the session to start in {}: {}",
        real.display(),
        show(&out)
    );
    assert!(text.contains("marker=marker-value-17"), "{}", show(&out));
}

#[test]
fn exec_with_forced_tty_gets_a_pts() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let out = run_with_timeout(agent.ssh(&p.ssh, &key).arg("-tt").arg("tty"), T);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    let text = stdout_of(&out);
    let line = text.trim();
    let n = line.strip_prefix("/dev/pts/").unwrap_or_else(|| {
        panic!("`tty` did not print a /dev/pts path: {}", show(&out));
    });
    assert!(
        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()),
        "{}",
        show(&out)
    );
}

#[test]
fn exec_without_tty_has_no_tty() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let out = run_with_timeout(agent.ssh(&p.ssh, &key).arg("tty || true"), T);
    assert!(out.status.success(), "{}\n{}", show(&out), agent.dump());
    assert!(
        stdout_of(&out).contains("not a tty"),
        "a command without -t must not get a PTY: {}",
        show(&out)
    );
}

#[test]
fn scripted_pty_shell_evaluates_input() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let mut cmd = agent.ssh(&p.ssh, &key);
    cmd.arg("-tt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start ssh");
    let out = SharedBuf::default();
    let err = SharedBuf::default();
    drain_into(child.stdout.take().expect("stdout"), out.clone());
    drain_into(child.stderr.take().expect("stderr"), err.clone());
    // Stdin stays open until the shell has exited: an EOF could end the
    // session before the shell has read the script.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"echo $((6*7))xyz\nexit\n")
        .expect("write the script");
    stdin.flush().expect("flush");
    let status = wait_child(&mut child, T);
    drop(stdin);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = out.text();
    assert!(
        status.is_some(),
        "the shell did not exit after `exit`\n--- stdout ---\n{text}\n--- stderr ---\n{}\n{}",
        err.text(),
        agent.dump()
    );
    assert!(
        text.contains("42xyz"),
        "the shell did not evaluate $((6*7)) (status {status:?})\n--- stdout ---\n{text}\n\
         --- stderr ---\n{}\n{}",
        err.text(),
        agent.dump()
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
}

/// OpenSSH's client does not turn the server's `exit-signal` into an exit
/// code: without an `exit-status` it exits 255 (checked against a real
/// sshd in peers_sshd.rs). The agent must report the signal the same way,
/// after the output that came before it.
#[test]
fn command_killed_by_signal_makes_ssh_exit_255() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let out = run_with_timeout(
        agent
            .ssh(&p.ssh, &key)
            .arg("echo before-signal; kill -TERM $$"),
        T,
    );
    assert!(
        stdout_of(&out).contains("before-signal"),
        "the session did not run: {}\n{}",
        show(&out),
        agent.dump()
    );
    assert_eq!(
        out.status.code(),
        Some(255),
        "{}\n{}",
        show(&out),
        agent.dump()
    );
}

#[test]
fn stdin_reaches_the_command_and_eof_ends_it() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let out = run_with_input(agent.ssh(&p.ssh, &key).arg("sha256sum"), Some(&input), T);
    assert!(out.status.success(), "{}\n{}", show(&out), agent.dump());
    assert!(
        stdout_of(&out).starts_with(&sha256_hex(&input)),
        "{}",
        show(&out)
    );
}
