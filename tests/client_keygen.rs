//! `porthole keygen`: a 0600 ed25519 key and its `.pub`; asked again it
//! prints the existing key's line and keeps it (no overwrite without
//! `--force`); the key then authenticates as porthole's default key.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::porthole_cli::Porthole;
use common::AgentSpec;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn keygen_creates_keeps_an_existing_key_and_the_key_authenticates() {
    let p = Porthole::new();
    let key = p.default_key();
    let public = key.with_extension("pub");

    let o = p.run(&["keygen"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let line = o.stdout.trim().to_string();
    assert_eq!(
        o.stdout.lines().count(),
        1,
        "one public line on stdout\n{}",
        o.describe()
    );
    assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
    assert_eq!(mode(&key), 0o600, "private key mode");
    assert_eq!(std::fs::read_to_string(&public).expect(".pub").trim(), line);
    let private = std::fs::read(&key).expect("private key");
    assert!(String::from_utf8_lossy(&private).starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));

    // Asked again, it prints the same public line and keeps the key.
    let o = p.run(&["keygen"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.stdout.trim(), line, "{}", o.describe());
    assert!(
        o.stderr.contains("kept") && o.stderr.contains("--force"),
        "{}",
        o.describe()
    );
    assert_eq!(
        std::fs::read(&key).expect("key"),
        private,
        "the key was kept"
    );

    let o = p.run(&["keygen", "--force"]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    let new_line = o.stdout.trim().to_string();
    assert!(new_line.starts_with("ssh-ed25519 AAAA"), "{new_line}");
    assert_ne!(new_line, line, "a new key");
    assert_ne!(std::fs::read(&key).expect("key"), private);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        std::fs::read_to_string(&public).expect(".pub").trim(),
        new_line
    );

    // The agent authorizes the .pub; porthole finds its default key alone.
    let agent = AgentSpec::new()
        .arg("--authorized-keys")
        .arg(&public)
        .spawn();
    let target = format!("root@127.0.0.1:{}", agent.port());
    let o = p.run(&[
        "exec",
        &target,
        "--fingerprint",
        agent.fingerprint(),
        "--",
        "echo default-$((6*7))",
    ]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.stdout, "default-42\n", "{}", o.describe());
}
