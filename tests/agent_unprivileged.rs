//! The agent as an unprivileged user, as in images that run the step as
//! `nobody` or a numeric uid: PTY shells and commands still work.

mod common;

use std::time::Duration;

use common::{AgentSpec, KeyKind, KeyPair};

#[test]
fn an_unprivileged_agent_serves_pty_shells() {
    let Some(ssh) = common::require_peer("ssh") else {
        return;
    };
    let Some(setpriv) = common::require_peer("setpriv") else {
        return;
    };
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipping: switching to an unprivileged user needs root");
        return;
    }
    let dir = common::temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = AgentSpec::new()
        .bin(setpriv)
        .no_default_listen()
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::agent_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--advertise-address",
            "127.0.0.1",
        ])
        // The key comes by environment: nobody cannot read the temp dir.
        .env("PORTHOLE_AUTHORIZED_KEYS", key.public_line())
        .cwd("/")
        .spawn();
    let out = common::run_with_timeout(
        common::ssh_command_opts(&ssh, agent.port(), key.private_path(), &["-tt"])
            .arg("id -u; tty"),
        Duration::from_secs(30),
    );
    let text = common::stdout_of(&out);
    assert!(out.status.success(), "{}", common::show(&out));
    assert!(
        text.contains("65534"),
        "the session runs as the agent's user: {text}"
    );
    assert!(
        text.contains("/dev/pts/"),
        "a PTY even without root: {text}"
    );
}
