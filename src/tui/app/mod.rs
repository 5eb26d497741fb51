//! The console's state and how it changes. No I/O here: key presses and
//! task messages come in, effects go out for the runtime to perform.

mod input;
mod panes;
mod update;

use std::collections::BTreeMap;
use std::time::SystemTime;

use ratatui::layout::Rect;

use super::action::Effect;
use super::keys::Keymap;
use super::layout::{PaneId, Split, Tiling};
use super::panes::shell::ShellState;
use super::panes::{Pane, PaneCx, PaneKind};
use super::ui;
use crate::source::scanner::Linger;
use crate::ssh::tunnel::TunnelState;

pub use super::executions::{short_duration, ExecRow, SshState};
pub use super::tunnels::TunnelRow;

pub use super::popups::prompt::{DEFAULT_COMMAND, DEFAULT_LINGER, DEFAULT_TUNNEL};
pub use super::popups::{Popup, Prompt, PromptKind};

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The executions list.
    List,
    /// A pane.
    Pane(PaneId),
}

/// How important a status message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Information.
    Info,
    /// Something failed.
    Error,
}

/// The whole console state.
pub struct App {
    /// Executions, newest first.
    pub executions: Vec<ExecRow>,
    /// Selected row among the visible (filtered) ones.
    pub selected: usize,
    /// The list filter.
    pub filter: String,
    /// The filter before the filter prompt opened (`Esc` there puts it
    /// back).
    filter_before: String,
    /// Open panes.
    pub panes: BTreeMap<PaneId, Pane>,
    /// Their tiling.
    pub tiling: Tiling,
    /// Where keys go.
    pub focus: Focus,
    /// The zoomed pane.
    pub zoomed: Option<PaneId>,
    /// How the next pane splits the focused one.
    pub next_split: Split,
    /// Keys go to the focused shell.
    pub interacting: bool,
    /// The overlay.
    pub popup: Option<Popup>,
    /// The status bar message.
    pub status: Option<(String, Level)>,
    /// Why a source cannot be read, by source index.
    pub source_errors: BTreeMap<usize, String>,
    /// The sources' names (`local`, `Valohai https://...`), in list order.
    pub sources: Vec<String>,
    /// Every tunnel.
    pub tunnels: Vec<TunnelRow>,
    /// Key bindings.
    pub keymap: Keymap,
    /// Log pane scrollback.
    pub scrollback: usize,
    /// The default key path, for `y`.
    pub key_path: String,
    /// Commands run before (for the prompt's history).
    pub history: Vec<String>,
    /// The terminal's size.
    pub size: Rect,
    /// Something changed since the last draw.
    pub dirty: bool,
    /// The user asked to quit.
    pub quit: bool,
    /// The console's clock: ages and lingers are counted to it (set by
    /// [`App::tick`], so that tests can fix it).
    pub now: SystemTime,
    /// Whether a local port on 127.0.0.1 is free (the tunnel prompt
    /// proposes another when not); tests replace it.
    pub port_free: fn(u16) -> bool,
    effects: Vec<Effect>,
    next_id: u64,
}

impl App {
    /// An empty console.
    pub fn new(keymap: Keymap, scrollback: usize, sources: &[String], key_path: &str) -> Self {
        App {
            executions: Vec::new(),
            selected: 0,
            filter: String::new(),
            filter_before: String::new(),
            panes: BTreeMap::new(),
            tiling: Tiling::default(),
            focus: Focus::List,
            zoomed: None,
            next_split: Split::Horizontal,
            interacting: false,
            popup: None,
            status: None,
            source_errors: BTreeMap::new(),
            sources: sources.to_vec(),
            tunnels: Vec::new(),
            keymap,
            scrollback,
            key_path: key_path.to_string(),
            history: Vec::new(),
            size: Rect::new(0, 0, 80, 24),
            dirty: true,
            now: SystemTime::now(),
            port_free: super::tunnels::local_port_free,
            quit: false,
            effects: Vec::new(),
            next_id: 1,
        }
    }

    /// Effects requested since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Says something in the status bar.
    fn info(&mut self, msg: impl Into<String>) {
        self.status = Some((msg.into(), Level::Info));
    }

    /// Says in the status bar that something failed.
    fn error(&mut self, msg: impl Into<String>) {
        self.status = Some((msg.into(), Level::Error));
    }

    /// Executions matching the filter.
    pub fn visible(&self) -> Vec<&ExecRow> {
        let f = self.filter.to_lowercase();
        self.executions
            .iter()
            .filter(|r| {
                f.is_empty()
                    || r.label().to_lowercase().contains(&f)
                    || r.exec.status.to_lowercase().contains(&f)
            })
            .collect()
    }

