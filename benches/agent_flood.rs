//! porthole-agent against OpenSSH `sshd` (and dropbear, when installed)
//! under the probes an agent on a public port meets, in the same run, on
//! loopback:
//!
//! 1. 6000 connections that send a version line and most of a 256 KiB
//!    packet before key exchange, never finished: peak RSS and open files
//!    of the server (all its processes), and RSS 10 s after they close.
//! 2. 1000 connections that never authenticate, from eight addresses
//!    (127.0.0.2-9): how many are still open after the login grace time,
//!    and the owner's login success and latency (from 127.0.0.1) while
//!    they are held.
//! 3. Idle RSS, and RSS per extra idle authenticated connection.
//! 4. Authentication: five wrong keys then the right one (OpenSSH `ssh`),
//!    and paramiko with a wrong first key.
//!
//! Run with `cargo bench --bench agent_flood`. Both servers get the same
//! login grace time, 20 s by default so the run takes about three minutes
//! (`PORTHOLE_BENCH_GRACE=120` for sshd's default). Missing peers skip a
//! row with a message. Every wait is bounded.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{find_executable, ssh_command, AgentSpec, KeyKind, KeyPair, Sshd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PREKEX_CONNECTIONS: usize = 6000;
const HELD_CONNECTIONS: usize = 1000;
const OWNER_LOGINS: usize = 10;
const IDLE_SESSIONS: usize = 10;
const SOURCES: u8 = 8;

/// A server under test: its port, and the process whose tree is measured.
struct Target {
    port: u16,
    pid: u32,
}

/// The agent and sshd as measured targets.
fn targets(agent: &common::Agent, sshd: &Sshd) -> (Target, Target) {
    (
        Target {
            port: agent.port(),
            pid: agent.pid(),
        },
        Target {
            port: sshd.port(),
            pid: sshd.pid(),
        },
    )
}

