//! `ssh -L` through `porthole-agent`: bulk data integrity, the
//! direct-tcpip policy, `--permit-open`, and a refused target reported as
//! sshd reports it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::*;

/// A local forward `ssh -N -L ...` whose first local port accepts
/// connections. Retries with other local ports if one was taken meanwhile.
struct Forward {
    ssh: ChildGuard,
    locals: Vec<u16>,
}

/// Starts `ssh -N` with one `-L LOCAL:TARGET` per target and waits until
/// the local port of `wait_for` (an index into `targets`) accepts.
fn forward(
    ssh: &std::path::Path,
    agent: &Agent,
    key: &KeyPair,
    targets: &[&str],
    extra: &[&str],
) -> Forward {
    let mut last = String::new();
    for _attempt in 0..5 {
        let locals: Vec<u16> = targets.iter().map(|_| free_port()).collect();
        let mut cmd = ssh_command_opts(ssh, agent.port(), key.private_path(), extra);
        cmd.args(["-N", "-o", "ExitOnForwardFailure=yes"]);
        for (l, t) in locals.iter().zip(targets) {
            cmd.arg("-L").arg(format!("127.0.0.1:{l}:{t}"));
        }
        let mut child = ChildGuard::spawn(&mut cmd);
        let up = wait_until(deadline_in(DEADLINE), || {
            child.try_exit().is_some() || locals.iter().all(|&l| port_accepts_quietly(l))
        });
        if up && child.try_exit().is_none() {
            return Forward { ssh: child, locals };
        }
        last = format!("exit {:?}\n{}", child.try_exit(), child.dump());
    }
    panic!("ssh -L did not come up: {last}\n{}", agent.dump());
}

/// Whether the local side of a forward listens. A plain connect would make
/// ssh open a channel; that is harmless (the echo server or the refusal
/// handles it), but reading /proc is quieter and has no side effects.
fn port_accepts_quietly(port: u16) -> bool {
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| t.contains(&needle))
}

/// A deterministic pseudo-random stream (xorshift64*).
struct Prng(u64);

impl Prng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[test]
fn forward_64_mib_through_an_echo_server_intact() {
    const TOTAL: usize = 64 * 1024 * 1024;
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let echo = EchoServer::start();
    let target = format!("127.0.0.1:{}", echo.port());
    let fwd = forward(&p.ssh, &agent, &key, &[&target], &[]);

    let stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], fwd.locals[0])),
        Duration::from_secs(10),
    )
    .expect("connect to the forward");
    // Bounded: a stall of a minute fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut reader = stream.try_clone().expect("clone");
    let mut writer = stream;

    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut prng = Prng(0x9E37_79B9_7F4A_7C15);
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            prng.fill(&mut buf);
            writer
                .write_all(&buf)
                .map_err(|e| format!("write after {sent} bytes: {e}"))?;
            hash.update(&buf);
            sent += buf.len();
        }
        Ok::<_, String>(hash.finalize())
    });
    let receiver = std::thread::spawn(move || {
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < TOTAL {
            let want = buf.len().min(TOTAL - got);
            match reader.read(&mut buf[..want]) {
                Ok(0) => return Err(format!("EOF after {got} bytes")),
                Ok(n) => {
                    hash.update(&buf[..n]);
                    got += n;
                }
                Err(e) => return Err(format!("read after {got} bytes: {e}")),
            }
        }
        Ok::<_, String>(hash.finalize())
    });
    let sent = sender.join().expect("sender thread");
    let got = receiver.join().expect("receiver thread");
    let elapsed = started.elapsed();
    let sent = sent.unwrap_or_else(|e| panic!("sending: {e}\n{}", agent.dump()));
    let got =
        got.unwrap_or_else(|e| panic!("receiving: {e}\n{}\n{}", fwd.ssh.dump(), agent.dump()));
    assert_eq!(
        sent, got,
        "the echoed data differs from what was sent (64 MiB in {elapsed:?})"
    );
    eprintln!(
        "64 MiB echoed in {elapsed:?} ({:.1} MiB/s each way)",
        64.0 / elapsed.as_secs_f64()
    );
    assert_eq!(echo.accepted(), 1, "exactly the one data connection");
}

#[test]
fn forward_half_close_reaches_the_target_and_back() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let echo = EchoServer::start();
    let target = format!("127.0.0.1:{}", echo.port());
    let fwd = forward(&p.ssh, &agent, &key, &[&target], &[]);
    let mut s = TcpStream::connect(("127.0.0.1", fwd.locals[0])).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"half-close please").expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // The echo server only closes after it saw our EOF: reading to the end
    // shows EOF travelled both ways.
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .unwrap_or_else(|e| panic!("read_to_end: {e}\n{}", agent.dump()));
    assert_eq!(back, b"half-close please");
}

