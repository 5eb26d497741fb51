//! `porthole-agent` on a port open to anyone: the limits sshd has against
//! unauthenticated clients (grace time, start-up cap, small pre-auth
//! packets, file limits), authentication as sshd counts it, and log lines
//! that a client cannot forge. Each test drives the real binary with real
//! OpenSSH clients, paramiko, or raw TCP connections from loopback
//! addresses.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);

/// A TCP connection to 127.0.0.1:`port` made from `source` (any address of
/// 127.0.0.0/8), as a flood from another host would arrive.
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(source, 0)),
    )
    .expect("bind");
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )
    .expect("connect");
    TcpStream::from(fd)
}

/// Connects from `source`, reads the server's version line and sends a
/// client one, then stops: a client that never authenticates. `None` when
/// the server closed the connection before saying anything.
fn pre_auth_client(source: Ipv4Addr, port: u16) -> Option<TcpStream> {
    let mut s = connect_from(source, port);
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut banner = Vec::new();
    let mut byte = [0u8; 1];
    while !banner.ends_with(b"\n") && banner.len() < 256 {
        match s.read(&mut byte) {
            Ok(1) => banner.push(byte[0]),
            _ => return None,
        }
    }
    assert!(
        banner.starts_with(b"SSH-2.0-porthole-agent"),
        "unexpected banner {:?}",
        String::from_utf8_lossy(&banner)
    );
    s.write_all(b"SSH-2.0-never-authenticates\r\n")
        .expect("send banner");
    Some(s)
}

/// Whether the server closes `s` within `within` (everything it sends
/// meanwhile is read and dropped).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// `ssh ... COMMAND` with `keys` offered in order (the first through
/// `ssh_command`, the rest with more `-i`).
fn ssh_offering(p: &SshPeers, port: u16, keys: &[&KeyPair], command: &str) -> Command {
    let mut cmd = ssh_command(&p.ssh, port, keys[0].private_path());
    for k in &keys[1..] {
        cmd.arg("-i").arg(k.private_path());
    }
    cmd.arg(command);
    cmd
}

#[test]
fn a_connection_that_does_not_authenticate_within_the_grace_time_is_closed() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &["--login-grace-time", "2"]);
    let mut idle = pre_auth_client(Ipv4Addr::LOCALHOST, agent.port()).expect("accepted");
    // A session that logged in outlives the grace time.
    let mut long = ssh_offering(&p, agent.port(), &[&key], "sleep 4; echo survived");
    let long = long.stdout(Stdio::piped()).spawn().expect("ssh");
    assert!(
        closed_within(&mut idle, Duration::from_secs(15)),
        "an unauthenticated connection was still open well past the 2 s grace time\n{}",
        agent.dump()
    );
    let out = long.wait_with_output().expect("ssh output");
    assert_eq!(
        stdout_of(&out),
        "survived\n",
        "{}\n{}",
        show(&out),
        agent.dump()
    );
}

#[test]
fn the_start_up_cap_refuses_a_flooding_address_and_lets_the_owner_in() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &["--max-startups", "5"]);
    let port = agent.port();

    // An authenticated session does not count against the cap.
    let mut held = ssh_offering(&p, port, &[&key], "echo in; sleep 30")
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut first = [0u8; 3];
    held.stdout
        .as_mut()
        .expect("piped")
        .read_exact(&mut first)
        .expect("the held session printed nothing");

    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let mut flood: Vec<TcpStream> = (0..5)
        .map(|i| {
            pre_auth_client(flooder, port).unwrap_or_else(|| {
                panic!(
                    "flood connection {i} was refused below the cap\n{}",
                    agent.dump()
                )
            })
        })
        .collect();
    // Past the cap, the flooding address is refused at once.
    for _ in 0..20 {
        assert!(
            pre_auth_client(flooder, port).is_none(),
            "a sixth pending connection was served\n{}",
            agent.dump()
        );
    }
    assert!(
        agent.wait_stderr("refused", DEADLINE),
        "no log line about refused connections\n{}",
        agent.dump()
    );
    // The owner, from another address, gets in while the flood holds its
    // five, and only the flood's oldest connection made room.
    let out = run_with_timeout(&mut ssh_offering(&p, port, &[&key], "echo owner-in"), T);
    assert_eq!(
        stdout_of(&out),
        "owner-in\n",
        "{}\n{}",
        show(&out),
        agent.dump()
    );
    assert!(
        closed_within(&mut flood[0], Duration::from_secs(5)),
        "the oldest flood connection was not the one evicted"
    );
    for s in &mut flood[2..] {
        assert!(
            !closed_within(s, Duration::from_millis(100)),
            "a newer flood connection was closed"
        );
    }
    // The refusals are said in one throttled line, not one per connection.
    let lines = agent.stderr_text().matches("refused").count();
    assert!(lines <= 2, "{lines} refusal lines\n{}", agent.dump());
    stop_tree(&mut held, Duration::from_secs(2));
}

