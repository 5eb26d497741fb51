//! `porthole tunnel` against `porthole-agent` and against OpenSSH `sshd`:
//! 64 MiB with identical SHA-256 both ways, 20 parallel connections at
//! once, the per-tunnel summary on exit, a taken local port refused, a
//! forward to a port where nothing listens said as ssh says it
//! (`connect failed: Connection refused`), and a tunnel that survives the
//! agent being killed and started again.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::porthole_cli::{
    echo_transfer, parallel_echo, EchoServer, Porthole, Server, TunnelProc,
};
use common::{free_port, require_peer, signal, AgentSpec, KeyKind, KeyPair, DEADLINE};

const BIG: u64 = 64 * 1024 * 1024;
const PARALLEL: usize = 20;

/// Sum of the payload sizes `parallel_echo` sends.
fn parallel_bytes() -> u64 {
    (0..PARALLEL as u64).map(|i| 100_000 + i * 7919).sum()
}

/// Starts a tunnel to `echo` through `target`, pushes 64 MiB and 20
/// parallel connections through it, stops it and checks its summary.
fn check_tunnel(p: &Porthole, target: &str, connect: &[&str]) {
    let echo = EchoServer::start();
    let spec = format!(":127.0.0.1:{}", echo.port());
    let mut args = vec![target, spec.as_str()];
    args.extend_from_slice(connect);
    let mut tunnel = TunnelProc::start(p, &args);
    let local: SocketAddr = tunnel.local_addrs(1)[0];
    assert!(
        local.ip().is_loopback(),
        "binds 127.0.0.1 by default: {local}"
    );
    assert_ne!(local.port(), 0);
    tunnel.wait_for(": up", 0);

    let report = echo_transfer(local, BIG, 42);
    assert_eq!(report.received, BIG, "{report:?}\n{}", tunnel.transcript());
    assert_eq!(
        report.sent_sha256,
        report.received_sha256,
        "what came back differs from what was sent\n{}",
        tunnel.transcript()
    );

    assert_eq!(parallel_echo(local, PARALLEL), PARALLEL);

    let (status, lines) = tunnel.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM ends the tunnel cleanly\n{lines:#?}"
    );
    let expected = BIG + parallel_bytes();
    let summary = format!(
        "tunnel {local} -> 127.0.0.1:{}: {} connections, {expected} bytes up, {expected} bytes down",
        echo.port(),
        PARALLEL + 1
    );
    assert!(
        lines.contains(&summary),
        "expected `{summary}` in\n{lines:#?}"
    );
}

#[test]
fn tunnel_through_porthole_agent() {
    let p = Porthole::new();
    let Some(server) = Server::agent(&p) else {
        return;
    };
    check_tunnel(&p, &server.target, &server.connect_args());
}

#[test]
fn tunnel_through_openssh_sshd() {
    let p = Porthole::new();
    let Some(server) = Server::sshd(&p) else {
        return;
    };
    check_tunnel(&p, &server.target, &server.connect_args());
}

/// Tunnels through `target` to a loopback port where nothing listens,
/// connects to the local end and checks that porthole says what ssh says
/// (`open failed: connect failed: Connection refused`), and that the
/// tunnel still works afterwards.
fn check_refused_forward(p: &Porthole, target: &str, connect: &[&str]) {
    // Bound and released: nothing listens there now.
    let closed = free_port();
    let echo = EchoServer::start();
    let refused = format!(":127.0.0.1:{closed}");
    let allowed = format!(":127.0.0.1:{}", echo.port());
    let mut args = vec![target, refused.as_str(), allowed.as_str()];
    args.extend_from_slice(connect);
    let mut tunnel = TunnelProc::start(p, &args);
    let locals = tunnel.local_addrs(2);
    let up = tunnel.wait_for(": up", 0);

    let mut s = TcpStream::connect_timeout(&locals[0], DEADLINE).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut buf = [0u8; 16];
    // The local connection is closed without data, as ssh closes it.
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "{}", tunnel.transcript());
    let line = tunnel.wait_for("open failed", up + 1);
    let expected = format!(
        "tunnel {} -> 127.0.0.1:{closed}: channel open failed: connect failed: Connection refused",
        locals[0]
    );
    assert_eq!(tunnel.lines()[line], expected, "{}", tunnel.transcript());

    // The connection is still up: the other tunnel forwards.
    let report = echo_transfer(locals[1], 64 * 1024, 7);
    assert_eq!(
        report.sent_sha256,
        report.received_sha256,
        "{}",
        tunnel.transcript()
    );
    let (status, lines) = tunnel.stop();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
}

#[test]
fn a_refused_forward_says_connect_failed_through_porthole_agent() {
    let p = Porthole::new();
    let Some(server) = Server::agent(&p) else {
        return;
    };
    check_refused_forward(&p, &server.target, &server.connect_args());
}

