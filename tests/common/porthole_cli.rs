//! Helpers for driving the `porthole` command line from tests and the
//! benchmark: isolated directories, bounded runs without a terminal, a
//! running `porthole tunnel` whose state lines can be awaited, a TCP echo
//! server, tmux sessions and a real `ssh-agent`. The peers themselves
//! (`porthole-agent`, `sshd`, keys) come from the parent module.
//!
//! Everything here is bounded (no wait longer than [`DEADLINE`]), stays on
//! loopback, lives in temporary directories and kills what it started when
//! dropped.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// The longest any single wait may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often bounded waits poll.
const POLL: Duration = Duration::from_millis(50);

/// The `porthole` binary under test.
pub fn porthole_bin() -> &'static str {
    env!("CARGO_BIN_EXE_porthole")
}

/// Makes the child the leader of a new session: it has no controlling
/// terminal, so `/dev/tty` cannot be opened, whatever terminal runs the
/// tests. It also isolates it from the test runner's process group.
pub fn without_terminal(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        })
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// How a bounded run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Outcome {
    /// The exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// For assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `cmd` with `input` on stdin (null without), capturing stdout and
/// stderr; kills it and panics when it takes longer than `limit`.
pub fn run_bounded(mut cmd: Command, input: Option<Vec<u8>>, limit: Duration) -> Outcome {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let feeder = input.map(|data| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!("{shown} took longer than {limit:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
    }
}

/// Waits until `check` returns `Some`, at most `limit`.
pub fn poll_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// An isolated porthole installation: its own config and data directories.
pub struct Porthole {
    dir: tempfile::TempDir,
    /// `PORTHOLE_CONFIG_DIR` (the default key lives here).
    pub config_dir: PathBuf,
    /// `PORTHOLE_DATA_DIR` (known hosts live here).
    pub data_dir: PathBuf,
    /// `HOME`, so the keys in the tester's own `~/.ssh` stay out of it.
    pub home: PathBuf,
}

impl Default for Porthole {
    fn default() -> Self {
        Self::new()
    }
}

impl Porthole {
    /// Fresh, empty directories.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_dir = dir.path().join("config");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&config_dir).expect("config dir");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home dir");
        Porthole {
            dir,
            config_dir,
            data_dir,
            home,
        }
    }

    /// A scratch directory that lives as long as this installation.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// porthole's known-hosts file.
    pub fn known_hosts(&self) -> PathBuf {
        self.data_dir.join("known_hosts")
    }

    /// The default key `porthole keygen` writes.
    pub fn default_key(&self) -> PathBuf {
        self.config_dir.join("id_ed25519")
    }

    /// `porthole ARGS` with the isolated directories, no `SSH_AUTH_SOCK`,
    /// no controlling terminal and stdin from /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(porthole_bin());
        cmd.args(args)
            .env("PORTHOLE_CONFIG_DIR", &self.config_dir)
            .env("PORTHOLE_DATA_DIR", &self.data_dir)
            .env("HOME", &self.home)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        without_terminal(&mut cmd);
        cmd
    }

    /// Runs `porthole ARGS` to completion (bounded by [`DEADLINE`]).
    pub fn run(&self, args: &[&str]) -> Outcome {
        run_bounded(self.command(args), None, DEADLINE)
    }

    /// Runs `porthole ARGS` with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Outcome {
        run_bounded(self.command(args), Some(input.to_vec()), DEADLINE)
    }

    /// Runs `porthole ARGS` with extra environment (e.g. `SSH_AUTH_SOCK`).
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Outcome {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_bounded(cmd, None, DEADLINE)
    }

    /// A shell line running `porthole ARGS` with the isolated directories,
    /// for a terminal (tmux) to run.
    pub fn shell_line(&self, args: &[&str]) -> String {
        let mut line = format!(
            "env -u SSH_AUTH_SOCK PORTHOLE_CONFIG_DIR={} PORTHOLE_DATA_DIR={} HOME={} {}",
            shell_quote(&self.config_dir.to_string_lossy()),
            shell_quote(&self.data_dir.to_string_lossy()),
            shell_quote(&self.home.to_string_lossy()),
            shell_quote(porthole_bin()),
        );
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        line
    }
}

