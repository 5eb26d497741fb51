//! The test peers themselves: a throwaway OpenSSH sshd and the client
//! options the other tests use. These also pin OpenSSH behaviour that the
//! agent tests rely on.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn sshd_helper_serves_a_command() {
    let Some(p) = require_ssh_peers() else { return };
    let Some(sshd) = require_peer("sshd") else {
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let server = Sshd::start(&sshd, &[key.public_line()]);
    let out = run_with_timeout(
        ssh_command(&p.ssh, server.port(), key.private_path()).arg("echo via-sshd"),
        T,
    );
    assert!(
        out.status.success(),
        "{}\n--- sshd ---\n{}",
        show(&out),
        server.stderr_text()
    );
    assert_eq!(stdout_of(&out), "via-sshd\n", "{}", show(&out));
}

#[test]
fn sshd_helper_refuses_an_unknown_key() {
    let Some(p) = require_ssh_peers() else { return };
    let Some(sshd) = require_peer("sshd") else {
        return;
    };
    let dir = temp_dir();
    let good = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let other = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let server = Sshd::start(&sshd, &[good.public_line()]);
    let out = run_with_timeout(
        ssh_command(&p.ssh, server.port(), other.private_path()).arg("echo nope"),
        T,
    );
    assert_refused(&out, "");
}

/// What the agent's signal test assumes: OpenSSH's client exits 255 when
/// the remote command is killed by a signal (sshd sends `exit-signal`, not
/// `exit-status`).
#[test]
fn openssh_client_exits_255_when_the_remote_command_is_killed() {
    let Some(p) = require_ssh_peers() else { return };
    let Some(sshd) = require_peer("sshd") else {
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let server = Sshd::start(&sshd, &[key.public_line()]);
    let out = run_with_timeout(
        ssh_command(&p.ssh, server.port(), key.private_path())
            .arg("echo before-signal; kill -TERM $$"),
        T,
    );
    assert!(stdout_of(&out).contains("before-signal"), "{}", show(&out));
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
}

#[test]
fn keypair_helper_makes_every_kind_and_passphrase_keys() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let dir = temp_dir();
    for (kind, prefix) in [
        (KeyKind::Ed25519, "ssh-ed25519 "),
        (KeyKind::Ecdsa, "ecdsa-sha2-nistp256 "),
        (KeyKind::Rsa, "ssh-rsa "),
    ] {
        let k = KeyPair::generate(dir.path(), kind);
        assert!(k.public_line().starts_with(prefix), "{}", k.public_line());
        assert!(k.private_path().exists() && k.public_path().exists());
    }
    let enc = KeyPair::generate_with_passphrase(dir.path(), KeyKind::Ed25519, "s3cret");
    let keygen = require_peer("ssh-keygen").expect("checked above");
    // Deriving the public key needs the passphrase: a wrong one fails.
    let wrong = run_with_timeout(
        std::process::Command::new(&keygen)
            .args(["-y", "-P", "wrong", "-f"])
            .arg(enc.private_path()),
        T,
    );
    assert!(!wrong.status.success(), "{}", show(&wrong));
    let right = run_with_timeout(
        std::process::Command::new(&keygen)
            .args(["-y", "-P", "s3cret", "-f"])
            .arg(enc.private_path()),
        T,
    );
    assert!(right.status.success(), "{}", show(&right));
    let derived = stdout_of(&right);
    let mut derived = derived.split_whitespace();
    let mut line = enc.public_line().split_whitespace();
    assert_eq!(derived.next(), line.next());
    assert_eq!(derived.next(), line.next());
}