#[test]
fn a_refused_forward_says_connect_failed_through_openssh_sshd() {
    let p = Porthole::new();
    let Some(server) = Server::sshd(&p) else {
        return;
    };
    check_refused_forward(&p, &server.target, &server.connect_args());
}

#[test]
fn a_local_port_in_use_is_refused_before_connecting() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    // Nothing listens on port 1: had porthole connected first, it would
    // have reported a refused connection instead.
    let p = Porthole::new();
    let spec = format!("{port}:8888");
    let o = p.run(&["tunnel", "root@127.0.0.1:1", &spec]);
    assert_eq!(o.code(), 255, "{}", o.describe());
    assert!(o.stderr.starts_with("porthole: "), "{}", o.describe());
    assert!(
        o.stderr
            .contains(&format!("local port {port} on 127.0.0.1 is already in use")),
        "{}",
        o.describe()
    );
    assert!(!o.stdout.contains("listening"), "{}", o.describe());
}

#[test]
fn tunnel_comes_back_after_the_agent_restarts_on_the_same_port() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let host_key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let host_key_path = host_key.private_path().to_str().expect("utf-8 path");
    let agent = AgentSpec::new()
        .authorize(&key)
        .args(["--host-key", host_key_path])
        .spawn();
    let port = agent.port();
    let fingerprint = agent.fingerprint().to_string();
    let echo = EchoServer::start();

    let target = format!("root@127.0.0.1:{port}");
    let spec = format!(":127.0.0.1:{}", echo.port());
    let key_path = key.private_path().to_str().expect("utf-8 path");
    let mut tunnel = TunnelProc::start(
        &p,
        &[
            &target,
            &spec,
            "-i",
            key_path,
            "--fingerprint",
            &fingerprint,
        ],
    );
    let local = tunnel.local_addrs(1)[0];
    let up = tunnel.wait_for(": up", 0);
    let before = echo_transfer(local, 1 << 20, 1);
    assert_eq!(
        before.sent_sha256,
        before.received_sha256,
        "{}",
        tunnel.transcript()
    );

    // The tunnel is idle; the agent dies without a word.
    signal(agent.pid(), nix::sys::signal::Signal::SIGKILL);
    drop(agent);
    let lost = tunnel.wait_for(": reconnecting (attempt ", up + 1);

    // Same port, same host key: the pinned fingerprint still matches.
    let listen = format!("127.0.0.1:{port}");
    let agent = AgentSpec::new()
        .authorize(&key)
        .args(["--listen", listen.as_str(), "--host-key", host_key_path])
        .spawn();
    assert_eq!(agent.port(), port);
    assert_eq!(agent.fingerprint(), fingerprint, "the host key was kept");
    tunnel.wait_for(": up", lost + 1);
    assert!(tunnel.is_running(), "porthole tunnel was not restarted");

    let after = echo_transfer(local, 1 << 20, 2);
    assert_eq!(after.received, 1 << 20, "{}", tunnel.transcript());
    assert_eq!(
        after.sent_sha256,
        after.received_sha256,
        "{}",
        tunnel.transcript()
    );

    let (status, lines) = tunnel.stop();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(": 2 connections, 2097152 bytes up, 2097152 bytes down")),
        "{lines:#?}"
    );
}

#[test]
fn a_connection_made_while_the_agent_is_down_waits_for_it() {
    if require_peer("ssh-keygen").is_none() {
        return;
    }
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let host_key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);
    let host_key_path = host_key.private_path().to_str().expect("utf-8 path");
    let agent = AgentSpec::new()
        .authorize(&key)
        .args(["--host-key", host_key_path])
        .spawn();
    let port = agent.port();
    let echo = EchoServer::start();
    let target = format!("root@127.0.0.1:{port}");
    let spec = format!(":127.0.0.1:{}", echo.port());
    let key_path = key.private_path().to_str().expect("utf-8 path");
    // Known hosts this time instead of a pin.
    let mut tunnel = TunnelProc::start(&p, &[&target, &spec, "-i", key_path, "--accept-new"]);
    let local = tunnel.local_addrs(1)[0];
    let up = tunnel.wait_for(": up", 0);

    signal(agent.pid(), nix::sys::signal::Signal::SIGKILL);
    drop(agent);
    tunnel.wait_for(": reconnecting (attempt ", up + 1);

    // Connect while the agent is gone; the connection must wait, not fail.
    let waiting = std::thread::spawn(move || echo_transfer(local, 256 * 1024, 3));
    std::thread::sleep(Duration::from_millis(500));
    let listen = format!("127.0.0.1:{port}");
    let _agent = AgentSpec::new()
        .authorize(&key)
        .args(["--listen", listen.as_str(), "--host-key", host_key_path])
        .spawn();
    let report = waiting.join().expect("the waiting connection went through");
    assert_eq!(report.received, 256 * 1024, "{}", tunnel.transcript());
    assert_eq!(report.sent_sha256, report.received_sha256);
    assert!(tunnel
        .lines()
        .iter()
        .skip(up + 1)
        .any(|l| l.ends_with(": up")));
}
