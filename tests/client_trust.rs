//! Host trust: a pinned fingerprint must match; without a pin, porthole's
//! known-hosts file refuses unknown hosts unless `--accept-new`, and a
//! changed key unless `--accept-changed`.

mod common;

use common::porthole_cli::Porthole;
use common::{require_peer, AgentSpec, KeyKind, KeyPair};

#[test]
fn a_pin_mismatch_is_refused_with_both_fingerprints() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let agent = AgentSpec::new().authorize(&key).spawn();
    let target = format!("root@127.0.0.1:{}", agent.port());
    let key_path = key.private_path().to_str().expect("utf-8 path");
    let wrong = format!("SHA256:{}", "A".repeat(43));
    assert_ne!(wrong, agent.fingerprint());

    let o = p.run(&[
        "exec",
        &target,
        "-i",
        key_path,
        "--fingerprint",
        &wrong,
        "--",
        "echo ran",
    ]);
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(o.stderr.starts_with("porthole: "), "{}", o.describe());
    assert!(o.stderr.contains("host key mismatch"), "{}", o.describe());
    assert!(o.stderr.contains(&wrong), "shows the pin\n{}", o.describe());
    assert!(
        o.stderr.contains(agent.fingerprint()),
        "shows the presented key\n{}",
        o.describe()
    );
    assert!(!o.stdout.contains("ran"), "{}", o.describe());
    assert!(!p.known_hosts().exists(), "a pin records nothing");

    // The right pin connects (so the refusal above was the pin's doing).
    let o = p.run(&[
        "exec",
        &target,
        "-i",
        key_path,
        "--fingerprint",
        agent.fingerprint(),
        "--",
        "echo ran",
    ]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.stdout, "ran\n");
}

#[test]
fn known_hosts_refuse_unknown_and_changed_keys_without_the_flags() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let first = AgentSpec::new().authorize(&key).spawn();
    let port = first.port();
    let old_fp = first.fingerprint().to_string();
    let target = format!("root@127.0.0.1:{port}");
    let key_path = key.private_path().to_str().expect("utf-8 path");
    let exec = |flags: &[&str]| {
        let mut args = vec!["exec", target.as_str(), "-i", key_path];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "echo ran"]);
        p.run(&args)
    };
    let pattern = format!("[127.0.0.1]:{port} ");

    // Unknown, and no terminal to ask: refused.
    let o = exec(&[]);
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(o.stderr.contains("is not known"), "{}", o.describe());
    assert!(o.stderr.contains(&old_fp), "{}", o.describe());
    assert!(!o.stdout.contains("ran"));

    // --accept-new records it; then it is known without flags.
    let o = exec(&["--accept-new"]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (0, "ran\n"),
        "{}",
        o.describe()
    );
    let known = std::fs::read_to_string(p.known_hosts()).expect("known hosts written");
    assert_eq!(
        known.lines().filter(|l| l.starts_with(&pattern)).count(),
        1,
        "{known}"
    );
    let o = exec(&[]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (0, "ran\n"),
        "{}",
        o.describe()
    );

    // The execution restarts at the same address with a new host key.
    drop(first);
    let listen = format!("127.0.0.1:{port}");
    let second = AgentSpec::new()
        .authorize(&key)
        .args(["--listen", listen.as_str()])
        .spawn();
    assert_eq!(second.port(), port);
    let new_fp = second.fingerprint().to_string();
    assert_ne!(new_fp, old_fp, "a fresh host key");

    for flags in [&[][..], &["--accept-new"][..]] {
        let o = exec(flags);
        assert_eq!(o.code(), 255, "flags {flags:?}\n{}", o.describe());
        assert!(o.stderr.contains("HAS CHANGED"), "{}", o.describe());
        assert!(
            o.stderr.contains(&old_fp) && o.stderr.contains(&new_fp),
            "{}",
            o.describe()
        );
        assert!(
            o.stderr.contains("--accept-changed"),
            "names the flag\n{}",
            o.describe()
        );
        assert!(!o.stdout.contains("ran"));
    }
    assert_eq!(
        std::fs::read_to_string(p.known_hosts()).expect("read"),
        known,
        "untouched"
    );

    // The explicit flag replaces the recorded key; then it is known again.
    let o = exec(&["--accept-changed"]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (0, "ran\n"),
        "{}",
        o.describe()
    );
    let o = exec(&[]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (0, "ran\n"),
        "{}",
        o.describe()
    );
    let replaced = std::fs::read_to_string(p.known_hosts()).expect("read");
    assert_eq!(
        replaced.lines().filter(|l| l.starts_with(&pattern)).count(),
        1,
        "{replaced}"
    );
    assert_ne!(replaced, known);
}
