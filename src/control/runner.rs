//! Running executions as local processes under `porthole-agent`.
//!
//! Each execution is one agent process in a process group of its own,
//! wrapping the user's command. Its stdout and stderr become log events
//! line by line; the agent's announcement lines become `status` events,
//! where Valohai puts them and where porthole's scanner looks first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::sync::watch;

use super::store::Store;
use crate::agent::wrapped::exit_code;
use crate::announce::STATUS_PREFIX;
use crate::config::Paths;
use crate::proctree;
use crate::source::model::{
    now_iso, CreateExecution, Execution, LogEvent, ProjectRef, Status, Stream,
};

/// The one project of the local control plane.
pub const PROJECT_ID: &str = "local";

/// Longest log line kept whole; longer ones are split so that a command
/// printing without newlines cannot make us buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// How long a stopped tree gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// After the agent exits, how long to wait for the rest of its output
/// (a background process may hold the pipes open for much longer).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// The second and third announcement lines, as the agent prints them.
const ANNOUNCE_HINT: &str = "You can now add the path to your private key and connect:";
const ANNOUNCE_COMMAND: &str = "$ ssh -i <path-to-private-key> ";

/// How the control plane runs executions.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `porthole-agent` binary. Default: `PORTHOLE_AGENT_BIN`, else
    /// `porthole-agent` beside the running executable, else from `PATH`.
    pub agent: Option<PathBuf>,
}

impl Options {
    /// The agent binary these options name.
    pub fn agent_bin(&self) -> PathBuf {
        if let Some(p) = &self.agent {
            return p.clone();
        }
        if let Some(p) = std::env::var_os("PORTHOLE_AGENT_BIN").filter(|v| !v.is_empty()) {
            return PathBuf::from(p);
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("porthole-agent")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("porthole-agent"))
    }
}

/// Why a request to create an execution was refused (a client error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A running execution.
#[derive(Debug)]
struct Running {
    /// The agent's pid, which also leads its process group.
    pid: i32,
    stop_requested: Arc<AtomicBool>,
    /// Becomes true once the final status is recorded.
    done: watch::Receiver<bool>,
}

/// The local control plane's executions: records, logs and processes.
#[derive(Debug)]
pub struct Control {
    /// Records and logs.
    pub store: Arc<Store>,
    paths: Paths,
    agent: PathBuf,
    running: Mutex<HashMap<String, Running>>,
}

