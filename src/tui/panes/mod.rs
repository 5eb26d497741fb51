//! The kinds of panes and their state. Panes hold what they show; the
//! runtime feeds them and the widgets draw them.

pub mod command;
pub mod log;
pub mod shell;

pub use command::CommandPane;
pub use log::LogPane;
pub use shell::ShellPane;

use super::layout::PaneId;

/// What a pane shows.
pub enum PaneKind {
    /// An execution's log.
    Log(LogPane),
    /// An interactive shell.
    Shell(Box<ShellPane>),
    /// A one-off command's output.
    Command(CommandPane),
    /// Every tunnel of every execution.
    Tunnels {
        /// Selected row.
        selected: usize,
    },
}

impl PaneKind {
    /// A short name for titles.
    pub fn name(&self) -> &'static str {
        match self {
            PaneKind::Log(_) => "log",
            PaneKind::Shell(_) => "shell",
            PaneKind::Command(_) => "command",
            PaneKind::Tunnels { .. } => "tunnels",
        }
    }
}

/// A pane in the tiling.
pub struct Pane {
    /// Its id.
    pub id: PaneId,
    /// The execution it belongs to (none for the tunnels list).
    pub exec_id: Option<String>,
    /// `#12 train` for titles.
    pub exec_label: String,
    /// What it shows.
    pub kind: PaneKind,
}

impl Pane {
    /// The title: execution and kind, so panes of several executions can
    /// sit side by side.
    pub fn title(&self) -> String {
        match &self.kind {
            PaneKind::Tunnels { .. } => " tunnels ".to_string(),
            PaneKind::Command(c) => format!(
                " {} · {} · {} ",
                self.exec_label,
                self.kind.name(),
                c.command
            ),
            kind => format!(" {} · {} ", self.exec_label, kind.name()),
        }
    }
}