/// RSS (kB) summed over `root` and its descendants.
fn tree_rss_kb(root: u32) -> u64 {
    std::iter::once(root)
        .chain(common::descendants(root))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

/// Open file descriptors summed over `root` and its descendants.
fn tree_fds(root: u32) -> usize {
    std::iter::once(root)
        .chain(common::descendants(root))
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(|d| d.count())
        .sum()
}

/// Samples a process tree's RSS and open files every 100 ms until dropped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, usize)>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut rss, mut fds) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                rss = rss.max(tree_rss_kb(pid));
                fds = fds.max(tree_fds(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            (rss, fds)
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Peak RSS (kB) and open files.
    fn finish(mut self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        2 + (i % usize::from(SOURCES)) as u8,
    ))
}

/// Connects from `from` and trades version lines; `None` when the server
/// closed first or did not answer within 5 s.
async fn pre_auth(from: IpAddr, port: u16) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(from, 0)).ok()?;
    let connect = socket.connect(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut s = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .ok()?
        .ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let read_line = async {
        while !line.ends_with(b"\n") && line.len() < 256 {
            if s.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            line.push(byte[0]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), read_line)
        .await
        .ok()??;
    s.write_all(b"SSH-2.0-flood\r\n").await.ok()?;
    Some(s)
}

/// Waits until the server closes `s` or `until` passes; true if closed.
async fn closed_by(s: &mut TcpStream, until: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

struct PrekexResult {
    peak_rss: u64,
    peak_fds: usize,
    rss_after: u64,
}

/// Probe 1: 6000 never-finished 256 KiB pre-KEX packets.
fn prekex_flood(rt: &tokio::runtime::Runtime, t: &Target) -> PrekexResult {
    let sampler = Sampler::start(t.pid);
    let release = Arc::new(tokio::sync::Notify::new());
    let port = t.port;
    rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(1000));
        let mut tasks = Vec::new();
        for i in 0..PREKEX_CONNECTIONS {
            let permit = gate.clone().acquire_owned().await;
            let release = release.clone();
            tasks.push(tokio::spawn(async move {
                let Some(mut s) = pre_auth(source(i), port).await else {
                    return;
                };
                let mut packet = (256u32 * 1024 + 8).to_be_bytes().to_vec();
                packet.resize(256 * 1024, 0x41);
                let send = tokio::time::timeout(Duration::from_secs(5), s.write_all(&packet));
                if !matches!(send.await, Ok(Ok(()))) {
                    return;
                }
                // Hold it (without the permit) until every one was tried.
                drop(permit);
                let mut buf = [0u8; 1024];
                tokio::select! {
                    () = release.notified() => {}
                    _ = async { while s.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {} } => {}
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        release.notify_waiters();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    });
    let (peak_rss, peak_fds) = sampler.finish();
    std::thread::sleep(Duration::from_secs(10));
    PrekexResult {
        peak_rss,
        peak_fds,
        rss_after: tree_rss_kb(t.pid),
    }
}

struct HoldResult {
    held: usize,
    open_after_grace: usize,
    peak_rss: u64,
    peak_fds: usize,
    logins_ok: usize,
    login_median_ms: Option<u128>,
}

/// Probe 2: 1000 idle unauthenticated connections; the owner logs in
/// meanwhile; how many are left after the grace time.
fn hold_and_login(
    rt: &tokio::runtime::Runtime,
    t: &Target,
    grace: Duration,
    owner: &KeyPair,
    ssh: &std::path::Path,
) -> HoldResult {
    let sampler = Sampler::start(t.pid);
    let started = tokio::time::Instant::now();
    let check_at = started + grace + Duration::from_secs(10);
    let held = Arc::new(AtomicUsize::new(0));
    let port = t.port;
    let flood = {
        let held = held.clone();
        rt.spawn(async move {
            let mut tasks = Vec::new();
            for i in 0..HELD_CONNECTIONS {
                let held = held.clone();
                tasks.push(tokio::spawn(async move {
                    let Some(mut s) = pre_auth(source(i), port).await else {
                        return false;
                    };
                    held.fetch_add(1, Ordering::Relaxed);
                    !closed_by(&mut s, check_at).await
                }));
            }
            let mut open = 0;
            for task in tasks {
                if let Ok(true) = task.await {
                    open += 1;
                }
            }
            open
        })
    };
    // Let the flood settle, then log in as the owner.
    std::thread::sleep(Duration::from_secs(3));
    let mut times = Vec::new();
    for _ in 0..OWNER_LOGINS {
        let begin = Instant::now();
        let out = common::run_with_timeout(
            ssh_command(ssh, t.port, owner.private_path()).arg("true"),
            Duration::from_secs(30),
        );
        if out.status.success() {
            times.push(begin.elapsed().as_millis());
        }
    }
    let open_after_grace = rt.block_on(flood).unwrap_or(0);
    let (peak_rss, peak_fds) = sampler.finish();
    times.sort_unstable();
    HoldResult {
        held: held.load(Ordering::Relaxed),
        open_after_grace,
        peak_rss,
        peak_fds,
        logins_ok: times.len(),
        login_median_ms: times.get(times.len() / 2).copied(),
    }
}

/// Probe 3: idle RSS, and RSS per extra idle `ssh -N` connection. Both
/// are measured 4 s after the last change (a login first, then the
/// sessions), when the agent has tidied up after connections.
fn idle_memory(t: &Target, owner: &KeyPair, ssh: &std::path::Path) -> (u64, f64) {
    let _ = common::run_with_timeout(
        ssh_command(ssh, t.port, owner.private_path()).arg("true"),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(4));
    let idle = tree_rss_kb(t.pid);
    let mut sessions: Vec<_> = (0..IDLE_SESSIONS)
        .filter_map(|_| {
            ssh_command(ssh, t.port, owner.private_path())
                .arg("-N")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    let busy = tree_rss_kb(t.pid);
    for s in &mut sessions {
        common::stop_tree(s, Duration::from_secs(1));
    }
    (idle, (busy as f64 - idle as f64) / IDLE_SESSIONS as f64)
}

/// Probe 4a: five wrong keys then the right one; (logged in, seconds).
fn wrong_keys_then_right(
    t: &Target,
    dir: &std::path::Path,
    owner: &KeyPair,
    ssh: &std::path::Path,
) -> (bool, f64) {
    let wrong: Vec<KeyPair> = (0..5)
        .map(|_| KeyPair::generate(dir, KeyKind::Ed25519))
        .collect();
    let mut cmd = ssh_command(ssh, t.port, wrong[0].private_path());
    for k in &wrong[1..] {
        cmd.arg("-i").arg(k.private_path());
    }
    cmd.arg("-i").arg(owner.private_path()).arg("true");
    let begin = Instant::now();
    let out = common::run_with_timeout(&mut cmd, Duration::from_secs(60));
    (out.status.success(), begin.elapsed().as_secs_f64())
}

/// Probe 4b: paramiko whose first key is wrong; (logged in, seconds), or
/// `None` without a python3 that has paramiko.
fn paramiko_wrong_first(t: &Target, dir: &std::path::Path, owner: &KeyPair) -> Option<(bool, f64)> {
    let python = [find_executable("python3"), Some("/usr/bin/python3".into())]
        .into_iter()
        .flatten()
        .find(|py| {
            Command::new(py)
                .args(["-c", "import paramiko"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
    let wrong = KeyPair::generate(dir, KeyKind::Ed25519);
    let script = "import sys, paramiko\n\
        c = paramiko.SSHClient()\n\
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy())\n\
        c.connect('127.0.0.1', port=int(sys.argv[1]), username='root', key_filename=[sys.argv[2], sys.argv[3]],\n\
                  look_for_keys=False, allow_agent=False, timeout=70, auth_timeout=70, banner_timeout=70)\n\
        c.close()\n";
    let begin = Instant::now();
    let out = common::run_with_timeout(
        Command::new(python)
            .args(["-c", script])
            .arg(t.port.to_string())
            .arg(wrong.private_path())
            .arg(owner.private_path()),
        Duration::from_secs(90),
    );
    Some((out.status.success(), begin.elapsed().as_secs_f64()))
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn main() {
    let (Some(ssh), Some(sshd_path)) = (find_executable("ssh"), find_executable("sshd")) else {
        eprintln!("skipping: the flood benchmark needs OpenSSH ssh and sshd");
        return;
    };
    // The flood itself needs thousands of sockets.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(1 << 20),
            hard,
        );
    }
    let grace = Duration::from_secs(
        std::env::var("PORTHOLE_BENCH_GRACE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = common::temp_dir();
    let owner = KeyPair::generate(dir.path(), KeyKind::Ed25519);
    let grace_arg = grace.as_secs().to_string();

    // Fresh servers for each probe, so that one's leftovers do not weigh
    // on the next.
    let agent = || {
        AgentSpec::new()
            .authorize(&owner)
            .args(["--login-grace-time", &grace_arg])
            .spawn()
    };
    let sshd = || {
        Sshd::start_with(
            &sshd_path,
            &[owner.public_line()],
            &format!("LoginGraceTime {}", grace.as_secs()),
        )
    };

    println!("agent_flood: porthole-agent vs OpenSSH sshd, loopback, grace time {grace:?}");
    let mut rows: Vec<String> = Vec::new();

    // 1. Pre-KEX flood.
    let (a, s) = (agent(), sshd());
    let (at, st) = targets(&a, &s);
    let (idle_a, idle_s) = (tree_rss_kb(at.pid), tree_rss_kb(st.pid));
    let pa = prekex_flood(&rt, &at);
    let ps = prekex_flood(&rt, &st);
    rows.push(format!(
        "| {PREKEX_CONNECTIONS} x 256 KiB pre-KEX packet: peak RSS | {} | {} |",
        mb(pa.peak_rss),
        mb(ps.peak_rss)
    ));
    rows.push(format!(
        "| same: peak open files | {} | {} |",
        pa.peak_fds, ps.peak_fds
    ));
    rows.push(format!(
        "| same: RSS idle before -> 10 s after they close | {} -> {} | {} -> {} |",
        mb(idle_a),
        mb(pa.rss_after),
        mb(idle_s),
        mb(ps.rss_after)
    ));
    drop((a, s));

    // 2. Held unauthenticated connections, and the owner meanwhile.
    let (a, s) = (agent(), sshd());
    let (at, st) = targets(&a, &s);
    let (ha, hs) = std::thread::scope(|scope| {
        let ha = scope.spawn(|| hold_and_login(&rt, &at, grace, &owner, &ssh));
        let hs = scope.spawn(|| hold_and_login(&rt, &st, grace, &owner, &ssh));
        (
            ha.join().expect("agent probe"),
            hs.join().expect("sshd probe"),
        )
    });
    let login = |h: &HoldResult| {
        format!(
            "{}/{OWNER_LOGINS}, median {}",
            h.logins_ok,
            h.login_median_ms
                .map_or("-".to_string(), |ms| format!("{ms} ms"))
        )
    };
    rows.push(format!(
        "| {HELD_CONNECTIONS} idle unauthenticated connections: accepted (version line answered) | {} | {} |",
        ha.held, hs.held
    ));
    rows.push(format!(
        "| same: still open {} s after the grace time | {} | {} |",
        10, ha.open_after_grace, hs.open_after_grace
    ));
    rows.push(format!(
        "| same: peak RSS / open files | {} / {} | {} / {} |",
        mb(ha.peak_rss),
        ha.peak_fds,
        mb(hs.peak_rss),
        hs.peak_fds
    ));
    rows.push(format!(
        "| owner's logins while they are held | {} | {} |",
        login(&ha),
        login(&hs)
    ));
    drop((a, s));

    // 3. Idle memory.
    let (a, s) = (agent(), sshd());
    let (at, st) = targets(&a, &s);
    let (ia, pa) = idle_memory(&at, &owner, &ssh);
    let (is, ps) = idle_memory(&st, &owner, &ssh);
    rows.push(format!(
        "| idle RSS (4 s after a login) | {} | {} |",
        mb(ia),
        mb(is)
    ));
    rows.push(format!(
        "| RSS per extra idle authenticated connection | {:.0} kB | {:.0} kB |",
        pa, ps
    ));

    // 4. Authentication.
    let (ok_a, secs_a) = wrong_keys_then_right(&at, dir.path(), &owner, &ssh);
    let (ok_s, secs_s) = wrong_keys_then_right(&st, dir.path(), &owner, &ssh);
    let verdict = |ok: bool, secs: f64| {
        format!(
            "{} in {secs:.2} s",
            if ok { "logged in" } else { "refused" }
        )
    };
    rows.push(format!(
        "| ssh: 5 wrong keys, then the right one | {} | {} |",
        verdict(ok_a, secs_a),
        verdict(ok_s, secs_s)
    ));
    match (
        paramiko_wrong_first(&at, dir.path(), &owner),
        paramiko_wrong_first(&st, dir.path(), &owner),
    ) {
        (Some((ok_a, a_s)), Some((ok_s, s_s))) => rows.push(format!(
            "| paramiko, wrong key first | {} | {} |",
            verdict(ok_a, a_s),
            verdict(ok_s, s_s)
        )),
        _ => println!("(paramiko row skipped: no python3 with paramiko)"),
    }
    drop((a, s));

    if let Some(dropbear) = dropbear_idle_rss(dir.path()) {
        rows.push(format!(
            "| idle RSS, dropbear for reference | {} | |",
            mb(dropbear)
        ));
    }

    println!("\n| probe | porthole-agent | sshd |\n|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// Idle RSS of dropbear on loopback, when it is installed.
fn dropbear_idle_rss(dir: &std::path::Path) -> Option<u64> {
    let dropbear = find_executable("dropbear")?;
    let keygen = find_executable("dropbearkey")?;
    let key = dir.join("dropbear_ed25519");
    Command::new(keygen)
        .args(["-t", "ed25519", "-f"])
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let port = common::free_port();
    let mut child = Command::new(dropbear)
        .args(["-F", "-E", "-s", "-p"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-r")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let up = common::wait_for_port(port, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let rss = up.then(|| tree_rss_kb(child.id()));
    common::stop_tree(&mut child, Duration::from_secs(1));
    rss
}
