//! The console's state and how it changes. No I/O here: key presses and
//! task messages come in, effects go out for the runtime to perform.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};
use ratatui_textarea::TextArea;

use super::action::{Effect, Msg, TunnelId};
use super::keys::{self, KeyAction, Keymap};
use super::layout::{neighbour, PaneId, Split, Tiling, Toward};
use super::panes::shell::ShellState;
use super::panes::{CommandPane, LogPane, Pane, PaneKind, ShellPane};
use super::ui;
use crate::agent::state::LingerRequest;
use crate::source::scanner::{Endpoint, Linger};
use crate::source::{Execution, Stream};
use crate::ssh::tunnel::{Tunnel, TunnelEvent, TunnelSpec, TunnelState};

/// The command prompt's prefill.
pub const DEFAULT_COMMAND: &str = "ps aux";
/// The tunnel prompt's prefill (debugpy's port).
pub const DEFAULT_TUNNEL: &str = "5678";
/// The linger prompt's prefill.
pub const DEFAULT_LINGER: &str = "extend 1h";

/// An execution in the list.
#[derive(Debug, Clone)]
pub struct ExecRow {
    /// Which source it comes from (index into [`App::sources`]).
    pub source: usize,
    /// The execution.
    pub exec: Execution,
    /// Its SSH announcement, once seen.
    pub endpoint: Option<Endpoint>,
    /// What its agent said of its linger, once the command has ended.
    pub linger: Option<Linger>,
}

impl ExecRow {
    /// `#12 title`.
    pub fn label(&self) -> String {
        let label = self.exec.label();
        if label.is_empty() {
            format!("#{}", self.exec.counter)
        } else {
            format!("#{} {}", self.exec.counter, label)
        }
    }
}

/// SSH state shown in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshState {
    /// No announcement yet.
    Waiting,
    /// Announced: shells and tunnels can open.
    Ready,
    /// A shell or tunnel is open.
    Connected,
    /// The command has ended; the agent serves this much longer.
    Lingering(Duration),
    /// The execution has ended, or its agent has stopped: nothing to
    /// connect to.
    Gone,
}

impl SshState {
    /// As the list shows it: `waiting`, `ready`, `connected`,
    /// `lingering 9m`, `gone`.
    pub fn text(&self) -> String {
        match self {
            SshState::Waiting => "waiting".into(),
            SshState::Ready => "ready".into(),
            SshState::Connected => "connected".into(),
            SshState::Lingering(left) => format!("lingering {}", short_duration(*left)),
            SshState::Gone => "gone".into(),
        }
    }
}

/// `45s`, `9m`, `119m`, `5h`, `3d`, as kubectl counts: whole units, the
/// smaller one kept while the larger would say too little.
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=7_199 => format!("{}m", secs / 60),
        7_200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The executions list.
    List,
    /// A pane.
    Pane(PaneId),
}

/// What a prompt is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// Filter the list.
    Filter,
    /// Search a log or command pane.
    Search(PaneId),
    /// A command to run.
    Command(String),
    /// A tunnel spec, with the ports the agent reported.
    Tunnel {
        /// The execution.
        exec_id: String,
        /// Listening ports offered as one-key choices.
        ports: Vec<u16>,
    },
    /// A linger request (`extend 1h`, `release`).
    Linger {
        /// The execution.
        exec_id: String,
        /// `#5 title`.
        label: String,
    },
}

/// A one-line prompt.
pub struct Prompt {
    /// Its purpose.
    pub kind: PromptKind,
    /// The text field.
    pub input: TextArea<'static>,
    history_pos: Option<usize>,
}

impl Prompt {
    fn new(kind: PromptKind, prefill: &str) -> Self {
        let mut input = TextArea::new(vec![prefill.to_string()]);
        input.move_cursor(ratatui_textarea::CursorMove::End);
        Prompt {
            kind,
            input,
            history_pos: None,
        }
    }

    /// The text typed.
    pub fn text(&self) -> String {
        self.input.lines().join("")
    }

    fn set_text(&mut self, text: &str) {
        self.input = TextArea::new(vec![text.to_string()]);
        self.input.move_cursor(ratatui_textarea::CursorMove::End);
    }
}

/// An overlay above everything.
pub enum Popup {
    /// The key help.
    Help,
    /// A prompt.
    Prompt(Box<Prompt>),
    /// "Sessions are open, quit anyway?"
    ConfirmQuit,
    /// A task's question (trust this host key?).
    Ask(super::action::Question),
}

/// A tunnel in the tunnels list.
#[derive(Debug, Clone)]
pub struct TunnelRow {
    /// Its id.
    pub id: TunnelId,
    /// The execution's label.
    pub exec_label: String,
    /// The execution.
    pub exec_id: String,
    /// What was asked.
    pub spec: TunnelSpec,
    /// The bound tunnel, once listening.
    pub tunnel: Option<Arc<Tunnel>>,
    /// Its state.
    pub state: TunnelState,
    /// The last failed local connection.
    pub last_error: Option<String>,
}

