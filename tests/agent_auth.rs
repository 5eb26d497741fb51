//! Authentication and host identity of `porthole-agent` as OpenSSH sees
//! them: only authorized public keys get in, passwords never do, and the
//! announced fingerprint is the key the server presents.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn unknown_key_is_refused() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let good = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let other = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&good, &[]);
    let out = run_with_timeout(agent.ssh(&p.ssh, &other).arg("echo should-not-run"), T);
    assert_refused(&out, &agent.dump());
    assert!(
        !stdout_of(&out).contains("should-not-run"),
        "{}",
        show(&out)
    );
    // The authorized key still works on the same agent.
    let ok = run_with_timeout(agent.ssh(&p.ssh, &good).arg("echo let-in"), T);
    assert_eq!(
        stdout_of(&ok),
        "let-in\n",
        "{}\n{}",
        show(&ok),
        agent.dump()
    );
}

#[test]
fn key_of_another_type_with_same_comment_is_refused() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let good = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let rsa = KeyPair::generate(dir.path(), KeyKind::Rsa);
    let agent = Agent::with_key(&good, &[]);
    let out = run_with_timeout(agent.ssh(&p.ssh, &rsa).arg("echo should-not-run"), T);
    assert_refused(&out, &agent.dump());
}

#[test]
fn password_authentication_is_refused() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let mut cmd = agent.ssh(&p.ssh, &key);
    cmd.args([
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PasswordAuthentication=yes",
        "-o",
        "KbdInteractiveAuthentication=yes",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "BatchMode=yes",
        "echo should-not-run",
    ]);
    let out = run_with_timeout(&mut cmd, T);
    assert_refused(&out, &agent.dump());
    // The server offers public-key authentication only.
    let err = stderr_of(&out);
    let methods = err
        .split("Permission denied (")
        .nth(1)
        .and_then(|s| s.split(')').next());
    assert_eq!(methods, Some("publickey"), "{}", show(&out));
    assert!(
        !stdout_of(&out).contains("should-not-run"),
        "{}",
        show(&out)
    );
}

/// `ssh-keyscan | ssh-keygen -lf -` on the agent's port shows the
/// fingerprint it announced.
fn keyscan_fingerprint(port: u16) -> Option<String> {
    let keyscan = require_peer("ssh-keyscan")?;
    let keygen = require_peer("ssh-keygen")?;
    let scan = run_with_timeout(
        Command::new(keyscan)
            .args(["-T", "10", "-t", "ed25519", "-p"])
            .arg(port.to_string())
            .arg("127.0.0.1"),
        T,
    );
    let line = stdout_of(&scan);
    assert!(
        line.contains("ssh-ed25519"),
        "ssh-keyscan found no ed25519 key: {}",
        show(&scan)
    );
    let lf = run_with_input(
        Command::new(keygen).args(["-l", "-E", "sha256", "-f", "-"]),
        Some(line.as_bytes()),
        T,
    );
    assert!(lf.status.success(), "{}", show(&lf));
    let text = stdout_of(&lf);
    let fp = text
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in ssh-keygen -lf output: {}", show(&lf)));
    Some(fp.to_string())
}

#[test]
fn announced_fingerprint_matches_keyscan() {
    if require_peer("ssh-keyscan").is_none() || require_peer("ssh-keygen").is_none() {
        return;
    }
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    assert!(
        agent.fingerprint().starts_with("SHA256:"),
        "{}",
        agent.dump()
    );
    let Some(fp) = keyscan_fingerprint(agent.port()) else {
        return;
    };
    assert_eq!(fp, agent.fingerprint(), "{}", agent.dump());
}

#[test]
fn host_key_file_is_used_and_fresh_keys_differ() {
    if require_peer("ssh-keyscan").is_none() || require_peer("ssh-keygen").is_none() {
        return;
    }
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let host = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let keygen = require_peer("ssh-keygen").expect("checked");
    let lf = run_with_timeout(
        Command::new(keygen)
            .args(["-l", "-E", "sha256", "-f"])
            .arg(host.public_path()),
        T,
    );
    let expected = stdout_of(&lf)
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{}", show(&lf)));

    let host_path = host.private_path().to_str().expect("utf-8").to_string();
    let a = Agent::with_key(&key, &["--host-key", &host_path]);
    assert_eq!(a.fingerprint(), expected, "{}", a.dump());
    assert_eq!(keyscan_fingerprint(a.port()).as_deref(), Some(&*expected));
    let b = Agent::with_key(&key, &["--host-key", &host_path]);
    assert_eq!(b.fingerprint(), expected, "same file, same key");

    // Without --host-key every run makes its own key.
    let c = Agent::with_key(&key, &[]);
    let d = Agent::with_key(&key, &[]);
    assert_ne!(c.fingerprint(), d.fingerprint());
}

#[test]
fn announcement_has_the_documented_three_lines() {
    let Some(_) = require_peer("ssh-keygen") else {
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let port = agent.port();
    assert!(
        agent.wait_stdout(" -t /bin/bash\n", DEADLINE),
        "{}",
        agent.dump()
    );
    let text = agent.stdout_text();
    let lines: Vec<&str> = text.lines().take(3).collect();
    assert_eq!(
        lines[0],
        format!(
            r#"::ssh::{{"address":"127.0.0.1","port":{port},"host_key":"{}"}}"#,
            agent.fingerprint()
        )
    );
    assert_eq!(
        lines[1],
        "You can now add the path to your private key and connect:"
    );
    assert_eq!(
        lines[2],
        format!("$ ssh -i <path-to-private-key> 127.0.0.1 -p {port} -t /bin/bash")
    );
    assert_eq!(agent.address(), "127.0.0.1");
    // The port announced is the port listening.
    assert!(port_accepts(port));
}
