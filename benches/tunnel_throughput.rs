//! Tunnel throughput: at least 512 MiB through `porthole tunnel` to
//! `porthole-agent`, and through OpenSSH `ssh -L` to OpenSSH `sshd`, in the
//! same run, on loopback. Prints each path's best and median throughput
//! in MiB/s over interleaved rounds, and the ratios.
//!
//! Run with `cargo bench --bench tunnel_throughput`. Each transfer goes one
//! way: the client sends an 8-byte length and then that many bytes; a sink
//! counts them and answers with the count once it has them all. The time
//! is from the first byte sent to the answer. Missing peers (ssh, sshd,
//! ssh-keygen) skip the run with a message; a transfer longer than 120 s
//! aborts it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::porthole_cli::{Porthole, TunnelProc};
use common::{find_executable, ssh_options, wait_for_port, AgentSpec, KeyKind, KeyPair, Sshd};

/// Bytes per transfer.
const TOTAL: u64 = 512 * 1024 * 1024;
/// Rounds; each makes one transfer per path.
const ROUNDS: usize = 5;
/// A transfer taking longer than this aborts the benchmark.
const LIMIT: Duration = Duration::from_secs(120);
const CHUNK: usize = 256 * 1024;

/// A TCP sink on 127.0.0.1: for each connection, reads an 8-byte length,
/// then that many bytes, then writes the count back.
fn start_sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("sink binds");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(LIMIT));
                let mut header = [0u8; 8];
                if stream.read_exact(&mut header).is_err() {
                    return; // a port probe
                }
                let want = u64::from_le_bytes(header);
                let mut buf = vec![0u8; CHUNK];
                let mut got = 0u64;
                while got < want {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n as u64,
                    }
                }
                let _ = stream.write_all(&got.to_le_bytes());
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// Sends [`TOTAL`] bytes through `addr` and returns the time until the
/// sink confirmed all of them.
fn transfer(addr: SocketAddr) -> Result<Duration, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).ok();
    stream.set_write_timeout(Some(LIMIT)).ok();
    stream.set_read_timeout(Some(LIMIT)).ok();
    let mut data = vec![0u8; CHUNK];
    // Incompressible-looking bytes (compression is off anyway).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let start = Instant::now();
    stream
        .write_all(&TOTAL.to_le_bytes())
        .map_err(|e| format!("write failed: {e}"))?;
    let mut left = TOTAL;
    while left > 0 {
        if start.elapsed() > LIMIT {
            return Err(format!("transfer took longer than {LIMIT:?}; aborting"));
        }
        let n = usize::try_from(left.min(CHUNK as u64)).expect("fits");
        stream
            .write_all(&data[..n])
            .map_err(|e| format!("write failed with {left} bytes left: {e}"))?;
        left -= n as u64;
    }
    let mut answer = [0u8; 8];
    stream
        .read_exact(&mut answer)
        .map_err(|e| format!("no answer from the sink within {LIMIT:?}: {e}"))?;
    let elapsed = start.elapsed();
    let got = u64::from_le_bytes(answer);
    if got != TOTAL {
        return Err(format!("the sink received {got} bytes, not {TOTAL}"));
    }
    if elapsed > LIMIT {
        return Err(format!(
            "transfer took {elapsed:?}, longer than {LIMIT:?}; aborting"
        ));
    }
    Ok(elapsed)
}