impl TunnelRow {
    /// The local address, once bound.
    pub fn local(&self) -> Option<SocketAddr> {
        self.tunnel.as_ref().map(|t| t.local)
    }
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
            quit: false,
            effects: Vec::new(),
            next_id: 1,
        }
    }

    /// Effects requested since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn info(&mut self, msg: impl Into<String>) {
        self.status = Some((msg.into(), Level::Info));
    }

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
        let shell_live = self.panes.values().any(|p| {
            p.exec_id.as_deref() == Some(id)
                && matches!(&p.kind, PaneKind::Shell(s) if s.state == ShellState::Live)
        });
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
        self.panes.values().any(|p| match &p.kind {
            PaneKind::Shell(s) => matches!(s.state, ShellState::Live | ShellState::Connecting),
            PaneKind::Command(c) => c.running(),
            _ => false,
        }) || self
            .tunnels
            .iter()
            .any(|t| !matches!(t.state, TunnelState::Failed(_)))
    }

    // ----- panes -----

    fn add_pane(&mut self, exec: Option<&ExecRow>, kind: PaneKind) -> PaneId {
        let id = self.next_id;
        self.next_id += 1;
        let beside = match self.focus {
            Focus::Pane(p) => Some(p),
            Focus::List => None,
        };
        self.tiling.insert(id, beside, self.next_split);
        self.panes.insert(
            id,
            Pane {
                id,
                exec_id: exec.map(|r| r.exec.id.clone()),
                exec_label: exec.map_or_else(String::new, ExecRow::label),
                kind,
            },
        );
        self.zoomed = None;
        self.focus = Focus::Pane(id);
        self.sync_sizes();
        id
    }

    fn close_pane(&mut self, id: PaneId) {
        let Some(pane) = self.panes.remove(&id) else {
            return;
        };
        self.tiling.remove(id);
        if self.zoomed == Some(id) {
            self.zoomed = None;
        }
        match &pane.kind {
            PaneKind::Log(_) => {
                let exec = pane.exec_id.clone().unwrap_or_default();
                let still = self.panes.values().any(|p| {
                    matches!(p.kind, PaneKind::Log(_))
                        && p.exec_id.as_deref() == Some(exec.as_str())
                });
                if !still {
                    self.effects.push(Effect::UnfollowLog(exec));
                }
            }
            PaneKind::Shell(_) | PaneKind::Command(_) => self.effects.push(Effect::ClosePane(id)),
            PaneKind::Tunnels { .. } => {}
        }
        self.interacting = false;
        self.focus = self
            .tiling
            .order()
            .last()
            .map_or(Focus::List, |p| Focus::Pane(*p));
        self.sync_sizes();
    }

    /// The rectangles of the panes as drawn now.
    pub fn pane_rects(&self) -> Vec<(PaneId, Rect)> {
        let areas = ui::areas(self.size);
        match self.zoomed {
            Some(z) => vec![(z, areas.panes)],
            None => self.tiling.rects(areas.panes),
        }
    }

    /// The output area (width, height) of a command pane: its inside less
    /// the footer row.
    fn command_view(&self, id: PaneId) -> (usize, usize) {
        self.pane_rects()
            .iter()
            .find(|(p, _)| *p == id)
            .map_or((80, 10), |(_, r)| {
                let (rows, cols) = ui::inner_size(*r);
                (
                    usize::from(cols),
                    usize::from(rows.saturating_sub(1)).max(1),
                )
            })
    }

    /// Matches shell screens to their pane sizes, telling the remote side.
    pub fn sync_sizes(&mut self) {
        for (id, rect) in self.pane_rects() {
            let (rows, cols) = ui::inner_size(rect);
            if let Some(Pane {
                kind: PaneKind::Shell(s),
                ..
            }) = self.panes.get_mut(&id)
            {
                if s.resize(rows, cols) {
                    self.effects.push(Effect::ShellResize(id, rows, cols));
                }
            }
        }
        self.dirty = true;
    }

    /// Terminal resized.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.size = Rect::new(0, 0, width, height);
        self.sync_sizes();
    }

    fn focused_pane(&mut self) -> Option<&mut Pane> {
        match self.focus {
            Focus::Pane(id) => self.panes.get_mut(&id),
            Focus::List => None,
        }
    }

    fn open_log(&mut self, row: &ExecRow) {
        if let Some(id) = self.panes.values().find_map(|p| {
            (matches!(p.kind, PaneKind::Log(_)) && p.exec_id.as_deref() == Some(&row.exec.id))
                .then_some(p.id)
        }) {
            self.focus = Focus::Pane(id);
            return;
        }
        let mut pane = LogPane::new(self.scrollback);
        pane.notice = if self.ssh_state(row) == SshState::Gone {
            Some(ended_notice(&row.exec, row.linger))
        } else {
            row.endpoint.as_ref().map(ready_notice)
        };
        self.add_pane(Some(row), PaneKind::Log(pane));
        self.effects.push(Effect::FollowLog(row.exec.id.clone()));
    }

    fn require_ssh(&mut self) -> Option<ExecRow> {
        let Some(row) = self.context().cloned() else {
            self.error("no execution selected");
            return None;
        };
        if self.ssh_state(&row) == SshState::Gone {
            self.error(gone_text(&row));
            return None;
        }
        if row.endpoint.is_none() {
            self.error(format!(
                "{} has not announced an SSH address yet; its log says when it does",
                row.label()
            ));
            return None;
        }
        Some(row)
    }

    fn open_shell(&mut self) {
        let Some(row) = self.require_ssh() else {
            return;
        };
        let id = self.add_pane(
            Some(&row),
            PaneKind::Shell(Box::new(ShellPane::new(24, 80))),
        );
        // add_pane sized the screen; tell the runtime the real size.
        let (rows, cols) = match self.panes.get(&id).map(|p| &p.kind) {
            Some(PaneKind::Shell(s)) => s.parser.screen().size(),
            _ => (24, 80),
        };
        self.effects
            .retain(|e| !matches!(e, Effect::ShellResize(p, _, _) if *p == id));
        self.effects.push(Effect::OpenShell {
            pane: id,
            exec_id: row.exec.id.clone(),
            rows,
            cols,
        });
        self.interacting = true;
        self.info("interaction mode: keys go to the shell; Ctrl-] returns to the console");
    }

    fn open_tunnels(&mut self) {
        if let Some(id) = self
            .panes
            .values()
            .find_map(|p| matches!(p.kind, PaneKind::Tunnels { .. }).then_some(p.id))
        {
            self.focus = Focus::Pane(id);
        } else {
            self.add_pane(None, PaneKind::Tunnels { selected: 0 });
        }
    }

    fn start_tunnel(&mut self, exec_id: String, text: &str) {
        let spec: TunnelSpec = match text.parse() {
            Ok(s) => s,
            Err(e) => {
                self.error(e);
                return;
            }
        };
        let Some(row) = self.row(&exec_id).cloned() else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        self.tunnels.push(TunnelRow {
            id,
            exec_label: row.label(),
            exec_id: exec_id.clone(),
            spec: spec.clone(),
            tunnel: None,
            state: TunnelState::Listening,
            last_error: None,
        });
        self.effects.push(Effect::OpenTunnel { id, exec_id, spec });
        self.info(format!(
            "opening tunnel {text} for {}; T lists tunnels",
            row.label()
        ));
    }

    fn run_command(&mut self, exec_id: String, command: String) {
        let Some(row) = self.row(&exec_id).cloned() else {
            return;
        };
        if !command.trim().is_empty() {
            self.history.retain(|h| h != &command);
            self.history.push(command.clone());
        }
        let id = self.add_pane(
            Some(&row),
            PaneKind::Command(CommandPane::new(command.clone())),
        );
        self.effects.push(Effect::RunCommand {
            pane: id,
            exec_id,
            command,
        });
    }

    fn ssh_command_line(&self, row: &ExecRow) -> Option<String> {
        let ep = row.endpoint.as_ref()?;
        let user = ep
            .user
            .as_deref()
            .unwrap_or(crate::ssh::target::DEFAULT_USER);
        Some(format!(
            "ssh -i {} -p {} {user}@{} -t /bin/bash",
            self.key_path, ep.port, ep.host
        ))
    }

    // ----- input -----

    /// Handles a key press.
    pub fn on_key(&mut self, key: KeyEvent) {
        self.dirty = true;
        // A message stays until the next key: then it has been read.
        self.status = None;
        if self.popup.is_some() {
            self.on_popup_key(key);
            return;
        }
        if self.interacting {
            if self.keymap.is_leave(&key) {
                self.interacting = false;
                self.info("left interaction mode; Enter or i goes back in");
                return;
            }
            if let Focus::Pane(id) = self.focus {
                if let Some(Pane {
                    kind: PaneKind::Shell(s),
                    ..
                }) = self.panes.get_mut(&id)
                {
                    if s.scrollback > 0 {
                        s.scroll(-(s.scrollback as isize));
                    }
                    let bytes = keys::encode(&key, s.parser.screen().application_cursor());
                    if !bytes.is_empty()
                        && matches!(s.state, ShellState::Live | ShellState::Connecting)
                    {
                        self.effects.push(Effect::ShellInput(id, bytes));
                    }
                    return;
                }
            }
            self.interacting = false;
        }
        let Some(action) = self.keymap.action(&key) else {
            return;
        };
        self.on_action(action);
    }

    fn on_action(&mut self, action: KeyAction) {
        let page = usize::from(self.size.height.saturating_sub(4)).max(1);
        match action {
            KeyAction::Up => self.scroll(1, true),
            KeyAction::Down => self.scroll(1, false),
            KeyAction::PageUp => self.scroll(page, true),
            KeyAction::PageDown => self.scroll(page, false),
            KeyAction::Open | KeyAction::Interact => match self.focus {
                Focus::List => {
                    if let Some(row) = self.context().cloned() {
                        self.open_log(&row);
                    }
                }
                Focus::Pane(id) => {
                    if matches!(
                        self.panes.get(&id).map(|p| &p.kind),
                        Some(PaneKind::Shell(_))
                    ) {
                        self.interacting = true;
                        self.info("interaction mode: Ctrl-] returns to the console");
                    }
                }
            },
            KeyAction::Shell => self.open_shell(),
            KeyAction::Command => {
                if let Some(row) = self.require_ssh() {
                    self.popup = Some(Popup::Prompt(Box::new(Prompt::new(
                        PromptKind::Command(row.exec.id),
                        DEFAULT_COMMAND,
                    ))));
                }
            }
            KeyAction::Tunnel => {
                if let Some(row) = self.require_ssh() {
                    self.effects.push(Effect::FetchPorts(row.exec.id.clone()));
                    self.popup = Some(Popup::Prompt(Box::new(Prompt::new(
                        PromptKind::Tunnel {
                            exec_id: row.exec.id,
                            ports: Vec::new(),
                        },
                        DEFAULT_TUNNEL,
                    ))));
                }
            }
            KeyAction::Tunnels => self.open_tunnels(),
            KeyAction::Linger => {
                if let Some(row) = self.require_ssh() {
                    self.popup = Some(Popup::Prompt(Box::new(Prompt::new(
                        PromptKind::Linger {
                            exec_id: row.exec.id.clone(),
                            label: row.label(),
                        },
                        DEFAULT_LINGER,
                    ))));
                }
            }
            KeyAction::Leave => {}
            KeyAction::FocusNext | KeyAction::FocusPrev => {
                let mut order: Vec<Focus> = vec![Focus::List];
                order.extend(self.tiling.order().into_iter().map(Focus::Pane));
                if let Some(z) = self.zoomed {
                    order = vec![Focus::List, Focus::Pane(z)];
                }
                let pos = order.iter().position(|f| *f == self.focus).unwrap_or(0);
                let n = order.len();
                let next = if action == KeyAction::FocusNext {
                    (pos + 1) % n
                } else {
                    (pos + n - 1) % n
                };
                self.focus = order[next];
            }
            KeyAction::FocusLeft
            | KeyAction::FocusRight
            | KeyAction::FocusUp
            | KeyAction::FocusDown => {
                let toward = match action {
                    KeyAction::FocusLeft => Toward::Left,
                    KeyAction::FocusRight => Toward::Right,
                    KeyAction::FocusUp => Toward::Up,
                    _ => Toward::Down,
                };
                match self.focus {
                    Focus::List => {
                        if toward == Toward::Right {
                            if let Some(first) = self.tiling.order().first() {
                                self.focus = Focus::Pane(*first);
                            }
                        }
                    }
                    Focus::Pane(id) => match neighbour(&self.pane_rects(), id, toward) {
                        Some(n) => self.focus = Focus::Pane(n),
                        None if toward == Toward::Left => self.focus = Focus::List,
                        None => {}
                    },
                }
            }
            KeyAction::SplitSide => {
                self.next_split = Split::Horizontal;
                self.info("the next pane opens side by side");
            }
            KeyAction::SplitStack => {
                self.next_split = Split::Vertical;
                self.info("the next pane opens below");
            }
            KeyAction::Zoom => {
                if let Focus::Pane(id) = self.focus {
                    self.zoomed = if self.zoomed == Some(id) {
                        None
                    } else {
                        Some(id)
                    };
                    self.sync_sizes();
                }
            }
            KeyAction::Close => self.close_focused(),
            KeyAction::Copy => match self.context().cloned() {
                Some(row) => match self.ssh_command_line(&row) {
                    Some(line) => {
                        self.effects.push(Effect::Copy(line.clone()));
                        self.info(format!("copied: {line}"));
                    }
                    None => self.error(format!("{} has no SSH address yet", row.label())),
                },
                None => self.error("no execution selected"),
            },
            KeyAction::Filter => match self.focus {
                Focus::Pane(id)
                    if matches!(
                        self.panes.get(&id).map(|p| &p.kind),
                        Some(PaneKind::Log(_) | PaneKind::Command(_))
                    ) =>
                {
                    self.popup = Some(Popup::Prompt(Box::new(Prompt::new(
                        PromptKind::Search(id),
                        "",
                    ))));
                }
                _ => {
                    let filter = self.filter.clone();
                    self.popup = Some(Popup::Prompt(Box::new(Prompt::new(
                        PromptKind::Filter,
                        &filter,
                    ))));
                }
            },
            KeyAction::Help => self.popup = Some(Popup::Help),
            KeyAction::Quit => {
                if self.has_sessions() {
                    self.popup = Some(Popup::ConfirmQuit);
                } else {
                    self.quit = true;
                }
            }
            KeyAction::Follow => match self.focused_pane().map(|p| &mut p.kind) {
                Some(PaneKind::Log(l)) => l.resume(),
                Some(PaneKind::Command(c)) => c.resume(),
                _ => {}
            },
            KeyAction::Rerun => {
                let Focus::Pane(id) = self.focus else { return };
                if let Some(Pane {
                    kind: PaneKind::Command(c),
                    exec_id: Some(exec_id),
                    ..
                }) = self.panes.get_mut(&id)
                {
                    if c.running() {
                        return;
                    }
                    c.restart();
                    let (exec_id, command) = (exec_id.clone(), c.command.clone());
                    self.effects.push(Effect::RunCommand {
                        pane: id,
                        exec_id,
                        command,
                    });
                }
            }
        }
    }

    fn close_focused(&mut self) {
        let Focus::Pane(id) = self.focus else { return };
        if let Some(Pane {
            kind: PaneKind::Tunnels { selected },
            ..
        }) = self.panes.get(&id)
        {
            if let Some(row) = self.tunnels.get(*selected).cloned() {
                self.tunnels.retain(|t| t.id != row.id);
                self.effects.push(Effect::StopTunnel(row.id));
                self.info(format!("stopped tunnel {}", row.spec_text()));
                return;
            }
        }
        self.close_pane(id);
    }

    fn scroll(&mut self, n: usize, up: bool) {
        match self.focus {
            Focus::List => {
                let len = self.visible().len();
                self.selected = if up {
                    self.selected.saturating_sub(n)
                } else {
                    (self.selected + n).min(len.saturating_sub(1))
                };
            }
            Focus::Pane(id) => {
                let tunnels = self.tunnels.len();
                let (width, height) = self.command_view(id);
                let Some(pane) = self.panes.get_mut(&id) else {
                    return;
                };
                match &mut pane.kind {
                    PaneKind::Log(l) => {
                        if up {
                            l.scroll_up(n);
                        } else {
                            l.scroll_down(n);
                        }
                    }
                    PaneKind::Shell(s) => s.scroll(if up { n as isize } else { -(n as isize) }),
                    PaneKind::Command(c) => {
                        // A page is the pane's own height here, not the
                        // screen's: wrapped rows make lines uneven.
                        let rows = if n > 1 { height } else { n };
                        let rows = isize::try_from(rows).unwrap_or(isize::MAX);
                        c.scroll(if up { -rows } else { rows }, width, height);
                    }
                    PaneKind::Tunnels { selected } => {
                        *selected = if up {
                            selected.saturating_sub(n)
                        } else {
                            (*selected + n).min(tunnels.saturating_sub(1))
                        };
                    }
                }
            }
        }
    }

    fn on_popup_key(&mut self, key: KeyEvent) {
        let Some(popup) = self.popup.take() else {
            return;
        };
        match popup {
            Popup::Help => {}
            Popup::ConfirmQuit => {
                if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                    self.quit = true;
                }
            }
            Popup::Ask(q) => {
                let yes = matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y'));
                // The asking task may have given up waiting: nothing to do then.
                let _ = q.reply.send(yes);
            }
            Popup::Prompt(mut prompt) => match key.code {
                KeyCode::Esc => {}
                KeyCode::Enter => self.submit(*prompt),
                KeyCode::F(n) if n >= 1 => {
                    if let PromptKind::Tunnel { exec_id, ports } = &prompt.kind {
                        if let Some(port) = ports.get(usize::from(n) - 1) {
                            let exec_id = exec_id.clone();
                            self.start_tunnel(exec_id, &port.to_string());
                            return;
                        }
                    }
                    self.popup = Some(Popup::Prompt(prompt));
                }
                KeyCode::Tab => {
                    if let PromptKind::Tunnel { ports, .. } = &prompt.kind {
                        if !ports.is_empty() {
                            let current = prompt.text();
                            let pos = ports.iter().position(|p| p.to_string() == current);
                            let next = pos.map_or(0, |i| (i + 1) % ports.len());
                            prompt.set_text(&ports[next].to_string());
                        }
                    }
                    self.popup = Some(Popup::Prompt(prompt));
                }
                KeyCode::Up | KeyCode::Down if matches!(prompt.kind, PromptKind::Command(_)) => {
                    if !self.history.is_empty() {
                        let len = self.history.len();
                        let pos = match (prompt.history_pos, key.code) {
                            (None, KeyCode::Up) => Some(len - 1),
                            (Some(p), KeyCode::Up) => Some(p.saturating_sub(1)),
                            (Some(p), KeyCode::Down) if p + 1 < len => Some(p + 1),
                            _ => None,
                        };
                        let text = pos
                            .map_or(DEFAULT_COMMAND, |p| self.history[p].as_str())
                            .to_string();
                        prompt.set_text(&text);
                        prompt.history_pos = pos;
                    }
                    self.popup = Some(Popup::Prompt(prompt));
                }
                _ => {
                    prompt.input.input(key);
                    if prompt.kind == PromptKind::Filter {
                        self.filter = prompt.text();
                        self.selected = 0;
                    }
                    self.popup = Some(Popup::Prompt(prompt));
                }
            },
        }
    }

    fn submit(&mut self, prompt: Prompt) {
        let text = prompt.text();
        match prompt.kind {
            PromptKind::Filter => {
                self.filter = text;
                self.selected = 0;
            }
            PromptKind::Search(id) => {
                let height = self
                    .pane_rects()
                    .iter()
                    .find(|(p, _)| *p == id)
                    .map_or(10, |(_, r)| usize::from(ui::inner_size(*r).0));
                let (width, rows) = self.command_view(id);
                match self.panes.get_mut(&id).map(|p| &mut p.kind) {
                    Some(kind) if text.is_empty() => {
                        // An empty search repeats the last one, as in less.
                        let last = match kind {
                            PaneKind::Log(l) => l.search.clone(),
                            PaneKind::Command(c) => c.search.clone(),
                            _ => None,
                        };
                        if let Some(last) = last {
                            self.submit(Prompt::new(PromptKind::Search(id), &last));
                        }
                    }
                    Some(PaneKind::Log(l)) => {
                        l.search = Some(text.clone());
                        if !l.find_previous(height) {
                            self.error(format!("`{text}` not found above"));
                        }
                    }
                    Some(PaneKind::Command(c)) => {
                        let found = c.find(&text, width, rows);
                        if !found {
                            self.error(format!("`{text}` not found in the output"));
                        }
                    }
                    _ => {}
                }
            }
            PromptKind::Command(exec_id) => self.run_command(exec_id, text),
            PromptKind::Tunnel { exec_id, .. } => self.start_tunnel(exec_id, text.trim()),
            PromptKind::Linger { exec_id, label } => match LingerRequest::parse(&text) {
                Ok(request) => {
                    self.info(format!("{label}: asking its agent to {}", text.trim()));
                    self.effects.push(Effect::Linger {
                        exec_id,
                        label,
                        request,
                    });
                }
                Err(e) => self.error(e),
            },
        }
    }

    /// Pasted text: to the shell when interacting, else to an open prompt.
    pub fn on_paste(&mut self, text: &str) {
        self.dirty = true;
        if let Some(Popup::Prompt(p)) = self.popup.as_mut() {
            p.input.insert_str(text.replace(['\n', '\r'], " "));
            return;
        }
        if !self.interacting {
            return;
        }
        if let Focus::Pane(id) = self.focus {
            if let Some(Pane {
                kind: PaneKind::Shell(s),
                ..
            }) = self.panes.get(&id)
            {
                let bytes = if s.parser.screen().bracketed_paste() {
                    format!("\x1b[200~{text}\x1b[201~").into_bytes()
                } else {
                    text.as_bytes().to_vec()
                };
                self.effects.push(Effect::ShellInput(id, bytes));
            }
        }
    }

    /// Mouse: a click focuses, the wheel scrolls what is under it.
    pub fn on_mouse(&mut self, event: MouseEvent) {
        let at = Position::new(event.column, event.row);
        let areas = ui::areas(self.size);
        let target = if areas.list.contains(at) {
            Some(Focus::List)
        } else {
            self.pane_rects()
                .into_iter()
                .find(|(_, r)| r.contains(at))
                .map(|(id, _)| Focus::Pane(id))
        };
        let Some(target) = target else { return };
        match event.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if target != self.focus {
                    self.interacting = false;
                }
                self.focus = target;
                if target == Focus::List {
                    // Row 0 is the border, row 1 the header.
                    let row = usize::from(event.row.saturating_sub(areas.list.y + 2));
                    if row < self.visible().len() {
                        self.selected = row;
                    }
                }
                self.dirty = true;
            }
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let previous = self.focus;
                self.focus = target;
                self.scroll(3, event.kind == MouseEventKind::ScrollUp);
                self.focus = previous;
                self.dirty = true;
            }
            _ => {}
        }
    }

    // ----- messages -----

    /// Applies a task's report.
    pub fn update(&mut self, msg: Msg) {
        let was_dirty = self.dirty;
        self.dirty = true;
        match msg {
            Msg::Executions(source, Ok(list)) => {
                // A poll that brings nothing new must not cost a redraw:
                // idle CPU stays near zero with many panes open.
                let mine: Vec<&ExecRow> = self
                    .executions
                    .iter()
                    .filter(|r| r.source == source)
                    .collect();
                let same = !self.source_errors.contains_key(&source)
                    && list.len() == mine.len()
                    && list.iter().zip(&mine).all(|(n, o)| {
                        n.id == o.exec.id && n.status == o.exec.status && n.title == o.exec.title
                    });
                if same {
                    self.dirty = was_dirty;
                    return;
                }
                self.source_errors.remove(&source);
                let selected_id = self.visible().get(self.selected).map(|r| r.exec.id.clone());
                let (old, others): (Vec<ExecRow>, Vec<ExecRow>) =
                    std::mem::take(&mut self.executions)
                        .into_iter()
                        .partition(|r| r.source == source);
                let mut fresh = Vec::with_capacity(list.len());
                for exec in list {
                    let previous = old.iter().find(|r| r.exec.id == exec.id);
                    let endpoint = previous.and_then(|r| r.endpoint.clone());
                    let linger = previous.and_then(|r| r.linger);
                    if previous.is_some_and(|r| !r.exec.status().is_finished())
                        && exec.status().is_finished()
                    {
                        self.execution_ended(&exec);
                    }
                    fresh.push(ExecRow {
                        source,
                        exec,
                        endpoint,
                        linger,
                    });
                }
                // Sources in their order, each newest first as it sent them.
                self.executions = others;
                self.executions.extend(fresh);
                self.executions.sort_by_key(|r| r.source);
                if let Some(id) = selected_id {
                    if let Some(pos) = self.visible().iter().position(|r| r.exec.id == id) {
                        self.selected = pos;
                    }
                }
                self.selected = self.selected.min(self.visible().len().saturating_sub(1));
            }
            Msg::Executions(source, Err(e)) => {
                self.source_errors.insert(source, e);
            }
            Msg::Endpoint { exec_id, endpoint } => {
                let notice = ready_notice(&endpoint);
                if let Some(row) = self.executions.iter_mut().find(|r| r.exec.id == exec_id) {
                    if row.endpoint.as_ref() == Some(&endpoint) {
                        return;
                    }
                    row.endpoint = Some(endpoint);
                }
                let ended = self
                    .row(&exec_id)
                    .is_some_and(|r| self.ssh_state(r) == SshState::Gone);
                if ended {
                    return;
                }
                for p in self.panes.values_mut() {
                    if let (PaneKind::Log(l), Some(id)) = (&mut p.kind, &p.exec_id) {
                        if *id == exec_id {
                            l.notice = Some(notice.clone());
                        }
                    }
                }
            }
            Msg::Log { exec_id, events } => {
                for p in self.panes.values_mut() {
                    if let (PaneKind::Log(l), Some(id)) = (&mut p.kind, &p.exec_id) {
                        if *id == exec_id {
                            l.push(&events);
                        }
                    }
                }
            }
            Msg::LogError { exec_id, error } => {
                for p in self.panes.values_mut() {
                    if let (PaneKind::Log(l), Some(id)) = (&mut p.kind, &p.exec_id) {
                        if *id == exec_id {
                            l.notice = Some(format!("cannot read the log: {error} (retrying)"));
                        }
                    }
                }
            }
            Msg::ShellConnected(id) => self.with_shell(id, |s| s.state = ShellState::Live),
            Msg::ShellOutput(id, bytes) => self.with_shell(id, |s| s.output(&bytes)),
            Msg::ShellEnded(id, code) => {
                self.with_shell(id, |s| {
                    s.state = ShellState::Ended(format!("shell exited with code {code}"))
                });
                if self.focus == Focus::Pane(id) {
                    self.interacting = false;
                }
            }
            Msg::ShellFailed(id, e) => {
                self.with_shell(id, |s| s.state = ShellState::Failed(e.clone()));
                if self.focus == Focus::Pane(id) {
                    self.interacting = false;
                }
                self.error(e);
            }
            Msg::CommandOutput(id, stream, bytes) => {
                self.with_command(id, |c| c.output(stream, &bytes))
            }
            Msg::CommandDone(id, code) => self.with_command(id, |c| c.done(code)),
            Msg::CommandFailed(id, e) => {
                self.with_command(id, |c| c.error = Some(e.clone()));
                self.error(e);
            }
            Msg::TunnelUp(id, tunnel) => {
                let local = tunnel.local;
                if let Some(t) = self.tunnels.iter_mut().find(|t| t.id == id) {
                    t.tunnel = Some(tunnel);
                    t.state = TunnelState::Up;
                    let text = format!("tunnel {} -> {} is up", local, t.spec_text());
                    self.info(text);
                }
            }
            Msg::Tunnel(id, event) => {
                if let Some(t) = self.tunnels.iter_mut().find(|t| t.id == id) {
                    match event {
                        TunnelEvent::State(s) => t.state = s,
                        TunnelEvent::ConnectionFailed { reason, .. } => t.last_error = Some(reason),
                    }
                }
            }
            Msg::TunnelFailed(id, e) => {
                if let Some(t) = self.tunnels.iter_mut().find(|t| t.id == id) {
                    t.state = TunnelState::Failed(e.clone());
                }
                self.error(e);
            }
            Msg::Ask(question) => {
                // A question waiting behind another popup answers "no" when
                // dropped; the help or a prompt can be reopened, so ask now.
                self.interacting = false;
                self.popup = Some(Popup::Ask(question));
            }
            Msg::Linger { exec_id, linger } => {
                let Some(row) = self.executions.iter_mut().find(|r| r.exec.id == exec_id) else {
                    return;
                };
                if row.linger == Some(linger) {
                    self.dirty = was_dirty;
                    return;
                }
                row.linger = Some(linger);
                if linger == Linger::Over {
                    if let Some(row) = self.row(&exec_id).cloned() {
                        self.agent_gone(&row);
                    }
                }
            }
            Msg::Said(Ok(text)) => self.info(text),
            Msg::Said(Err(text)) => self.error(text),
            Msg::AgentPorts { exec_id, ports } => {
                if let Some(Popup::Prompt(prompt)) = self.popup.as_mut() {
                    if let PromptKind::Tunnel {
                        exec_id: e,
                        ports: p,
                    } = &mut prompt.kind
                    {
                        if *e == exec_id {
                            *p = ports;
                        }
                    }
                }
            }
        }
    }

    fn execution_ended(&mut self, exec: &Execution) {
        let row = ExecRow {
            source: 0,
            exec: exec.clone(),
            endpoint: None,
            linger: None,
        };
        self.agent_gone(&row);
    }

    /// The execution has ended or its agent has stopped: its panes say so,
    /// and its tunnels stop rather than retry forever.
    fn agent_gone(&mut self, row: &ExecRow) {
        let exec = &row.exec;
        let note = ended_notice(exec, row.linger);
        for p in self.panes.values_mut() {
            if p.exec_id.as_deref() != Some(exec.id.as_str()) {
                continue;
            }
            match &mut p.kind {
                PaneKind::Log(l) => l.notice = Some(note.clone()),
                PaneKind::Shell(s)
                    if matches!(s.state, ShellState::Live | ShellState::Connecting) =>
                {
                    s.state = ShellState::Ended(note.clone());
                }
                _ => {}
            }
        }
        let why = gone_text(row);
        let mut stopped = Vec::new();
        for t in self.tunnels.iter_mut().filter(|t| t.exec_id == exec.id) {
            if matches!(t.state, TunnelState::Failed(_)) {
                continue;
            }
            t.state = TunnelState::Failed(why.clone());
            stopped.push(t.id);
        }
        for id in stopped {
            self.effects.push(Effect::StopTunnel(id));
        }
    }

    fn with_shell(&mut self, id: PaneId, f: impl FnOnce(&mut ShellPane)) {
        if let Some(Pane {
            kind: PaneKind::Shell(s),
            ..
        }) = self.panes.get_mut(&id)
        {
            f(s);
        }
    }

    fn with_command(&mut self, id: PaneId, f: impl FnOnce(&mut CommandPane)) {
        if let Some(Pane {
            kind: PaneKind::Command(c),
            ..
        }) = self.panes.get_mut(&id)
        {
            f(c);
        }
    }

    /// Counts output lines of a command pane per stream (tests).
    pub fn command_lines(&self, id: PaneId, stream: &Stream) -> usize {
        match self.panes.get(&id).map(|p| &p.kind) {
            Some(PaneKind::Command(c)) => c.lines.iter().filter(|l| &l.stream == stream).count(),
            _ => 0,
        }
    }
}

