//! The kinds of panes. Each kind owns its state, handles the keys meant
//! for it and draws itself ([`PaneView`]); the runtime feeds them and the
//! app routes keys to the focused one. A new kind is a file here plus its
//! line in the `pane_kinds!` list below.

pub mod command;
pub mod log;
pub mod shell;
pub mod tunnels;

pub use command::CommandPane;
pub use log::LogPane;
pub use shell::ShellPane;
pub use tunnels::TunnelsPane;

use crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;

use super::hints::Hint;
use super::keys::{KeyAction, Keymap};
use super::layout::PaneId;
use super::tunnels::TunnelRow;
use super::widgets::block;

/// What a pane may see of the rest of the console while it handles a key.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaneCx {
    /// Rows and columns inside its border, when it is on screen.
    pub inner: Option<(u16, u16)>,
    /// How many tunnels there are.
    pub tunnels: usize,
}

/// What a pane may see of the rest of the console while it draws.
pub struct DrawCx<'a> {
    /// Keys go to it.
    pub focused: bool,
    /// Keys go to its shell.
    pub interacting: bool,
    /// Every tunnel.
    pub tunnels: &'a [TunnelRow],
    /// The active keymap, to name keys as bound.
    pub keymap: &'a Keymap,
}

/// What a key handled by a pane asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaneAction {
    /// Not a key for this pane: the app's own meaning applies.
    Ignored,
    /// Handled inside the pane.
    Done,
    /// Enter interaction mode (keys go to the shell).
    Interact,
    /// Run this command again in the pane.
    Rerun(String),
    /// Stop the tunnel at this index of the tunnels list.
    StopTunnel(usize),
    /// Close the pane and focus the list (`Esc` in the tunnels table).
    Leave,
    /// Forget every failed tunnel (`X` in the tunnels table).
    ClearFailedTunnels,
}

/// A pane kind's behaviour: its title, hints, keys and drawing.
pub trait PaneView {
    /// A short name for titles.
    fn name(&self) -> &'static str;

    /// The title: the execution and the kind, so that panes of several
    /// executions can sit side by side.
    fn title(&self, exec_label: &str) -> String {
        format!(" {} · {} ", exec_label, self.name())
    }

    /// The key bar's hints while it is focused (`? help` and the quit key
    /// are added to them).
    fn hints(&self) -> Vec<Hint>;

    /// Scrolls `n` rows (or selects `n` rows away).
    fn scroll(&mut self, n: usize, up: bool, cx: &PaneCx);

    /// Handles an action meant for the focused pane (the moving keys go
    /// to [`PaneView::scroll`]).
    fn on_action(&mut self, _action: KeyAction, _cx: &PaneCx) -> PaneAction {
        PaneAction::Ignored
    }

    /// Handles a key before the keymap does, for keys of its own (`Esc`
    /// and `X` in the tunnels table); [`PaneAction::Ignored`] lets the
    /// keymap have it.
    fn on_key(&mut self, _key: &KeyEvent, _cx: &PaneCx) -> PaneAction {
        PaneAction::Ignored
    }

    /// Whether `/` searches it (else `/` filters the list).
    fn searchable(&self) -> bool {
        false
    }

    /// The last search, repeated by an empty one.
    fn last_search(&self) -> Option<String> {
        None
    }

    /// Searches for `term`; says why when it is not found.
    fn search(&mut self, _term: &str, _cx: &PaneCx) -> Result<(), String> {
        Ok(())
    }

    /// Whether closing it or quitting ends something running (a shell, a
    /// command): quitting asks first.
    fn holds_session(&self) -> bool {
        false
    }

    /// Whether it has an SSH session of its own (a shell, a command), which
    /// the runtime closes with the pane.
    fn owns_session(&self) -> bool {
        false
    }

    /// Whether it is connected to its execution's SSH server now (the
    /// list's SSH column says `connected`).
    fn connected(&self) -> bool {
        false
    }

    /// Its inside is now `rows` x `cols`; whether the remote side must be
    /// told.
    fn resize(&mut self, _rows: u16, _cols: u16) -> bool {
        false
    }

    /// Its execution has ended or its agent has stopped; `note` says so.
    fn execution_gone(&mut self, _note: &str) {}

    /// Draws what is inside its border.
    fn draw(&self, frame: &mut Frame<'_>, inner: Rect, cx: &DrawCx<'_>);
}

/// Declares [`PaneKind`] and its dispatch to each kind's [`PaneView`] from
/// one list, so that a new kind is one line there.
macro_rules! pane_kinds {
    ($($(#[$doc:meta])* $kind:ident($state:ty),)*) => {
        /// What a pane shows.
        pub enum PaneKind {
            $($(#[$doc])* $kind($state),)*
        }

        impl PaneKind {
            /// The kind's behaviour.
            pub fn view(&self) -> &dyn PaneView {
                match self {
                    $(PaneKind::$kind(p) => p,)*
                }
            }

            /// The kind's behaviour, to change it.
            pub fn view_mut(&mut self) -> &mut dyn PaneView {
                match self {
                    $(PaneKind::$kind(p) => p,)*
                }
            }
        }
    };
}

pane_kinds! {
    /// An execution's log.
    Log(LogPane),
    /// An interactive shell.
    Shell(ShellPane),
    /// A one-off command's output.
    Command(CommandPane),
    /// Every tunnel of every execution.
    Tunnels(TunnelsPane),
}

impl PaneKind {
    /// A short name for titles.
    pub fn name(&self) -> &'static str {
        self.view().name()
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
        self.kind.view().title(&self.exec_label)
    }

    /// Draws the pane with its border and title.
    pub fn draw(&self, frame: &mut Frame<'_>, area: Rect, cx: &DrawCx<'_>) {
        // First, so that a narrow pane still shows where the keys go.
        let title = if cx.interacting {
            format!(" [interacting]{}", self.title())
        } else {
            self.title()
        };
        let block = block(title, cx.focused, cx.interacting);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        self.kind.view().draw(frame, inner, cx);
    }
}
