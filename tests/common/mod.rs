//! Helpers shared by the integration tests: finding outside peers (OpenSSH
//! `ssh`, `sshd`, tmux), generating keys, running `porthole-agent` and
//! reading its announcement, running commands with a deadline, and a
//! throwaway OpenSSH `sshd`.
//!
//! Everything here is bounded in time, listens on loopback only, lives in
//! temporary directories and kills what it started when dropped.

#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The default bound of every wait in these tests.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polling interval of the wait loops.
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------

/// Finds an outside program the test needs. When it is missing the test is
/// skipped with a printed reason, or fails when `PORTHOLE_REQUIRE_PEERS=1`.
pub fn require_peer(name: &str) -> Option<PathBuf> {
    if let Some(path) = find_executable(name) {
        return Some(path);
    }
    if std::env::var("PORTHOLE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!(
            "required peer `{name}` is not installed (PORTHOLE_REQUIRE_PEERS=1); \
             install it (e.g. openssh-client, openssh-server, tmux) or unset the variable"
        );
    }
    eprintln!("skipping: {name} not installed (set PORTHOLE_REQUIRE_PEERS=1 to fail instead)");
    None
}

/// Looks for an executable file on PATH, then in the sbin directories
/// (where `sshd` lives and which a non-root PATH often lacks).
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Every peer the OpenSSH-client tests need: `ssh` and `ssh-keygen`.
pub struct SshPeers {
    pub ssh: PathBuf,
    pub keygen: PathBuf,
}

/// `ssh` and `ssh-keygen`, or `None` (test skipped) when missing.
pub fn require_ssh_peers() -> Option<SshPeers> {
    let ssh = require_peer("ssh")?;
    let keygen = require_peer("ssh-keygen")?;
    Some(SshPeers { ssh, keygen })
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1 (bound, then released: there is a small
/// window in which someone else may take it, so users retry).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls `f` until it returns true or `deadline` passes; returns whether
/// it became true.
pub fn wait_until(deadline: Instant, mut f: impl FnMut() -> bool) -> bool {
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// `Instant::now() + d`.
pub fn deadline_in(d: Duration) -> Instant {
    Instant::now() + d
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Waits (bounded) until 127.0.0.1:`port` accepts connections.
pub fn wait_for_port(port: u16, within: Duration) -> bool {
    wait_until(deadline_in(within), || port_accepts(port))
}

/// A fresh temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("porthole-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A shared, growing byte buffer filled by a reader thread.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, data: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
    }

    /// Waits (bounded) until the text contains `needle`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
        wait_until(deadline_in(within), || self.text().contains(needle))
    }
}

/// Copies everything from `r` into `buf` on a thread, until EOF.
pub fn drain_into(mut r: impl Read + Send + 'static, buf: SharedBuf) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.push(&chunk[..n]),
            }
        }
    })
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = deadline_in(timeout);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with stdout and stderr captured (stdin as the
/// command has it; `ssh_command` sets it to null). Kills the child and
/// panics with what it printed when it does not finish within `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_input(cmd, None, timeout)
}

/// Like [`run_with_timeout`], writing `input` to the child's stdin and then
/// closing it.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let what = describe(cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let writer = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            }))
        }
        _ => None,
    };
    let out = SharedBuf::default();
    let err = SharedBuf::default();
    let t_out = drain_into(child.stdout.take().expect("piped stdout"), out.clone());
    let t_err = drain_into(child.stderr.take().expect("piped stderr"), err.clone());
    let Some(status) = wait_child(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`{what}` did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.text(),
            err.text()
        );
    };
    // The pipes close when the child and whatever inherited them are gone;
    // a grandchild could keep them open, so joining is bounded too.
    let joined = wait_until(deadline_in(Duration::from_secs(5)), || {
        t_out.is_finished() && t_err.is_finished()
    });
    if joined {
        let _ = t_out.join();
        let _ = t_err.join();
    }
    if let Some(w) = writer {
        if w.is_finished() {
            let _ = w.join();
        }
    }
    Output {
        status,
        stdout: out.bytes(),
        stderr: err.bytes(),
    }
}

/// Text of an output's stdout.
pub fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Text of an output's stderr.
pub fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A one-line summary of an output for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        stdout_of(o),
        stderr_of(o)
    )
}

