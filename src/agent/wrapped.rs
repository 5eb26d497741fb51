//! The step's command that the agent wraps, and the linger after it.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use super::groups::kill_tree;
use super::state::AgentState;

/// After a release over SSH, time for the answer to reach the client.
const RELEASE_FLUSH: Duration = Duration::from_millis(300);

/// How long before the linger ends the people in shells are told.
const LINGER_WARNING: Duration = Duration::from_secs(60);

/// Exit code as a shell reports it: the code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// How often the agent looks whether its parent is still there.
const PARENT_POLL: Duration = Duration::from_millis(500);

/// The signals a platform sends to stop a run, and, when asked, the end of
/// the process that started the agent (read as a SIGTERM).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    parent: Option<Pid>,
}

impl StopSignals {
    fn new(parent: Option<Pid>) -> anyhow::Result<Self> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
            parent,
        })
    }

    async fn next(&mut self) -> Signal {
        let parent = self.parent;
        let parent_gone = async move {
            let Some(parent) = parent else {
                return std::future::pending().await;
            };
            // An orphan is re-parented (to init or a subreaper), so a
            // changed parent means the original one is gone.
            while nix::unistd::getppid() == parent {
                tokio::time::sleep(PARENT_POLL).await;
            }
        };
        tokio::select! {
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.hup.recv() => Signal::SIGHUP,
            () = parent_gone => {
                say!("porthole-agent: the process that started it is gone");
                // Only once: the stop that follows must not repeat.
                self.parent = None;
                Signal::SIGTERM
            }
        }
    }
}

/// Serves until SIGTERM, SIGINT or SIGHUP (no wrapped command), or until
/// `parent` is gone.
pub async fn serve_until_signalled(parent: Option<Pid>) -> anyhow::Result<i32> {
    let mut signals = StopSignals::new(parent)?;
    let sig = signals.next().await;
    say!("porthole-agent: {} received, stopping", sig.as_str());
    Ok(0)
}

/// Runs the command with stdout and stderr passed through untouched,
/// forwards stop signals (and the end of `parent`, as SIGTERM) to its
/// process group, then lingers. Returns the
/// command's exit code.
pub async fn run(
    argv: &[OsString],
    state: &AgentState,
    parent: Option<Pid>,
) -> anyhow::Result<i32> {
    let mut signals = StopSignals::new(parent)?;
    let (program, args) = argv.split_first().context("empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_remove("PORTHOLE_AUTHORIZED_KEYS")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        // Its own group: signals reach its whole tree, and a Ctrl-C in a
        // terminal reaches it once (through us), not twice.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    let pid = child.id();
    state.command_started(pid);

    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("cannot wait for the command")?,
            sig = signals.next() => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = killpg(Pid::from_raw(pid), sig);
                }
            }
        }
    };
    let code = exit_code(status);
    linger(state, code, &mut signals).await;
    // Background processes the command left in its group go with it: an
    // agent that has exited must not leave a copy of the job running.
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        kill_tree(pid);
    }
    Ok(code)
}

/// Keeps serving until the (possibly extended or released) deadline, or a
/// stop signal.
async fn linger(state: &AgentState, code: i32, signals: &mut StopSignals) {
    let Some((mut at, wall)) = state.command_ended(code) else {
        return;
    };
    if at <= Instant::now() {
        return;
    }
    say!(
        "porthole-agent: the command exited with code {code}; SSH stays up for {} (until {}). \
         `echo release | ssh -s ... porthole-linger@porthole` ends it sooner, `extend 1h` keeps it longer.",
        humantime::format_duration(Duration::from_secs((at - Instant::now()).as_secs_f64().round() as u64)),
        rfc3339(wall)
    );
    let mut changes = state.subscribe();
    // The people in shells are told once per deadline, a minute before.
    let mut warned_for = None;
    loop {
        let warn_at = at.checked_sub(LINGER_WARNING).unwrap_or(at);
        let warn = warned_for != Some(at);
        tokio::select! {
            _ = tokio::time::sleep_until(warn_at.into()), if warn => {
                warned_for = Some(at);
                let left = at.saturating_duration_since(Instant::now());
                state.notify_sessions(format!(
                    "porthole-agent: this SSH server stops in {} (at {} UTC), when the linger \
                     ends; `porthole linger EXEC extend 1h` keeps it up",
                    humantime::format_duration(Duration::from_secs(left.as_secs_f64().round() as u64)),
                    rfc3339(SystemTime::now() + left),
                ));
                continue;
            }
            _ = tokio::time::sleep_until(at.into()) => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            sig = signals.next() => {
                say!("porthole-agent: {} received during the linger, stopping", sig.as_str());
                return;
            }
        }
        match state.lifecycle().deadline {
            Some((next, wall)) if next > Instant::now() => {
                if next != at {
                    say!("porthole-agent: linger now ends at {}", rfc3339(wall));
                    at = next;
                }
            }
            Some((next, _)) if next != at => {
                // Released early over SSH: let the reply reach the client.
                say!("porthole-agent: linger released, stopping");
                tokio::time::sleep(RELEASE_FLUSH).await;
                return;
            }
            _ => {
                say!("porthole-agent: linger over, stopping");
                return;
            }
        }
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t.max(UNIX_EPOCH)).to_string()
}