#[test]
fn forward_to_a_foreign_address_is_prohibited_and_the_connection_survives() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let echo = EchoServer::start();
    let allowed = format!("127.0.0.1:{}", echo.port());
    // TEST-NET-3: not this machine, so the policy refuses it before any
    // connection attempt; no packet leaves the machine.
    let fwd = forward(
        &p.ssh,
        &agent,
        &key,
        &["203.0.113.1:9", &allowed],
        // "open failed" is logged at INFO.
        &["-o", "LogLevel=INFO"],
    );

    let mut refused = TcpStream::connect(("127.0.0.1", fwd.locals[0])).expect("connect");
    refused.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut buf = [0u8; 16];
    // ssh closes the local connection when the channel is refused.
    let n = refused.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a refused forward must not carry data");
    assert!(
        fwd.ssh
            .stderr
            .wait_for("administratively prohibited", DEADLINE),
        "ssh did not report the refusal\n{}\n{}",
        fwd.ssh.dump(),
        agent.dump()
    );
    assert!(
        agent.wait_stderr("203.0.113.1:9", DEADLINE),
        "the agent did not log the refusal\n{}",
        agent.dump()
    );

    // The same SSH connection still forwards to an allowed target.
    let back = echo_roundtrip(fwd.locals[1], b"still-usable", DEADLINE);
    assert_eq!(
        back.as_deref(),
        Some(&b"still-usable"[..]),
        "{}\n{}",
        fwd.ssh.dump(),
        agent.dump()
    );
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn forward_to_a_closed_port_says_connect_failed_connection_refused() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    // Bound and released: nothing listens there now.
    let closed = format!("127.0.0.1:{}", free_port());
    let fwd = forward(&p.ssh, &agent, &key, &[&closed], &["-o", "LogLevel=INFO"]);
    let mut s = TcpStream::connect(("127.0.0.1", fwd.locals[0])).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    // What ssh prints against sshd: `channel 2: open failed: connect
    // failed: Connection refused`.
    assert!(
        fwd.ssh
            .stderr
            .wait_for("open failed: connect failed: Connection refused", DEADLINE),
        "{}\n{}",
        fwd.ssh.dump(),
        agent.dump()
    );
    assert!(
        agent.wait_stderr(
            &format!("cannot connect to {closed}: Connection refused"),
            DEADLINE
        ),
        "{}",
        agent.dump()
    );
}

#[test]
fn forward_to_an_unpermitted_name_is_prohibited_without_a_lookup() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let fwd = forward(
        &p.ssh,
        &agent,
        &key,
        &["not-permitted.invalid:9"],
        &["-o", "LogLevel=INFO"],
    );
    let mut s = TcpStream::connect(("127.0.0.1", fwd.locals[0])).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    assert!(
        fwd.ssh
            .stderr
            .wait_for("administratively prohibited", DEADLINE),
        "{}\n{}",
        fwd.ssh.dump(),
        agent.dump()
    );
}

#[test]
fn forward_to_localhost_by_name_is_allowed() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let echo = EchoServer::start();
    let target = format!("localhost:{}", echo.port());
    let fwd = forward(&p.ssh, &agent, &key, &[&target], &[]);
    let back = echo_roundtrip(fwd.locals[0], b"by-name", DEADLINE);
    assert_eq!(
        back.as_deref(),
        Some(&b"by-name"[..]),
        "{}\n{}",
        fwd.ssh.dump(),
        agent.dump()
    );
}

/// A name that /etc/hosts maps to 127.x (other than `localhost`), when the
/// resolver reads files first: such a name resolves without DNS traffic.
fn loopback_alias() -> Option<String> {
    let nss = std::fs::read_to_string("/etc/nsswitch.conf").ok()?;
    let hosts_line = nss.lines().find(|l| l.trim_start().starts_with("hosts:"))?;
    if hosts_line.split_whitespace().nth(1) != Some("files") {
        return None;
    }
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|l| {
        let l = l.split('#').next()?;
        let mut words = l.split_whitespace();
        let ip = words.next()?;
        if !ip.starts_with("127.") {
            return None;
        }
        words
            .find(|n| !n.eq_ignore_ascii_case("localhost") && !n.contains('.'))
            .map(str::to_string)
    })
}

#[test]
fn permit_open_widens_the_policy_to_a_named_target() {
    let Some(p) = require_ssh_peers() else { return };
    let Some(alias) = loopback_alias() else {
        eprintln!("skipping: no loopback alias in /etc/hosts to test --permit-open with");
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let echo = EchoServer::start();
    let target = format!("{alias}:{}", echo.port());

    // Refused by default: a name that no rule names is not even looked up.
    {
        let agent = Agent::with_key(&key, &[]);
        let fwd = forward(&p.ssh, &agent, &key, &[&target], &["-o", "LogLevel=INFO"]);
        let back = echo_roundtrip(fwd.locals[0], b"x", Duration::from_secs(5));
        assert_eq!(back, None);
        assert!(
            fwd.ssh
                .stderr
                .wait_for("administratively prohibited", DEADLINE),
            "{}\n{}",
            fwd.ssh.dump(),
            agent.dump()
        );
    }
    // Allowed by an exact rule, a wildcard port and a wildcard host.
    for rule in [
        target.clone(),
        format!("{alias}:*"),
        format!("*:{}", echo.port()),
    ] {
        let agent = Agent::with_key(&key, &["--permit-open", &rule]);
        let fwd = forward(&p.ssh, &agent, &key, &[&target], &[]);
        let back = echo_roundtrip(fwd.locals[0], b"permitted", DEADLINE);
        assert_eq!(
            back.as_deref(),
            Some(&b"permitted"[..]),
            "--permit-open {rule}\n{}\n{}",
            fwd.ssh.dump(),
            agent.dump()
        );
    }
    // A rule for another port does not allow it.
    let other = format!("{alias}:{}", echo.port().wrapping_add(1).max(1));
    let agent = Agent::with_key(&key, &["--permit-open", &other]);
    let fwd = forward(&p.ssh, &agent, &key, &[&target], &["-o", "LogLevel=INFO"]);
    assert_eq!(
        echo_roundtrip(fwd.locals[0], b"x", Duration::from_secs(5)),
        None
    );
    assert!(
        fwd.ssh
            .stderr
            .wait_for("administratively prohibited", DEADLINE),
        "{}\n{}",
        fwd.ssh.dump(),
        agent.dump()
    );
}