impl TunnelRow {
    /// `5678` / `8080:localhost:6006` as typed.
    pub fn spec_text(&self) -> String {
        format!("{}:{}", self.spec.remote_host, self.spec.remote_port)
    }
}

/// `execution #7 ended: error (exit code 2)`, or what the agent said.
fn ended_notice(exec: &Execution, linger: Option<Linger>) -> String {
    if !exec.status().is_finished() && linger.is_some() {
        return format!(
            "execution #{}: the command has ended and its SSH server has stopped (linger over)",
            exec.counter
        );
    }
    match exec.status_detail.as_deref().filter(|d| !d.is_empty()) {
        Some(detail) => format!(
            "execution #{} ended: {} ({detail})",
            exec.counter, exec.status
        ),
        None => format!("execution #{} ended: {}", exec.counter, exec.status),
    }
}

/// Why nothing can connect: `#3 is complete; its SSH server has gone`.
fn gone_text(row: &ExecRow) -> String {
    if row.exec.status().is_finished() {
        format!(
            "#{} is {}; its SSH server has gone",
            row.exec.counter, row.exec.status
        )
    } else {
        format!(
            "#{}: the command has ended and its SSH server has stopped (linger over)",
            row.exec.counter
        )
    }
}

fn ready_notice(ep: &Endpoint) -> String {
    format!(
        "SSH ready at {}:{} — s shell · c command · t tunnel · y copy ssh command",
        ep.host, ep.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_count_whole_units() {
        let d = |s: u64| short_duration(Duration::from_secs(s));
        assert_eq!(d(0), "0s");
        assert_eq!(d(59), "59s");
        assert_eq!(d(60), "1m");
        assert_eq!(d(3599), "59m");
        assert_eq!(d(3600), "60m");
        assert_eq!(d(7199), "119m");
        assert_eq!(d(7200), "2h");
        assert_eq!(d(172_799), "47h");
        assert_eq!(d(172_800), "2d");
        assert_eq!(d(3583 * 86_400), "3583d");
    }
}
