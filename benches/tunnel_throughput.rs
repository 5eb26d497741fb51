//! Tunnel throughput: at least 512 MiB through `porthole tunnel` to
//! `porthole-agent`, and through OpenSSH `ssh -L` to OpenSSH `sshd`, in the
//! same run, on loopback. Prints both throughputs in MiB/s and their ratio.
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
/// Transfers per path; the best one counts (the first warms caches up).
const ROUNDS: usize = 3;
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

/// Runs [`ROUNDS`] transfers and returns the best throughput.
fn measure(name: &str, addr: SocketAddr) -> Result<f64, String> {
    let mut best: f64 = 0.0;
    for round in 1..=ROUNDS {
        let d = transfer(addr).map_err(|e| format!("{name}: {e}"))?;
        let rate = mib_per_s(d);
        eprintln!(
            "  {name}: round {round}: {} MiB in {:.2} s = {rate:.1} MiB/s",
            TOTAL >> 20,
            d.as_secs_f64()
        );
        best = best.max(rate);
    }
    Ok(best)
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
    let porthole_rate = {
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
        let local = tunnel.local_addrs(1)[0];
        tunnel.wait_for(": up", 0);
        measure("porthole tunnel -> porthole-agent", local)?
    };

    // (b) ssh -L -> sshd, with OpenSSH's default cipher and with AES-GCM.
    let sshd = Sshd::start(&sshd_bin, &[key.public_line()]);
    let ssh_rate = {
        let (_fwd, local) = ssh_forward(&ssh, &sshd, &key, sink, None)?;
        measure("ssh -L -> sshd", local)?
    };
    let ssh_gcm_rate = {
        let (_fwd, local) = ssh_forward(&ssh, &sshd, &key, sink, Some("aes128-gcm@openssh.com"))?;
        measure("ssh -c aes128-gcm -L -> sshd", local)?
    };

    println!(
        "payload: {} MiB per transfer, best of {ROUNDS}, loopback",
        TOTAL >> 20
    );
    println!("porthole tunnel -> porthole-agent: {porthole_rate:.1} MiB/s");
    println!("ssh -L -> sshd: {ssh_rate:.1} MiB/s");
    println!("ssh -c aes128-gcm@openssh.com -L -> sshd: {ssh_gcm_rate:.1} MiB/s");
    println!("ratio: {:.2}", porthole_rate / ssh_rate);
    println!(
        "ratio vs ssh with aes128-gcm: {:.2}",
        porthole_rate / ssh_gcm_rate
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
