//! Messages into the app (from tasks) and effects out of it (for tasks).

use std::sync::Arc;

use bytes::Bytes;

use super::layout::PaneId;
use crate::agent::state::LingerRequest;
use crate::source::scanner::{Endpoint, Linger};
use crate::source::{Execution, LogEvent, Stream};
use crate::ssh::tunnel::{Tunnel, TunnelEvent, TunnelSpec};

/// Identifies a tunnel row.
pub type TunnelId = u64;

/// A yes/no question from a task (a host key to trust), answered by the
/// user in a popup; dropping it answers "no".
pub struct Question {
    /// What to ask.
    pub text: String,
    /// Where the answer goes.
    pub reply: std::sync::mpsc::Sender<bool>,
}

impl std::fmt::Debug for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Question")
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

/// What background tasks report.
#[derive(Debug)]
pub enum Msg {
    /// A fresh execution list of one source (by index), or why it could
    /// not be had.
    Executions(usize, Result<Vec<Execution>, String>),
    /// An execution's latest SSH announcement.
    Endpoint {
        /// Execution id.
        exec_id: String,
        /// Where it listens.
        endpoint: Endpoint,
    },
    /// New log lines.
    Log {
        /// Execution id.
        exec_id: String,
        /// The events, in order.
        events: Vec<LogEvent>,
    },
    /// Reading a log failed (it keeps retrying).
    LogError {
        /// Execution id.
        exec_id: String,
        /// What went wrong.
        error: String,
    },
    /// A shell connected.
    ShellConnected(PaneId),
    /// Shell output.
    ShellOutput(PaneId, Bytes),
    /// The shell ended with this exit code.
    ShellEnded(PaneId, i32),
    /// The shell could not connect or broke.
    ShellFailed(PaneId, String),
    /// Command output.
    CommandOutput(PaneId, Stream, Bytes),
    /// The command ended.
    CommandDone(PaneId, i32),
    /// The command could not run.
    CommandFailed(PaneId, String),
    /// A tunnel is bound and serving.
    TunnelUp(TunnelId, Arc<Tunnel>),
    /// A tunnel's state changed.
    Tunnel(TunnelId, TunnelEvent),
    /// A tunnel could not start.
    TunnelFailed(TunnelId, String),
    /// A task asks the user (host-key trust).
    Ask(Question),
    /// What the agent said of its linger in an execution's log.
    Linger {
        /// Execution id.
        exec_id: String,
        /// Until when, or over.
        linger: Linger,
    },
    /// A background request's answer, for the status bar (`Err`: failed).
    Said(Result<String, String>),
    /// Listening ports inside an execution (from the agent's status).
    AgentPorts {
        /// Execution id.
        exec_id: String,
        /// The ports, each with the name of the process listening.
        ports: Vec<AgentPort>,
    },
}

/// A port listening inside an execution, as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPort {
    /// The port.
    pub port: u16,
    /// The listening process's name (`python3`), when the agent knows it.
    pub process: Option<String>,
}

impl From<u16> for AgentPort {
    fn from(port: u16) -> Self {
        AgentPort {
            port,
            process: None,
        }
    }
}

/// I/O the app asks for; the runtime performs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Follow an execution's log.
    FollowLog(String),
    /// Stop following it.
    UnfollowLog(String),
    /// Open a shell for a pane.
    OpenShell {
        /// The pane.
        pane: PaneId,
        /// The execution.
        exec_id: String,
        /// Initial size.
        rows: u16,
        /// Initial size.
        cols: u16,
    },
    /// Input for a shell.
    ShellInput(PaneId, Vec<u8>),
    /// A shell pane's new size.
    ShellResize(PaneId, u16, u16),
    /// Close a shell or command pane's session.
    ClosePane(PaneId),
    /// Run a command for a pane.
    RunCommand {
        /// The pane.
        pane: PaneId,
        /// The execution.
        exec_id: String,
        /// The command line.
        command: String,
    },
    /// Start a tunnel.
    OpenTunnel {
        /// The new tunnel's id.
        id: TunnelId,
        /// The execution.
        exec_id: String,
        /// The spec.
        spec: TunnelSpec,
    },
    /// Stop a tunnel.
    StopTunnel(TunnelId),
    /// Ask the agent for its listening ports.
    FetchPorts(String),
    /// Change an execution's linger over its agent's linger subsystem.
    Linger {
        /// The execution.
        exec_id: String,
        /// `#5 title`, for the answer.
        label: String,
        /// Extend or release.
        request: LingerRequest,
    },
    /// Put text on the clipboard (OSC 52).
    Copy(String),
}