/// A running `porthole tunnel`, its stdout lines collected as they come.
pub struct TunnelProc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl TunnelProc {
    /// Starts `porthole tunnel ARGS`.
    pub fn start(porthole: &Porthole, args: &[&str]) -> Self {
        let mut all = vec!["tunnel"];
        all.extend_from_slice(args);
        let mut cmd = porthole.command(&all);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("porthole tunnel starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().expect("lines").push(line);
                }
            });
        }
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(err);
                let mut line = String::new();
                while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                    stderr.lock().expect("stderr").push_str(&line);
                    line.clear();
                }
            });
        }
        TunnelProc {
            child,
            lines,
            stderr,
        }
    }

    /// Stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Stdout and stderr so far, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- porthole tunnel stdout ---\n{}\n--- stderr ---\n{}",
            self.lines().join("\n"),
            self.stderr.lock().expect("stderr")
        )
    }

    /// Waits for a stdout line at index `from` or later that contains
    /// `needle`; returns its index. Panics with the transcript after
    /// [`DEADLINE`] or when porthole exits first.
    pub fn wait_for(&mut self, needle: &str, from: usize) -> usize {
        let found = poll_until(DEADLINE, || {
            let lines = self.lines();
            if let Some(i) = (from..lines.len()).find(|&i| lines[i].contains(needle)) {
                return Some(Ok(i));
            }
            match self.child.try_wait() {
                Ok(Some(status)) => Some(Err(status)),
                _ => None,
            }
        });
        match found {
            Some(Ok(i)) => i,
            Some(Err(status)) => {
                // Let the readers catch up with the last lines.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "porthole tunnel exited ({status}) before printing `{needle}`\n{}",
                    self.transcript()
                )
            }
            None => panic!("no `{needle}` within {DEADLINE:?}\n{}", self.transcript()),
        }
    }

    /// The local addresses of the first `count` tunnels, from their
    /// `listening` lines, in order.
    pub fn local_addrs(&mut self, count: usize) -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        let mut from = 0;
        while addrs.len() < count {
            let i = self.wait_for(": listening", from);
            let line = &self.lines()[i];
            addrs.push(parse_tunnel_local(line).unwrap_or_else(|| panic!("bad line `{line}`")));
            from = i + 1;
        }
        addrs
    }

    /// Whether porthole is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, waits (bounded) and returns the exit status and every
    /// stdout line.
    pub fn stop(mut self) -> (ExitStatus, Vec<String>) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = poll_until(DEADLINE, || self.child.try_wait().ok().flatten())
            .unwrap_or_else(|| panic!("porthole tunnel ignored SIGTERM\n{}", self.transcript()));
        // The readers see EOF now; give them a moment to store the last lines.
        let _ = poll_until(Duration::from_secs(2), || {
            self.lines()
                .iter()
                .any(|l| l.contains(" connections, "))
                .then_some(())
        });
        (status, self.lines())
    }
}

impl Drop for TunnelProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `127.0.0.1:PORT` from `tunnel 127.0.0.1:PORT -> HOST:RPORT: ...`.
pub fn parse_tunnel_local(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("tunnel ")?
        .split(" -> ")
        .next()?
        .parse()
        .ok()
}

/// A TCP echo server on 127.0.0.1: every connection gets back what it
/// sends, then EOF after the client's EOF.
pub struct EchoServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Default for EchoServer {
    fn default() -> Self {
        Self::start()
    }
}

impl EchoServer {
    /// Starts listening on a free port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("echo server binds");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(DEADLINE));
                    let _ = stream.set_write_timeout(Some(DEADLINE));
                    let mut buf = vec![0u8; 128 * 1024];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown(Shutdown::Write);
                });
            }
        });
        EchoServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A deterministic pseudo-random byte stream (xorshift64*).
pub struct Noise(u64);