fn mib_per_s(d: Duration) -> f64 {
    TOTAL as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

/// Throughputs of one path, one per round.
struct Rates {
    name: &'static str,
    addr: SocketAddr,
    rates: Vec<f64>,
}

impl Rates {
    fn best(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }

    fn median(&self) -> f64 {
        let mut sorted = self.rates.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
    }
}

/// Runs [`ROUNDS`] rounds, each one transfer per path in turn, so a
/// passing disturbance on the machine hits every path alike.
fn measure(paths: &mut [Rates]) -> Result<(), String> {
    for round in 1..=ROUNDS {
        for path in paths.iter_mut() {
            let d = transfer(path.addr).map_err(|e| format!("{}: {e}", path.name))?;
            let rate = mib_per_s(d);
            eprintln!(
                "  {}: round {round}: {} MiB in {:.2} s = {rate:.1} MiB/s",
                path.name,
                TOTAL >> 20,
                d.as_secs_f64()
            );
            path.rates.push(rate);
        }
    }
    Ok(())
}

/// `ssh -N -L` killed on drop.
struct SshForward(Child);

impl Drop for SshForward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ssh_forward(
    ssh: &std::path::Path,
    sshd: &Sshd,
    key: &KeyPair,
    sink: SocketAddr,
    cipher: Option<&str>,
) -> Result<(SshForward, SocketAddr), String> {
    let local = common::free_port();
    let mut cmd = Command::new(ssh);
    cmd.args(ssh_options(key.private_path()))
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("127.0.0.1:{local}:127.0.0.1:{}", sink.port()))
        .arg("-p")
        .arg(sshd.port().to_string());
    if let Some(c) = cipher {
        cmd.args(["-c", c]);
    }
    cmd.arg("root@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd.spawn().map_err(|e| format!("cannot start ssh: {e}"))?;
    let forward = SshForward(child);
    if !wait_for_port(local, Duration::from_secs(30)) {
        return Err(format!(
            "ssh -L did not listen on 127.0.0.1:{local} within 30 s"
        ));
    }
    Ok((forward, SocketAddr::from(([127, 0, 0, 1], local))))
}

fn run() -> Result<(), String> {
    let (Some(ssh), Some(sshd_bin), Some(_)) = (
        find_executable("ssh"),
        find_executable("sshd"),
        find_executable("ssh-keygen"),
    ) else {
        println!("tunnel_throughput: skipped: needs OpenSSH ssh, sshd and ssh-keygen (openssh-client, openssh-server)");
        return Ok(());
    };
    let sink = start_sink();
    let p = Porthole::new();
    let key = KeyPair::generate(p.scratch(), KeyKind::Ed25519);

    // (a) porthole tunnel -> porthole-agent
    let agent = AgentSpec::new().authorize(&key).spawn();
    let target = format!("root@127.0.0.1:{}", agent.port());
    let spec = format!(":127.0.0.1:{}", sink.port());
    let key_path = key.private_path().to_string_lossy().into_owned();
    let mut tunnel = TunnelProc::start(
        &p,
        &[
            &target,
            &spec,
            "-i",
            &key_path,
            "--fingerprint",
            agent.fingerprint(),
        ],
    );
    let porthole_local = tunnel.local_addrs(1)[0];
    tunnel.wait_for(": up", 0);

    // (b) ssh -L -> sshd, with OpenSSH's default cipher and with AES-GCM
    // (the cipher porthole picks on a CPU with AES instructions).
    let sshd = Sshd::start(&sshd_bin, &[key.public_line()]);
    let (_fwd, ssh_local) = ssh_forward(&ssh, &sshd, &key, sink, None)?;
    let (_gcm, gcm_local) = ssh_forward(&ssh, &sshd, &key, sink, Some("aes128-gcm@openssh.com"))?;

    let mut paths = [
        Rates {
            name: "porthole tunnel -> porthole-agent",
            addr: porthole_local,
            rates: Vec::new(),
        },
        Rates {
            name: "ssh -L -> sshd",
            addr: ssh_local,
            rates: Vec::new(),
        },
        Rates {
            name: "ssh -c aes128-gcm@openssh.com -L -> sshd",
            addr: gcm_local,
            rates: Vec::new(),
        },
    ];
    measure(&mut paths)?;

    println!(
        "payload: {} MiB per transfer, {ROUNDS} interleaved rounds, loopback",
        TOTAL >> 20
    );
    for path in &paths {
        println!(
            "{}: best {:.1} MiB/s, median {:.1} MiB/s",
            path.name,
            path.best(),
            path.median()
        );
    }
    let [ours, ssh_default, ssh_gcm] = &paths;
    println!(
        "ratio: {:.2} (best), {:.2} (median)",
        ours.best() / ssh_default.best(),
        ours.median() / ssh_default.median()
    );
    println!(
        "ratio vs ssh with aes128-gcm: {:.2} (best), {:.2} (median)",
        ours.best() / ssh_gcm.best(),
        ours.median() / ssh_gcm.median()
    );
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; this program takes no options.
    if let Err(e) = run() {
        eprintln!("tunnel_throughput: {e}");
        std::process::exit(1);
    }
}
