//! A one-line prompt: the list filter, a pane search, a command, a
//! tunnel spec or a linger request.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style, Stylize};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;
use ratatui_textarea::TextArea;

use super::{centered, PopupAction};
use crate::tui::layout::PaneId;

/// The command prompt's prefill.
pub const DEFAULT_COMMAND: &str = "ps aux";
/// The tunnel prompt's prefill (debugpy's port).
pub const DEFAULT_TUNNEL: &str = "5678";
/// The linger prompt's prefill.
pub const DEFAULT_LINGER: &str = "extend 1h";

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
    /// A prompt for `kind`, its text `prefill`ed, the cursor at its end.
    pub fn new(kind: PromptKind, prefill: &str) -> Self {
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

    /// Puts pasted text at the cursor (newlines become spaces: one line).
    pub fn paste(&mut self, text: &str) {
        self.input.insert_str(text.replace(['\n', '\r'], " "));
    }

    /// The agent's listening ports arrived: offered when this is the
    /// tunnel prompt of that execution.
    pub fn offer_ports(&mut self, exec: &str, offered: Vec<u16>) {
        if let PromptKind::Tunnel { exec_id, ports } = &mut self.kind {
            if exec_id == exec {
                *ports = offered;
            }
        }
    }

    /// Handles a key: editing, history (command prompt), one-key ports and
    /// `Tab` cycling (tunnel prompt), `Enter` and `Esc`.
    pub fn on_key(&mut self, key: KeyEvent, history: &[String]) -> PopupAction {
        match key.code {
            KeyCode::Esc => PopupAction::Close,
            KeyCode::Enter => PopupAction::Submit,
            KeyCode::F(n) if n >= 1 => {
                if let PromptKind::Tunnel { exec_id, ports } = &self.kind {
                    if let Some(port) = ports.get(usize::from(n) - 1) {
                        return PopupAction::PickPort {
                            exec_id: exec_id.clone(),
                            port: *port,
                        };
                    }
                }
                PopupAction::Stay
            }
            KeyCode::Tab => {
                if let PromptKind::Tunnel { ports, .. } = &self.kind {
                    if !ports.is_empty() {
                        let current = self.text();
                        let pos = ports.iter().position(|p| p.to_string() == current);
                        let next = pos.map_or(0, |i| (i + 1) % ports.len());
                        let text = ports[next].to_string();
                        self.set_text(&text);
                    }
                }
                PopupAction::Stay
            }
            KeyCode::Up | KeyCode::Down if matches!(self.kind, PromptKind::Command(_)) => {
                if !history.is_empty() {
                    let len = history.len();
                    let pos = match (self.history_pos, key.code) {
                        (None, KeyCode::Up) => Some(len - 1),
                        (Some(p), KeyCode::Up) => Some(p.saturating_sub(1)),
                        (Some(p), KeyCode::Down) if p + 1 < len => Some(p + 1),
                        _ => None,
                    };
                    let text = pos
                        .and_then(|p| history.get(p))
                        .map_or(DEFAULT_COMMAND, String::as_str)
                        .to_string();
                    self.set_text(&text);
                    self.history_pos = pos;
                }
                PopupAction::Stay
            }
            _ => {
                self.input.input(key);
                if self.kind == PromptKind::Filter {
                    PopupAction::Filter(self.text())
                } else {
                    PopupAction::Stay
                }
            }
        }
    }

    /// Draws the prompt in the middle of the screen, with what it takes.
    pub fn draw(&self, frame: &mut Frame<'_>) {
        let prompt = self;
        let (title, extra) = match &prompt.kind {
            PromptKind::Filter => (" filter executions ".to_string(), None),
            PromptKind::Search(_) => (" search upwards (empty: again) ".to_string(), None),
            PromptKind::Command(_) => (
                " run a command · ↑/↓ history · Enter runs · Esc cancels ".to_string(),
                None,
            ),
            PromptKind::Linger { label, .. } => (
                format!(" linger of {label} · Enter sends · Esc cancels "),
                Some(
                    "extend DURATION (1h, 30m: from now, or from the command's end) | release"
                        .to_string(),
                ),
            ),
            PromptKind::Tunnel { ports, .. } => {
                let choices = if ports.is_empty() {
                    "spec: REMOTE | LOCAL:REMOTE | LOCAL:HOST:REMOTE | :REMOTE".to_string()
                } else {
                    let keys: Vec<String> = ports
                        .iter()
                        .take(9)
                        .enumerate()
                        .map(|(i, p)| format!("F{} {p}", i + 1))
                        .collect();
                    format!("listening: {} · Tab cycles", keys.join("  "))
                };
                (
                    " new tunnel · Enter opens · Esc cancels ".to_string(),
                    Some(choices),
                )
            }
        };
        let height = if extra.is_some() { 4 } else { 3 };
        let area = centered(frame.area(), 72, height);
        frame.render_widget(Clear, area);
        let block = Block::bordered()
            .border_style(Style::new().fg(Color::Yellow))
            .title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let [input, rest] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        frame.render_widget(&prompt.input, input);
        if let Some(text) = extra {
            frame.render_widget(Paragraph::new(text).fg(Color::DarkGray), rest);
        }
    }
}