#[test]
fn an_oversize_packet_before_key_exchange_closes_the_connection() {
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let mut s = pre_auth_client(Ipv4Addr::LOCALHOST, agent.port()).expect("accepted");
    // A packet announcing 256 KiB, of which 16 KiB are sent: OpenSSH closes
    // such a peer; holding a buffer for it is how 6000 of them took 1.8 GB.
    let mut packet = (256u32 * 1024).to_be_bytes().to_vec();
    packet.extend(std::iter::repeat_n(0u8, 16 * 1024));
    // The server may close while this is being written.
    let _ = s.write_all(&packet);
    assert!(
        closed_within(&mut s, Duration::from_secs(10)),
        "the agent kept a connection that announced a 256 KiB pre-auth packet\n{}",
        agent.dump()
    );
    // And it still serves others.
    assert!(pre_auth_client(Ipv4Addr::LOCALHOST, agent.port()).is_some());
}

/// The agent's soft and hard open-file limits, from /proc.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("no open-files line");
    let mut words = line.split_whitespace().skip(3);
    (
        words.next().expect("soft").to_string(),
        words.next().expect("hard").to_string(),
    )
}

/// The agent under `sh -c 'ulimit ...; exec agent ...'`.
fn agent_with_ulimit(ulimit: &str, key: &KeyPair, extra: &[&str]) -> Agent {
    let script = format!("ulimit {ulimit} && exec \"$@\"");
    AgentSpec::new()
        .bin("/bin/sh")
        .no_default_listen()
        .args(["-c", &script, "sh"])
        .arg(agent_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--advertise-address",
            "127.0.0.1",
        ])
        .arg("--authorized-key")
        .arg(key.public_line())
        .args(extra)
        .spawn()
}

#[test]
fn the_soft_file_limit_is_raised_to_the_hard_one() {
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = agent_with_ulimit("-S -n 100", &key, &[]);
    let (soft, hard) = open_file_limits(agent.pid());
    assert_eq!(soft, hard, "{}", agent.dump());
    assert_ne!(soft, "100");
}

#[test]
fn with_few_file_descriptors_a_flood_cannot_lock_the_owner_out() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    // 48 files in all; the cap asked for would take every one of them.
    let agent = agent_with_ulimit("-n 48", &key, &["--max-startups", "1000"]);
    assert!(
        agent.wait_stderr(
            "--max-startups 1000:100:1000 lowered to 24:100:24",
            DEADLINE
        ),
        "{}",
        agent.dump()
    );
    // Sixty connections from several addresses, all held.
    let flood: Vec<Option<TcpStream>> = (0..60)
        .map(|i| pre_auth_client(Ipv4Addr::new(127, 0, 1, 1 + (i % 4) as u8), agent.port()))
        .collect();
    let held = flood.iter().filter(|s| s.is_some()).count();
    assert!((1..=24).contains(&held), "{held} pending connections held");
    for attempt in 0..3 {
        let out = run_with_timeout(
            &mut ssh_offering(&p, agent.port(), &[&key], "echo owner-in"),
            T,
        );
        if stdout_of(&out) == "owner-in\n" {
            break;
        }
        assert!(attempt < 2, "{}\n{}", show(&out), agent.dump());
    }
    assert!(
        !agent.stderr_text().contains("accept failed"),
        "the file table ran out\n{}",
        agent.dump()
    );
    drop(flood);
}