impl Noise {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        Noise(seed | 1)
    }

    /// Fills `buf`.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// What went through an echo path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReport {
    /// Bytes written.
    pub sent: u64,
    /// SHA-256 of what was written.
    pub sent_sha256: String,
    /// Bytes read back.
    pub received: u64,
    /// SHA-256 of what came back.
    pub received_sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Connects to `addr` (a tunnel to an echo server), writes `len`
/// pseudo-random bytes on one thread while reading the echo on another,
/// and returns both sides' SHA-256. Each side gives up after [`DEADLINE`]
/// without progress.
pub fn echo_transfer(addr: SocketAddr, len: u64, seed: u64) -> EchoReport {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.set_write_timeout(Some(DEADLINE)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let send = std::thread::spawn(move || {
        let mut noise = Noise::new(seed);
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).expect("fits");
            noise.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            writer
                .write_all(&buf[..n])
                .unwrap_or_else(|e| panic!("write failed with {left} bytes left: {e}"));
            left -= n as u64;
        }
        writer.shutdown(Shutdown::Write).expect("shutdown");
        hex(&hash.finalize())
    });
    let mut reader = stream;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hash.update(&buf[..n]);
                received += n as u64;
            }
            Err(e) => panic!("read failed after {received} of {len} bytes: {e}"),
        }
    }
    let sent_sha256 = send.join().expect("sender thread");
    EchoReport {
        sent: len,
        sent_sha256,
        received,
        received_sha256: hex(&hash.finalize()),
    }
}

/// Opens `count` connections to `addr` at once (all connected before any
/// sends), each sending its own payload and checking it comes back intact.
/// Returns how many round trips matched (panics on the first mismatch).
pub fn parallel_echo(addr: SocketAddr, count: usize) -> usize {
    let barrier = Arc::new(Barrier::new(count));
    let workers: Vec<_> = (0..count)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("connection {i}: cannot connect: {e}"));
                stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
                stream.set_write_timeout(Some(DEADLINE)).expect("timeout");
                // Distinct content and length per connection.
                let mut payload = vec![0u8; 100_000 + i * 7919];
                Noise::new(1000 + i as u64).fill(&mut payload);
                payload[..16].copy_from_slice(format!("connection {i:05}").as_bytes());
                barrier.wait();
                let mut writer = stream.try_clone().expect("clone");
                let data = payload.clone();
                let send = std::thread::spawn(move || {
                    writer.write_all(&data).expect("write");
                    writer.shutdown(Shutdown::Write).expect("shutdown");
                });
                let mut back = Vec::new();
                stream
                    .read_to_end(&mut back)
                    .unwrap_or_else(|e| panic!("connection {i}: read failed: {e}"));
                send.join().expect("sender");
                assert_eq!(back.len(), payload.len(), "connection {i}: length");
                assert!(back == payload, "connection {i}: payload differs");
            })
        })
        .collect();
    let mut ok = 0;
    for w in workers {
        w.join().expect("parallel connection");
        ok += 1;
    }
    ok
}