// ---------------------------------------------------------------------------
// Processes (for orphan checks and clean-up)
// ---------------------------------------------------------------------------

/// The command line of `pid` with its arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Some(parts.join(" "))
}

/// Parent pid and state of `pid` from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// The parent of `pid`, while it lives.
pub fn stat_parent(pid: u32) -> Option<u32> {
    stat(pid).map(|(ppid, _)| ppid)
}

/// Every live process id.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Live (not zombie) processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| matches!(stat(p), Some((_, s)) if s != 'Z'))
        .filter(|&p| cmdline(p).is_some_and(|c| c.contains(needle)))
        .collect()
}

/// All descendants of `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, stat(p)?.0)))
        .collect();
    let mut found: HashSet<u32> = HashSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found.into_iter().collect()
}

/// Sends `sig` to `pid` (errors ignored: it may be gone already).
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Stops `child` and every process it started: SIGTERM first (so it can
/// clean up), SIGKILL for everything still there after `grace`.
pub fn stop_tree(child: &mut Child, grace: Duration) {
    use nix::sys::signal::Signal;
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = child.id();
    let mut tree = descendants(pid);
    signal(pid, Signal::SIGTERM);
    if wait_child(child, grace).is_none() {
        tree.extend(descendants(pid));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Whatever the child left behind (re-parented to init by now), by pid.
    for p in tree {
        if stat(p).is_some() {
            signal(p, Signal::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// Key types that `ssh-keygen -t` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    Ecdsa,
    Rsa,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Ecdsa => "ecdsa",
            KeyKind::Rsa => "rsa",
        }
    }
}

static KEY_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A key pair made by `ssh-keygen` in a test directory.
#[derive(Debug, Clone)]
pub struct KeyPair {
    private: PathBuf,
    public: PathBuf,
    public_line: String,
    kind: KeyKind,
}

impl KeyPair {
    /// An unencrypted key of `kind` in `dir`.
    pub fn generate(dir: &Path, kind: KeyKind) -> KeyPair {
        Self::generate_with_passphrase(dir, kind, "")
    }

    /// A key of `kind` in `dir` encrypted with `passphrase` ("" for none).
    pub fn generate_with_passphrase(dir: &Path, kind: KeyKind, passphrase: &str) -> KeyPair {
        let keygen = find_executable("ssh-keygen").expect("ssh-keygen (check require_peer first)");
        let n = KEY_COUNTER.fetch_add(1, Ordering::Relaxed);
        let private = dir.join(format!("id_{}_{n}", kind.as_str()));
        let mut cmd = Command::new(keygen);
        cmd.args([
            "-q",
            "-t",
            kind.as_str(),
            "-N",
            passphrase,
            "-C",
            "test",
            "-f",
        ])
        .arg(&private)
        .stdin(Stdio::null());
        if kind == KeyKind::Rsa {
            cmd.args(["-b", "3072"]);
        }
        let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
        assert!(out.status.success(), "ssh-keygen failed: {}", show(&out));
        let public = PathBuf::from(format!("{}.pub", private.display()));
        let public_line = std::fs::read_to_string(&public)
            .expect("read the public key")
            .trim()
            .to_string();
        KeyPair {
            private,
            public,
            public_line,
            kind,
        }
    }

    pub fn private_path(&self) -> &Path {
        &self.private
    }

    pub fn public_path(&self) -> &Path {
        &self.public
    }

    /// The `ssh-ed25519 AAAA... test` line.
    pub fn public_line(&self) -> &str {
        &self.public_line
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }
}

// ---------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------

/// `porthole` over a data and config directory of its own under `dir`,
/// with the test build of the agent and none of the developer's Valohai
/// or ssh-agent settings.
pub fn porthole_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_porthole"));
    cmd.env("PORTHOLE_CONFIG_DIR", dir.join("config"))
        .env("PORTHOLE_DATA_DIR", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("PORTHOLE_AGENT_BIN", agent_bin())
        .env_remove("VALOHAI_TOKEN")
        .env_remove("VALOHAI_HOST")
        .env_remove("VALOHAI_PROJECT")
        .env_remove("VALOHAI_CONFIG_DIR")
        .env_remove("SSH_AUTH_SOCK");
    cmd
}

/// Stops the background `porthole serve` of a data directory (found by
/// its environment) when the test ends, however it ends.
pub struct ServeGuard(pub PathBuf);

impl Drop for ServeGuard {
    fn drop(&mut self) {
        let needle = format!("PORTHOLE_DATA_DIR={}", self.0.display());
        for pid in pids_matching("serve --listen") {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                signal(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
    }
}

/// Path of the `porthole-agent` binary cargo built for these tests.
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_porthole-agent"))
}

/// The environment variables the agent reads; removed from the inherited
/// environment so that the developer's shell cannot change a test.
pub const AGENT_ENV: [&str; 4] = [
    "PORTHOLE_AUTHORIZED_KEYS",
    "PORTHOLE_LISTEN",
    "PORTHOLE_ADVERTISE_ADDRESS",
    "PORTHOLE_LOG",
];

/// What to start: binary, arguments, environment, working directory.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    default_listen: bool,
}

impl Default for AgentSpec {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentSpec {
    /// The test build of the agent, listening on 127.0.0.1:0, announcing
    /// 127.0.0.1.
    pub fn new() -> AgentSpec {
        AgentSpec {
            bin: agent_bin(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            default_listen: true,
        }
    }

    /// Another agent binary (the static build).
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = bin.into();
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--authorized-key LINE` for `key`.
    pub fn authorize(self, key: &KeyPair) -> Self {
        self.arg("--authorized-key").arg(key.public_line())
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Do not add `--listen 127.0.0.1:0 --advertise-address 127.0.0.1`.
    pub fn no_default_listen(mut self) -> Self {
        self.default_listen = false;
        self
    }

    /// The command line, with the defaults put before the test's own
    /// arguments (so they come before any `--`).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        if self.default_listen {
            let has = |flag: &str| self.args.iter().any(|a| a == flag);
            if !has("--listen") {
                cmd.args(["--listen", "127.0.0.1:0"]);
            }
            if !has("--advertise-address") {
                cmd.args(["--advertise-address", "127.0.0.1"]);
            }
        }
        cmd.args(&self.args);
        for k in AGENT_ENV {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts the agent and waits (bounded) for its announcement.
    pub fn spawn(self) -> Agent {
        Agent::start(self)
    }
}

/// The parsed `::ssh::{...}` line.
#[derive(Debug, Clone)]
pub struct AnnouncementLine {
    pub raw: String,
    pub address: String,
    pub port: u16,
    pub host_key: String,
}

/// Parses an announcement line, or returns `None` for any other line.
pub fn parse_announcement(line: &str) -> Option<AnnouncementLine> {
    let json = line.trim_end().strip_prefix("::ssh::")?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(AnnouncementLine {
        raw: line.trim_end().to_string(),
        address: v.get("address")?.as_str()?.to_string(),
        port: u16::try_from(v.get("port")?.as_u64()?).ok()?,
        host_key: v.get("host_key")?.as_str()?.to_string(),
    })
}

/// A running `porthole-agent`, killed (with everything it started) on drop.
pub struct Agent {
    child: Child,
    announcement: AnnouncementLine,
    stdout: SharedBuf,
    stderr: SharedBuf,
    status: Option<ExitStatus>,
}

impl Agent {
    /// `AgentSpec::new()` with `args`, authorizing nobody else.
    pub fn spawn(args: &[&str]) -> Agent {
        AgentSpec::new().args(args).spawn()
    }

    /// The agent with `key` authorized plus `args`.
    pub fn with_key(key: &KeyPair, args: &[&str]) -> Agent {
        AgentSpec::new().authorize(key).args(args).spawn()
    }

    fn start(spec: AgentSpec) -> Agent {
        let mut cmd = spec.command();
        let what = describe(&cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // Its own process group, so a test's Ctrl-C does not race its clean-up.
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let stderr = SharedBuf::default();
        drain_into(child.stderr.take().expect("piped stderr"), stderr.clone());
        let stdout = SharedBuf::default();
        let (tx, rx) = mpsc::channel::<AnnouncementLine>();
        let out = child.stdout.take().expect("piped stdout");
        let buf = stdout.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = Vec::new();
            let mut tx = Some(tx);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        buf.push(&line);
                        if tx.is_some() {
                            let text = String::from_utf8_lossy(&line);
                            if let Some(a) = parse_announcement(&text) {
                                let _ = tx.take().map(|t| t.send(a));
                            }
                        }
                    }
                }
            }
        });
        let announcement = match rx.recv_timeout(DEADLINE) {
            Ok(a) => a,
            Err(e) => {
                let status = wait_child(&mut child, Duration::from_millis(500));
                if status.is_none() {
                    stop_tree(&mut child, Duration::from_secs(2));
                }
                // Let the stderr thread catch up with the last words.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "porthole-agent printed no announcement ({e:?}; exit: {status:?})\n\
                     command: {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
        };
        Agent {
            child,
            announcement,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.announcement.port
    }

    pub fn address(&self) -> &str {
        &self.announcement.address
    }

    /// The announced host-key fingerprint (`SHA256:...`).
    pub fn fingerprint(&self) -> &str {
        &self.announcement.host_key
    }

    pub fn announcement(&self) -> &AnnouncementLine {
        &self.announcement
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent (and its wrapped command) printed on stdout.
    pub fn stdout_text(&self) -> String {
        self.stdout.text()
    }

    /// Everything the agent (and its wrapped command) printed on stderr.
    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// Waits (bounded) until stdout contains `needle`.
    pub fn wait_stdout(&self, needle: &str, within: Duration) -> bool {
        self.stdout.wait_for(needle, within)
    }

    /// Waits (bounded) until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str, within: Duration) -> bool {
        self.stderr.wait_for(needle, within)
    }

    /// Waits up to `timeout` for the agent to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_child(&mut self.child, timeout);
        }
        self.status
    }

    /// Has the agent exited (without waiting)?
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.wait_exit(Duration::ZERO)
    }

    /// Stdout and stderr for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "--- agent stdout ---\n{}\n--- agent stderr ---\n{}",
            self.stdout_text(),
            self.stderr_text()
        )
    }

    /// An OpenSSH client command to this agent with `key`.
    pub fn ssh(&self, ssh: &Path, key: &KeyPair) -> Command {
        ssh_command(ssh, self.port(), key.private_path())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        stop_tree(&mut self.child, Duration::from_secs(3));
    }
}

/// Runs the agent binary until it exits (for start-up failures); panics
/// when it is still running after `timeout`.
pub fn run_agent_to_exit(spec: &AgentSpec, timeout: Duration) -> Output {
    let mut cmd = spec.command();
    cmd.process_group(0);
    run_with_timeout(&mut cmd, timeout)
}

// ---------------------------------------------------------------------------
// OpenSSH client
// ---------------------------------------------------------------------------

/// The options every test client uses: no config, no known_hosts, no agent,
/// only the given key, no prompts.
pub fn ssh_options(key: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=4",
        "-i",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    v.push(key.as_os_str().to_owned());
    v
}

/// `ssh` to root@127.0.0.1:`port` with `key`; stdin is null. Add options
/// (they may follow the destination) and the remote command.
pub fn ssh_command(ssh: &Path, port: u16, key: &Path) -> Command {
    let mut cmd = Command::new(ssh);
    cmd.args(ssh_options(key))
        .arg("-p")
        .arg(port.to_string())
        .arg("root@127.0.0.1")
        .stdin(Stdio::null());
    cmd
}

// ---------------------------------------------------------------------------
// OpenSSH server
// ---------------------------------------------------------------------------

/// A throwaway OpenSSH `sshd` on 127.0.0.1, killed on drop.
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    authorized_keys: PathBuf,
    host_key: KeyPair,
    stderr: SharedBuf,
}

impl Sshd {
    /// Starts `sshd` (path from `require_peer("sshd")`) accepting
    /// `authorized` (public key lines).
    pub fn start(sshd: &Path, authorized: &[&str]) -> Sshd {
        Sshd::start_with(sshd, authorized, "")
    }

    /// [`Sshd::start`] with `extra` lines appended to its `sshd_config`
    /// (options it does not set already, such as `LoginGraceTime 20`).
    pub fn start_with(sshd: &Path, authorized: &[&str], extra: &str) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = temp_dir();
        let host_key = KeyPair::generate(dir.path(), KeyKind::Ed25519);
        let authorized_keys = dir.path().join("authorized_keys");
        let mut text = authorized.join("\n");
        text.push('\n');
        std::fs::write(&authorized_keys, text).expect("write authorized_keys");
        let sshd = if sshd.is_absolute() {
            sshd.to_path_buf()
        } else {
            find_executable(&sshd.to_string_lossy()).expect("sshd path")
        };
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            let conf = format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host}\n\
                 AuthorizedKeysFile {ak}\n\
                 StrictModes no\n\
                 PidFile {pid}\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 AllowTcpForwarding yes\n\
                 PubkeyAuthentication yes\n\
                 LogLevel ERROR\n\
                 {extra}\n",
                host = host_key.private_path().display(),
                ak = authorized_keys.display(),
                pid = dir.path().join("sshd.pid").display(),
            );
            std::fs::write(&config, conf).expect("write sshd_config");
            let mut child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", sshd.display()));
            let stderr = SharedBuf::default();
            drain_into(child.stderr.take().expect("piped stderr"), stderr.clone());
            let mut exited = None;
            let up = wait_until(deadline_in(DEADLINE), || {
                if let Ok(Some(s)) = child.try_wait() {
                    exited = Some(s);
                    return true;
                }
                port_accepts(port)
            });
            if up && exited.is_none() {
                return Sshd {
                    child,
                    port,
                    dir,
                    authorized_keys,
                    host_key,
                    stderr,
                };
            }
            stop_tree(&mut child, Duration::from_secs(1));
            last_err = format!("exit {exited:?}; stderr:\n{}", stderr.text());
        }
        panic!("sshd did not start in 5 attempts: {last_err}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listening (parent) sshd's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn host_key(&self) -> &KeyPair {
        &self.host_key
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn authorized_keys_path(&self) -> &Path {
        &self.authorized_keys
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop_tree(&mut self.child, Duration::from_secs(2));
    }
}
pub mod porthole_cli;

/// Like [`ssh_command`], with `first` placed before the defaults (OpenSSH
/// keeps the first value it sees for an option, so these win).
pub fn ssh_command_opts(ssh: &Path, port: u16, key: &Path, first: &[&str]) -> Command {
    let mut cmd = Command::new(ssh);
    cmd.args(first)
        .args(ssh_options(key))
        .arg("-p")
        .arg(port.to_string())
        .arg("root@127.0.0.1")
        .stdin(Stdio::null());
    cmd
}

// ---------------------------------------------------------------------------
// Long-running children and loopback servers
// ---------------------------------------------------------------------------

/// A spawned child (e.g. `ssh -N -L ...`) with its stderr collected; it and
/// its descendants are killed on drop.
pub struct ChildGuard {
    pub child: Child,
    pub stdout: SharedBuf,
    pub stderr: SharedBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr piped into buffers.
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        let what = describe(cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let stdout = SharedBuf::default();
        let stderr = SharedBuf::default();
        drain_into(child.stdout.take().expect("piped stdout"), stdout.clone());
        drain_into(child.stderr.take().expect("piped stderr"), stderr.clone());
        ChildGuard {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    pub fn dump(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.text(),
            self.stderr.text()
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        stop_tree(&mut self.child, Duration::from_secs(2));
    }
}

/// A TCP echo server on 127.0.0.1 (a thread per connection); stops
/// accepting on drop.
pub struct EchoServer {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        Self::start_on("127.0.0.1:0")
    }

    pub fn start_on(addr: &str) -> EchoServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                accepted2.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    // Bounded: an idle peer is dropped after a minute.
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                    let Ok(mut write) = conn.try_clone() else {
                        return;
                    };
                    let _ = std::io::copy(&mut conn, &mut write);
                    let _ = write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        EchoServer {
            port,
            stop,
            accepted,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(200),
        );
    }
}

/// Sends `msg` over a fresh connection to 127.0.0.1:`port` and reads the
/// same number of bytes back (bounded by `timeout`); `None` when the
/// connection fails or closes early.
pub fn echo_roundtrip(port: u16, msg: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(msg).ok()?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).ok()?;
    Some(back)
}

/// Asserts that `ssh` was refused at authentication: exit 255 and
/// OpenSSH's `Permission denied`. `context` (the server's output) is shown
/// on failure.
pub fn assert_refused(out: &Output, context: &str) {
    assert_eq!(out.status.code(), Some(255), "{}\n{context}", show(out));
    assert!(
        stderr_of(out).contains("Permission denied"),
        "{}\n{context}",
        show(out)
    );
}
