//! The agent is dropped into arbitrary containers, so it must build as a
//! fully static binary, and that binary must serve OpenSSH like the normal
//! one. This builds a second, static release binary: over ten minutes on a
//! fresh 2-core machine, more than `cargo test` may take. It runs when
//! `PORTHOLE_SLOW_CHECKS=1` asks for it, as `.ci/run` does.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The host triple from `rustc -vV`.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = run_with_timeout(Command::new(rustc).arg("-vV"), Duration::from_secs(60));
    assert!(out.status.success(), "{}", show(&out));
    stdout_of(&out)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .expect("rustc -vV prints the host triple")
}

#[test]
fn static_agent_builds_and_serves_openssh() {
    if std::env::var("PORTHOLE_SLOW_CHECKS").as_deref() != Ok("1") {
        eprintln!(
            "skipping: the static agent needs a second full release build (over 10 minutes on \
             2 cores); set PORTHOLE_SLOW_CHECKS=1 to run it, as .ci/run does"
        );
        return;
    }
    let triple = host_triple();
    if !matches!(
        triple.as_str(),
        "x86_64-unknown-linux-gnu" | "aarch64-unknown-linux-gnu"
    ) {
        eprintln!("skipping: static glibc build is only checked on x86_64/aarch64 linux-gnu, not {triple}");
        return;
    }
    let Some(ldd) = require_peer("ldd") else {
        return;
    };
    let Some(p) = require_ssh_peers() else { return };

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { manifest.join(d) })
        .unwrap_or_else(|| manifest.join("target"))
        .join("static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&manifest)
        .args([
            "build",
            "--release",
            "--bin",
            "porthole-agent",
            "--target",
            &triple,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    let out = run_with_timeout(&mut build, Duration::from_secs(45 * 60));
    assert!(out.status.success(), "static build failed: {}", show(&out));
    let bin = target_dir
        .join(&triple)
        .join("release")
        .join("porthole-agent");
    assert!(bin.is_file(), "no binary at {}", bin.display());

    let l = run_with_timeout(Command::new(ldd).arg(&bin), Duration::from_secs(60));
    let text = format!("{}{}", stdout_of(&l), stderr_of(&l));
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "the agent is not static: {}",
        show(&l)
    );

    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = AgentSpec::new().bin(&bin).authorize(&key).spawn();
    let out = run_with_timeout(
        agent.ssh(&p.ssh, &key).arg("echo hi; exit 3"),
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    assert_eq!(stdout_of(&out), "hi\n", "{}", show(&out));
    // Forwarding to localhost by name must work without NSS in a static
    // binary.
    let echo = EchoServer::start();
    let out = run_with_timeout(
        agent
            .ssh(&p.ssh, &key)
            .arg("-W")
            .arg(format!("localhost:{}", echo.port())),
        Duration::from_secs(30),
    );
    // `ssh -W` with stdin at EOF: the channel opens (the echo server
    // accepts) and closes again.
    assert!(
        wait_until(deadline_in(DEADLINE), || echo.accepted() >= 1),
        "ssh -W localhost:{} did not reach the echo server: {}\n{}",
        echo.port(),
        show(&out),
        agent.dump()
    );
}