#[test]
fn an_exhausted_file_table_is_reported_once_with_a_count() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = agent_with_ulimit("-n 24", &key, &[]);
    // Authenticated connections cannot be evicted: open them until the
    // agent's accept fails, then keep knocking for a few seconds.
    let mut sessions: Vec<Child> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && sessions.len() < 30 {
        let mut cmd = ssh_command(&p.ssh, agent.port(), key.private_path());
        cmd.arg("-N").stdout(Stdio::null()).stderr(Stdio::null());
        sessions.push(cmd.spawn().expect("ssh"));
        std::thread::sleep(Duration::from_millis(150));
        if agent.stderr_text().contains("accept failed") {
            break;
        }
    }
    assert!(
        agent.wait_stderr("accept failed", Duration::from_secs(10)),
        "the agent's accept never failed with 24 files\n{}",
        agent.dump()
    );
    // Knocking goes on, each attempt failing in accept.
    for _ in 0..20 {
        let _ = TcpStream::connect(("127.0.0.1", agent.port()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = agent.stderr_text().matches("accept failed").count();
    assert_eq!(lines, 1, "{}", agent.dump());
    for mut s in sessions {
        stop_tree(&mut s, Duration::from_secs(1));
    }
}

#[test]
fn five_wrong_keys_then_the_right_one_log_in_as_with_sshd() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let wrong: Vec<KeyPair> = (0..6)
        .map(|_| KeyPair::generate(dir.path(), KeyKind::Ed25519))
        .collect();
    let agent = Agent::with_key(&key, &[]);

    let mut five: Vec<&KeyPair> = wrong.iter().take(5).collect();
    five.push(&key);
    let out = run_with_timeout(&mut ssh_offering(&p, agent.port(), &five, "echo sixth"), T);
    assert_eq!(
        stdout_of(&out),
        "sixth\n",
        "{}\n{}",
        show(&out),
        agent.dump()
    );

    // A seventh is one too many, as MaxAuthTries 6 says.
    let mut six: Vec<&KeyPair> = wrong.iter().collect();
    six.push(&key);
    let out = run_with_timeout(&mut ssh_offering(&p, agent.port(), &six, "echo seventh"), T);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr_of(&out).contains("Too many authentication"),
        "{}",
        show(&out)
    );
}

#[test]
fn paramiko_with_a_wrong_first_key_logs_in() {
    // The first python3 that has paramiko: Debian's python3-paramiko goes
    // with /usr/bin/python3, which a pyenv or venv on PATH may shadow.
    let candidates = [find_executable("python3"), Some("/usr/bin/python3".into())];
    let python = candidates.into_iter().flatten().find(|py| {
        run_with_timeout(Command::new(py).args(["-c", "import paramiko"]), T)
            .status
            .success()
    });
    let Some(python) = python else {
        assert!(
            std::env::var("PORTHOLE_REQUIRE_PEERS").as_deref() != Ok("1"),
            "paramiko is required (apt-get install python3-paramiko)"
        );
        eprintln!("skipping: no python3 with paramiko (apt-get install python3-paramiko)");
        return;
    };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let wrong = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    let script = r#"
import sys, paramiko
port, wrong, right = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect("127.0.0.1", port=port, username="root", key_filename=[wrong, right],
          look_for_keys=False, allow_agent=False, timeout=10, auth_timeout=10, banner_timeout=10)
_, out, _ = c.exec_command("echo paramiko-in")
sys.stdout.write(out.read().decode())
c.close()
"#;
    let out = run_with_timeout(
        Command::new(&python)
            .args(["-c", script])
            .arg(agent.port().to_string())
            .arg(wrong.private_path())
            .arg(key.private_path()),
        T,
    );
    assert_eq!(
        stdout_of(&out),
        "paramiko-in\n",
        "{}\n{}",
        show(&out),
        agent.dump()
    );
}

#[test]
fn client_strings_reach_the_log_escaped_and_cut() {
    let Some(p) = require_ssh_peers() else { return };
    let dir = temp_dir();
    let key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let agent = Agent::with_key(&key, &[]);
    // OpenSSH's `-W` takes at most about a kilobyte.
    let host = format!("evil\x1b[2J{}", "a".repeat(1016));
    let out = run_with_timeout(
        ssh_command(&p.ssh, agent.port(), key.private_path())
            .arg("-W")
            .arg(format!("{host}:80")),
        T,
    );
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        agent.wait_stderr("not permitted", DEADLINE),
        "{}",
        agent.dump()
    );
    let log = agent.stderr_text();
    let line = log
        .lines()
        .find(|l| l.contains("not permitted"))
        .expect("checked");
    assert!(!line.contains('\x1b'), "raw escape in the log: {line:?}");
    assert!(line.contains("evil\\u{1b}[2J"), "{line:?}");
    assert!(line.len() < 400, "{} bytes: {line:?}", line.len());
    assert!(line.contains("1027 bytes in all"), "{line:?}");
}
