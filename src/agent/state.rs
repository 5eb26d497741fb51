//! What the agent knows about itself: the wrapped command and the linger.
//! Shared by the wrapper (which changes it) and SSH sessions (which report
//! and adjust it through the porthole subsystems).

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// The wrapped command as the status subsystem reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CommandInfo {
    /// The command line.
    pub argv: Vec<String>,
    /// Its process id once started.
    pub pid: Option<u32>,
    /// Whether it is still running.
    pub running: bool,
    /// Its exit code once ended (128+N when killed by signal N).
    pub exit_code: Option<i32>,
}

/// The lifecycle that the wrapper and the linger requests share.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// The wrapped command, if any.
    pub command: Option<CommandInfo>,
    /// How long to keep serving after the command ends.
    pub linger: Duration,
    /// When the agent stops, once the command has ended.
    pub deadline: Option<(Instant, SystemTime)>,
}

/// A request from the `porthole-linger@porthole` subsystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LingerRequest {
    /// Keep serving at least this long from now (or after the command ends).
    Extend(Duration),
    /// Stop lingering: exit as soon as the command has ended.
    Release,
}

impl LingerRequest {
    /// Parses one request line: `extend DURATION` or `release`.
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("release"), None, None) => Ok(LingerRequest::Release),
            (Some("extend"), Some(d), None) => humantime::parse_duration(d)
                .map(LingerRequest::Extend)
                .map_err(|e| format!("`{d}` is not a duration ({e}); try `extend 30m`")),
            _ => Err(format!(
                "unknown linger request `{}`; expected `extend DURATION` or `release`",
                line.trim()
            )),
        }
    }
}

/// Shared, observable agent state.
#[derive(Debug)]
pub struct AgentState {
    started: Instant,
    ssh_port: u16,
    lifecycle: watch::Sender<Lifecycle>,
    /// Lines for the people in PTY sessions (the linger's end is near).
    notices: broadcast::Sender<String>,
}

impl AgentState {
    /// State for an agent listening on `ssh_port`.
    pub fn new(ssh_port: u16, command: Option<Vec<String>>, linger: Duration) -> Self {
        let lifecycle = Lifecycle {
            command: command.map(|argv| CommandInfo {
                argv,
                pid: None,
                running: false,
                exit_code: None,
            }),
            linger,
            deadline: None,
        };
        AgentState {
            started: Instant::now(),
            ssh_port,
            lifecycle: watch::Sender::new(lifecycle),
            notices: broadcast::Sender::new(4),
        }
    }

    /// The port the SSH server listens on.
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// Time since the agent started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A copy of the current lifecycle.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.borrow().clone()
    }

    /// Watches the lifecycle for changes.
    pub fn subscribe(&self) -> watch::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }

    /// Shows `line` in every open PTY session, as `wall` would.
    pub fn notify_sessions(&self, line: String) {
        // No receiver means no PTY session is open: nobody to tell.
        let _ = self.notices.send(line);
    }

    /// Notices for one PTY session, from now on.
    pub fn notices(&self) -> broadcast::Receiver<String> {
        self.notices.subscribe()
    }

    /// Records that the command started with `pid`.
    pub fn command_started(&self, pid: Option<u32>) {
        self.lifecycle.send_modify(|l| {
            if let Some(c) = l.command.as_mut() {
                c.pid = pid;
                c.running = true;
            }
        });
    }

    /// Records the command's end and starts the linger clock.
    pub fn command_ended(&self, exit_code: i32) -> Option<(Instant, SystemTime)> {
        let mut deadline = None;
        self.lifecycle.send_modify(|l| {
            if let Some(c) = l.command.as_mut() {
                c.running = false;
                c.exit_code = Some(exit_code);
            }
            deadline = Some((Instant::now() + l.linger, SystemTime::now() + l.linger));
            l.deadline = deadline;
        });
        deadline
    }

    /// Applies a linger request; fails when there is no command to linger after.
    pub fn apply(&self, request: LingerRequest) -> Result<(), String> {
        if self.lifecycle.borrow().command.is_none() {
            return Err(
                "this agent wraps no command: it serves until signalled, there is no linger".into(),
            );
        }
        self.lifecycle.send_modify(|l| match request {
            LingerRequest::Extend(d) => match l.deadline.as_mut() {
                Some((at, wall)) => {
                    let now = Instant::now();
                    if now + d > *at {
                        *at = now + d;
                        *wall = SystemTime::now() + d;
                    }
                }
                None => l.linger = l.linger.max(d),
            },
            LingerRequest::Release => {
                l.linger = Duration::ZERO;
                if l.deadline.is_some() {
                    l.deadline = Some((Instant::now(), SystemTime::now()));
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linger_requests_parse() {
        assert_eq!(
            LingerRequest::parse("release\n"),
            Ok(LingerRequest::Release)
        );
        assert_eq!(
            LingerRequest::parse("extend 30m"),
            Ok(LingerRequest::Extend(Duration::from_secs(1800)))
        );
        assert!(LingerRequest::parse("extend soon").is_err());
        assert!(LingerRequest::parse("sleep 1h").is_err());
        assert!(LingerRequest::parse("").is_err());
    }

    #[test]
    fn extend_before_the_end_raises_the_linger_and_release_ends_it() {
        let s = AgentState::new(22, Some(vec!["true".into()]), Duration::from_secs(5));
        s.apply(LingerRequest::Extend(Duration::from_secs(60)))
            .expect("applies");
        assert_eq!(s.lifecycle().linger, Duration::from_secs(60));
        let (at, _) = s.command_ended(0).expect("deadline set");
        assert!(at > Instant::now() + Duration::from_secs(50));
        s.apply(LingerRequest::Release).expect("applies");
        let (at, _) = s.lifecycle().deadline.expect("still set");
        assert!(at <= Instant::now());
    }

    #[test]
    fn no_command_means_no_linger() {
        let s = AgentState::new(22, None, Duration::ZERO);
        assert!(s.apply(LingerRequest::Release).is_err());
    }
}