/// A tmux server of our own (its own socket) with one 120x40 session.
pub struct Tmux {
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Tmux {
    /// Starts `shell_line` in a detached session. The pane stays open
    /// after the command ends (`remain-on-exit`), so its output can still
    /// be captured.
    pub fn start(shell_line: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("tmux.sock");
        let tmux = Tmux { dir, socket };
        let out = tmux
            .cmd()
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
                "-s",
                "t",
            ])
            .arg(shell_line)
            .env("TERM", "xterm-256color")
            .env_remove("TMUX")
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = tmux
            .cmd()
            .args(["set-option", "-t", "t", "remain-on-exit", "on"])
            .output();
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).stdin(Stdio::null());
        c
    }

    /// The pane's text now (with its scrollback).
    pub fn capture(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-200", "-t", "t"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", "t", "-l", text])
            .output()
            .expect("tmux send-keys");
        assert!(
            out.status.success(),
            "send-keys: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Presses Enter.
    pub fn enter(&self) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", "t", "Enter"])
            .output()
            .expect("tmux send-keys");
        assert!(
            out.status.success(),
            "send-keys: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits (bounded) until the pane shows `needle`; returns the pane.
    pub fn wait_for(&self, needle: &str) -> String {
        poll_until(DEADLINE, || {
            let pane = self.capture();
            pane.contains(needle).then_some(pane)
        })
        .unwrap_or_else(|| panic!("tmux pane never showed `{needle}`:\n{}", self.capture()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
        let _ = self.dir.path();
    }
}

/// A real `ssh-agent -D` on a socket of ours.
pub struct SshAgent {
    child: Child,
    _dir: tempfile::TempDir,
    /// Its socket (`SSH_AUTH_SOCK`).
    pub sock: PathBuf,
}

impl SshAgent {
    /// Starts the agent and waits for its socket.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("agent.sock");
        let mut cmd = Command::new("ssh-agent");
        cmd.arg("-a")
            .arg(&sock)
            .arg("-D")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("ssh-agent starts");
        let agent = SshAgent {
            child,
            _dir: dir,
            sock,
        };
        poll_until(DEADLINE, || agent.sock.exists().then_some(()))
            .expect("ssh-agent socket appears");
        agent
    }

    /// `ssh-add KEY` (the key must not be encrypted).
    pub fn add(&self, key: &Path) {
        let mut cmd = Command::new("ssh-add");
        cmd.arg(key).env("SSH_AUTH_SOCK", &self.sock);
        without_terminal(&mut cmd);
        let out = run_bounded(cmd, None, DEADLINE);
        assert_eq!(out.code(), 0, "ssh-add failed:\n{}", out.describe());
    }

    /// `ssh-add -l`.
    pub fn list(&self) -> String {
        let mut cmd = Command::new("ssh-add");
        cmd.arg("-l").env("SSH_AUTH_SOCK", &self.sock);
        run_bounded(cmd, None, DEADLINE).stdout
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SHA256:...` of a public key file, as `ssh-keygen -l` prints it.
pub fn ssh_fingerprint(public: &Path) -> String {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-l", "-E", "sha256", "-f"]).arg(public);
    let out = run_bounded(cmd, None, DEADLINE);
    assert_eq!(out.code(), 0, "ssh-keygen -l failed:\n{}", out.describe());
    out.stdout
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}

/// A server a client test connects to: a porthole-agent or an OpenSSH
/// sshd, each authorizing a fresh key, with the flags porthole needs to
/// reach it (`-i KEY --fingerprint FP`).
pub struct Server {
    /// `root@127.0.0.1:PORT`.
    pub target: String,
    key: String,
    fingerprint: String,
    _agent: Option<super::Agent>,
    _sshd: Option<super::Sshd>,
}

impl Server {
    /// A porthole-agent; `None` (test skipped) without ssh-keygen.
    pub fn agent(p: &Porthole) -> Option<Server> {
        super::require_peer("ssh-keygen")?;
        let key = super::KeyPair::generate(p.scratch(), super::KeyKind::Ed25519);
        let agent = super::AgentSpec::new().authorize(&key).spawn();
        Some(Server {
            target: format!("root@127.0.0.1:{}", agent.port()),
            key: key.private_path().display().to_string(),
            fingerprint: agent.fingerprint().to_string(),
            _agent: Some(agent),
            _sshd: None,
        })
    }

    /// An OpenSSH sshd; `None` (test skipped) without sshd or ssh-keygen.
    pub fn sshd(p: &Porthole) -> Option<Server> {
        let sshd_bin = super::require_peer("sshd")?;
        super::require_peer("ssh-keygen")?;
        let key = super::KeyPair::generate(p.scratch(), super::KeyKind::Ed25519);
        let sshd = super::Sshd::start(&sshd_bin, &[key.public_line()]);
        Some(Server {
            target: format!("root@127.0.0.1:{}", sshd.port()),
            key: key.private_path().display().to_string(),
            fingerprint: ssh_fingerprint(sshd.host_key().public_path()),
            _agent: None,
            _sshd: Some(sshd),
        })
    }

    /// `-i KEY --fingerprint FP`.
    pub fn connect_args(&self) -> [&str; 4] {
        ["-i", &self.key, "--fingerprint", &self.fingerprint]
    }
}