impl Control {
    /// A control plane over `store`, running agents as `options` say.
    pub fn new(store: Arc<Store>, paths: Paths, options: &Options) -> Self {
        Control {
            store,
            paths,
            agent: options.agent_bin(),
            running: Mutex::new(HashMap::new()),
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Validates `req`, records the execution and starts it. A request
    /// that cannot run (empty command, bad linger, no such directory) is
    /// an [`Invalid`] error; a failure to start the agent is recorded as
    /// the execution's `error` status instead, like a platform would.
    pub fn create(self: &Arc<Self>, req: CreateExecution) -> anyhow::Result<Execution> {
        if req.command.is_empty() || req.command[0].is_empty() {
            return Err(Invalid("command: give the command to run".into()).into());
        }
        if let Some(p) = req.project.as_deref().filter(|p| *p != PROJECT_ID) {
            return Err(Invalid(format!(
                "project: unknown project {p:?}; the local one is \"{PROJECT_ID}\""
            ))
            .into());
        }
        if let Some(l) = &req.linger {
            humantime::parse_duration(l)
                .map_err(|e| Invalid(format!("linger: {l:?} is not a duration like 10m: {e}")))?;
        }
        if let Some(dir) = &req.cwd {
            if !std::path::Path::new(dir).is_dir() {
                return Err(Invalid(format!("cwd: {dir} is not a directory")).into());
            }
        }
        let key = match req
            .debug_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            Some(k) if k.contains('\n') => {
                return Err(Invalid("debug_key: give one public key line".into()).into())
            }
            Some(k) => k.to_string(),
            None => self.default_key()?,
        };

        let now = now_iso();
        let template: Execution = Execution {
            id: String::new(),
            counter: 0,
            status: Status::Queued.as_str().to_string(),
            status_detail: None,
            title: req.title.clone().filter(|t| !t.is_empty()),
            step: Some("local".to_string()),
            ctime: Some(now.clone()),
            mtime: Some(now),
            end_time: None,
            duration: None,
            url: None,
            urls: None,
            project: Some(ProjectRef::Object {
                id: PROJECT_ID.to_string(),
                name: Some(PROJECT_ID.to_string()),
            }),
            command: Some(serde_json::Value::String(shell_words(&req.command))),
        };
        let record = self.store.create(template)?;
        let id = record.id.clone();
        self.store.push_status(&id, "status: queued");

        let mut cmd = tokio::process::Command::new(&self.agent);
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--advertise-address")
            .arg("127.0.0.1")
            .arg("--authorized-key")
            .arg(&key)
            // Even a SIGKILLed control plane leaves no execution behind.
            .arg("--exit-with-parent");
        if let Some(l) = &req.linger {
            cmd.arg("--linger").arg(l);
        }
        cmd.arg("--").args(&req.command);
        if let Some(dir) = &req.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a Ctrl-C meant for `porthole serve`
            // in a terminal does not reach the executions directly: they
            // are stopped deliberately, and recorded as stopped.
            .process_group(0)
            // The agent must not pick these up from our environment: the
            // key given here is the only one allowed in.
            .env_remove("PORTHOLE_AUTHORIZED_KEYS")
            .env_remove("PORTHOLE_LISTEN")
            .env_remove("PORTHOLE_ADVERTISE_ADDRESS");
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let detail = format!("cannot start {}: {e}", self.agent.display());
                let record = self
                    .store
                    .finish(&id, Status::Error, Some(detail), Some(0.0));
                return record.context("the execution vanished");
            }
        };
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            // Only possible if it was already reaped, which cannot happen
            // before the first wait; record it rather than panic.
            let record = self.store.finish(
                &id,
                Status::Error,
                Some("the agent vanished".into()),
                Some(0.0),
            );
            return record.context("the execution vanished");
        };
        let started = Instant::now();
        let record = self
            .store
            .update(&id, |r| r.status = Status::Started.as_str().to_string())
            .context("the execution vanished")?;
        self.store.push_status(&id, "status: started");

        let stop_requested = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = watch::channel(false);
        self.running().insert(
            id.clone(),
            Running {
                pid,
                stop_requested: stop_requested.clone(),
                done: done_rx,
            },
        );

        let out = child
            .stdout
            .take()
            .map(|s| tokio::spawn(capture(s, self.store.clone(), id.clone(), Stream::Stdout)));
        let err = child
            .stderr
            .take()
            .map(|s| tokio::spawn(capture(s, self.store.clone(), id.clone(), Stream::Stderr)));
        let this = self.clone();
        tokio::spawn(async move {
            let waited = child.wait().await;
            // The rest of the output first, so the final status comes last
            // in the log; but not forever, as a background process of the
            // command may keep the pipes open.
            let drain = async {
                for task in [out, err].into_iter().flatten() {
                    let _ = task.await;
                }
            };
            let _ = tokio::time::timeout(OUTPUT_DRAIN, drain).await;
            let duration = Some(started.elapsed().as_secs_f64());
            let (status, detail) = match waited {
                _ if stop_requested.load(Ordering::SeqCst) => {
                    (Status::Stopped, Some("stopped by request".to_string()))
                }
                Ok(s) if s.success() => (Status::Complete, None),
                Ok(s) => (Status::Error, Some(format!("exit code {}", exit_code(s)))),
                Err(e) => (
                    Status::Error,
                    Some(format!("cannot wait for the agent: {e}")),
                ),
            };
            this.store.finish(&id, status, detail, duration);
            this.running().remove(&id);
            let _ = done_tx.send(true);
        });
        Ok(record)
    }

    /// The public line of the user's default porthole key, creating the
    /// key if there is none yet (as `porthole run` does).
    fn default_key(&self) -> anyhow::Result<String> {
        let private = self.paths.default_key();
        let public = private.with_extension("pub");
        if !private.exists() {
            return crate::commands::keygen::create(&private, false)
                .context("no debug_key given and cannot create the default key");
        }
        let text = std::fs::read_to_string(&public).with_context(|| {
            format!(
                "no debug_key given and cannot read the default key's {}",
                public.display()
            )
        })?;
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .with_context(|| format!("{} holds no public key", public.display()))
    }

    /// Stops the execution `id`: its status goes `stopping`, its whole
    /// process tree gets SIGTERM and, after [`STOP_GRACE`], SIGKILL; then
    /// it is recorded `stopped`. Returns the record; an execution that has
    /// already finished is returned unchanged.
    pub async fn stop(&self, id: &str) -> Option<Execution> {
        // A stop can arrive between the record's creation and the agent's
        // registration (another request, another thread): wait that out.
        let mut tries = 0;
        let (pid, requested, mut done) = loop {
            let found = self
                .running()
                .get(id)
                .map(|r| (r.pid, r.stop_requested.clone(), r.done.clone()));
            match found {
                Some(found) => break found,
                None => {
                    let record = self.store.get(id)?;
                    if record.status().is_finished() || tries >= 50 {
                        return Some(record);
                    }
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        if !requested.swap(true, Ordering::SeqCst) {
            let mut changed = false;
            self.store.update(id, |r| {
                if !r.status().is_finished() {
                    r.status = Status::Stopping.as_str().to_string();
                    changed = true;
                }
            });
            if changed {
                self.store.push_status(id, "status: stopping");
            }
        }
        proctree::stop_tree(pid, STOP_GRACE).await;
        // The waiting task records `stopped` once it sees the agent gone
        // and has drained its output.
        let _ = tokio::time::timeout(OUTPUT_DRAIN + Duration::from_secs(1), done.wait_for(|d| *d))
            .await;
        self.store.get(id)
    }

    /// Stops every running execution, all at once, and waits for them.
    pub async fn stop_all(self: &Arc<Self>) {
        let ids: Vec<String> = self.running().keys().cloned().collect();
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let this = self.clone();
            tasks.spawn(async move { this.stop(&id).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Kills every running execution's tree at once and records them
    /// stopped, without waiting: for when this control plane is dropped.
    pub fn kill_all_now(&self) {
        let running: Vec<(String, i32)> =
            self.running().drain().map(|(id, r)| (id, r.pid)).collect();
        for (id, pid) in running {
            proctree::kill_tree_now(pid);
            self.store.finish(
                &id,
                Status::Stopped,
                Some("control plane shut down".into()),
                None,
            );
        }
    }

    /// Whether `id` is running under this control plane.
    pub fn is_running(&self, id: &str) -> bool {
        self.running().contains_key(id)
    }
}

/// The command as one line a shell would accept, for lists and labels.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a stdout line is one of the agent's announcement lines.
fn is_announcement(line: &str) -> bool {
    line.starts_with(STATUS_PREFIX) || line == ANNOUNCE_HINT || line.starts_with(ANNOUNCE_COMMAND)
}

/// Reads `reader` line by line into the store as events of `stream`.
/// On stdout, the agent's announcement (printed before the command starts)
/// goes to the `status` stream; after the first other line, nothing does,
/// so a command cannot fake status events.
async fn capture(reader: impl AsyncRead + Unpin, store: Arc<Store>, id: String, stream: Stream) {
    let mut lines = Lines::new(reader);
    let mut in_announcement = stream == Stream::Stdout;
    let mut batch: Vec<LogEvent> = Vec::new();
    loop {
        let first = match lines.next().await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                store.push_status(&id, format!("cannot read the execution's {stream:?}: {e}"));
                return;
            }
        };
        // Lines already read come along in the same write: a command that
        // prints fast costs one write per buffer, not one per line.
        let time = now_iso();
        let mut next = Some(first);
        while let Some(message) = next {
            let stream = if in_announcement && is_announcement(&message) {
                Stream::Status
            } else {
                in_announcement = false;
                stream.clone()
            };
            batch.push(LogEvent {
                time: time.clone(),
                stream,
                message,
            });
            next = if batch.len() < MAX_BATCH {
                lines.buffered()
            } else {
                None
            };
        }
        store.push_events(&id, &batch);
        batch.clear();
    }
}

/// Most lines written at once.
const MAX_BATCH: usize = 4096;

/// Splits a byte stream into lines: lossy UTF-8, without the trailing
/// `\n` and `\r`, and at most [`MAX_LINE`] bytes each (longer lines are
/// split, at a character boundary where possible).
pub struct Lines<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    /// Lines of `reader`.
    pub fn new(reader: R) -> Self {
        Lines {
            reader: BufReader::with_capacity(64 * 1024, reader),
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end.
    pub async fn next(&mut self) -> std::io::Result<Option<String>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return Ok(Some(finish_line(rest)));
            }
            let room = MAX_LINE - self.buf.len();
            let window = &available[..available.len().min(room)];
            if let Some(nl) = window.iter().position(|&b| b == b'\n') {
                self.buf.extend_from_slice(&window[..nl]);
                self.reader.consume(nl + 1);
                let line = std::mem::take(&mut self.buf);
                return Ok(Some(finish_line(line)));
            }
            let taken = window.len();
            self.buf.extend_from_slice(window);
            self.reader.consume(taken);
            if self.buf.len() >= MAX_LINE {
                // Cut before a character that was split at the limit; it
                // starts the next piece instead of turning into U+FFFD.
                let cut = match std::str::from_utf8(&self.buf) {
                    Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
                    _ => self.buf.len(),
                };
                let rest = self.buf.split_off(cut);
                let line = std::mem::replace(&mut self.buf, rest);
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
        }
    }
}

impl<R: AsyncRead + Unpin> Lines<R> {
    /// The next line if it is already read whole (no waiting, no reading).
    pub fn buffered(&mut self) -> Option<String> {
        if !self.buf.is_empty() {
            return None;
        }
        let available = self.reader.buffer();
        let window = &available[..available.len().min(MAX_LINE)];
        let nl = window.iter().position(|&b| b == b'\n')?;
        let line = window[..nl].to_vec();
        self.reader.consume(nl + 1);
        Some(finish_line(line))
    }
}

fn finish_line(mut line: Vec<u8>) -> String {
    while line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all_lines(input: &[u8]) -> Vec<String> {
        let mut lines = Lines::new(input);
        let mut out = Vec::new();
        while let Some(l) = lines.next().await.expect("reads") {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_trimmed_and_bounded() {
        assert_eq!(all_lines(b"a\r\nb\n\nc").await, ["a", "b", "", "c"]);
        assert_eq!(all_lines(b"bad \xff byte\n").await, ["bad \u{fffd} byte"]);
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let got = all_lines(&long).await;
        assert_eq!(
            got.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LINE, MAX_LINE, 5]
        );
        // A two-byte character straddling the limit is not broken.
        let mut text = vec![b'y'; MAX_LINE - 1];
        text.extend_from_slice("é\n".as_bytes());
        let got = all_lines(&text).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE - 1);
        assert_eq!(got[1], "é");
    }

    #[test]
    fn announcement_lines_are_recognised() {
        let a = crate::announce::Announcement {
            address: "127.0.0.1".into(),
            port: 4000,
            host_key: Some("SHA256:x".into()),
        };
        for line in a.lines() {
            assert!(is_announcement(&line), "{line}");
        }
        assert!(!is_announcement("epoch 1 loss 0.5"));
    }

    #[test]
    fn commands_are_quoted_for_display() {
        let argv = ["python3", "-c", "print('hi there')"].map(String::from);
        assert_eq!(
            shell_words(&argv),
            r#"python3 -c 'print('\''hi there'\'')'"#
        );
    }
}