    /// The SSH state of an execution: from its status, what its agent
    /// said of its linger, and what is open to it.
    pub fn ssh_state(&self, row: &ExecRow) -> SshState {
        if row.exec.status().is_finished() {
            return SshState::Gone;
        }
        match row.linger {
            Some(Linger::Over) => return SshState::Gone,
            Some(Linger::Until(at)) => {
                return match at.duration_since(self.now) {
                    Ok(left) if !left.is_zero() => SshState::Lingering(left),
                    _ => SshState::Gone,
                }
            }
            None => {}
        }
        let id = &row.exec.id;
        let shell_live = self
            .panes
            .values()
            .any(|p| p.exec_id.as_deref() == Some(id) && p.kind.view().connected());
        let tunnel_up = self
            .tunnels
            .iter()
            .any(|t| &t.exec_id == id && t.state == TunnelState::Up);
        match (&row.endpoint, shell_live || tunnel_up) {
            (_, true) => SshState::Connected,
            (Some(_), false) => SshState::Ready,
            (None, false) => SshState::Waiting,
        }
    }

    /// How long ago an execution was created, as the list shows it.
    pub fn age(&self, row: &ExecRow) -> String {
        crate::source::model::age_at(row.exec.ctime.as_deref(), self.now.into())
    }

    /// The clock moved to `now`: a redraw only when a shown age or linger
    /// changed (idle, the console draws nothing).
    pub fn tick(&mut self, now: SystemTime) {
        let shown = |app: &App| -> Vec<(String, String)> {
            app.visible()
                .iter()
                .map(|r| (app.age(r), app.ssh_state(r).text()))
                .collect()
        };
        let before = shown(self);
        self.now = now;
        if shown(self) != before {
            self.dirty = true;
        }
    }

    /// The execution with this id.
    fn row(&self, exec_id: &str) -> Option<&ExecRow> {
        self.executions.iter().find(|r| r.exec.id == exec_id)
    }

    /// The execution keys act on: the focused pane's, else the selected one.
    pub fn context(&self) -> Option<&ExecRow> {
        if let Focus::Pane(id) = self.focus {
            if let Some(exec_id) = self.panes.get(&id).and_then(|p| p.exec_id.as_deref()) {
                return self.row(exec_id);
            }
        }
        self.visible().get(self.selected).copied()
    }

    /// Whether sessions or tunnels are open (quitting asks first).
    pub fn has_sessions(&self) -> bool {
        self.panes.values().any(|p| p.kind.view().holds_session())
            || self
                .tunnels
                .iter()
                .any(|t| !matches!(t.state, TunnelState::Failed(_)))
    }

    /// How many shells and tunnels are open (the quit confirmation says).
    pub fn open_sessions(&self) -> (usize, usize) {
        let shells = self
            .panes
            .values()
            .filter(|p| matches!(&p.kind, PaneKind::Shell(s) if matches!(s.state, ShellState::Live | ShellState::Connecting)))
            .count();
        let tunnels = self
            .tunnels
            .iter()
            .filter(|t| !matches!(t.state, TunnelState::Failed(_)))
            .count();
        (shells, tunnels)
    }

    /// The rectangles of the panes as drawn now.
    pub fn pane_rects(&self) -> Vec<(PaneId, Rect)> {
        let areas = ui::areas(self.size);
        match self.zoomed {
            Some(z) => vec![(z, areas.panes)],
            None => self.tiling.rects(areas.panes),
        }
    }

    /// What pane `id` may see of the console while it handles a key.
    fn pane_cx(&self, id: PaneId) -> PaneCx {
        PaneCx {
            inner: self
                .pane_rects()
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, r)| ui::inner_size(*r)),
            tunnels: self.tunnels.len(),
        }
    }

    /// Matches panes (shell screens) to their sizes, telling the remote side.
    pub fn sync_sizes(&mut self) {
        for (id, rect) in self.pane_rects() {
            let (rows, cols) = ui::inner_size(rect);
            let resized = self
                .panes
                .get_mut(&id)
                .is_some_and(|p| p.kind.view_mut().resize(rows, cols));
            if resized {
                self.effects.push(Effect::ShellResize(id, rows, cols));
            }
        }
        self.dirty = true;
    }

    /// Terminal resized.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.size = Rect::new(0, 0, width, height);
        self.sync_sizes();
    }
}
