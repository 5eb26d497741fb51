//! A one-line prompt: the list filter, a pane search, a command, a
//! tunnel spec or a linger request.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style, Stylize};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;
use ratatui_textarea::TextArea;

use super::{centered, PopupAction};
use crate::tui::action::AgentPort;
use crate::tui::layout::PaneId;

/// The command prompt's prefill.
pub const DEFAULT_COMMAND: &str = "ps aux";
/// The tunnel prompt's prefill (debugpy's port) when that local port is
/// free.
pub const DEFAULT_TUNNEL: &str = "5678";
/// The same, as a number.
pub const DEFAULT_TUNNEL_PORT: u16 = 5678;
/// The linger prompt's prefill.
pub const DEFAULT_LINGER: &str = "extend 1h";

/// The prompt's width (less on a narrower screen).
const PROMPT_WIDTH: u16 = 72;
/// At most this many ports have an F-key.
const MAX_OFFERED: usize = 9;

/// `listening: F1 5678 python3  F2 6006 tensorboard · Tab cycles` in at
/// most `room` columns: process names go first (from the last port), then
/// ports, which `+N more` counts.
pub fn port_choices(ports: &[AgentPort], room: usize) -> String {
    let text = |shown: usize, named: usize| {
        let keys: Vec<String> = ports
            .iter()
            .take(shown)
            .enumerate()
            .map(|(i, p)| match (&p.process, i < named) {
                (Some(name), true) => format!("F{} {} {name}", i + 1, p.port),
                _ => format!("F{} {}", i + 1, p.port),
            })
            .collect();
        let more = match ports.len() - shown {
            0 => String::new(),
            n => format!("  +{n} more"),
        };
        format!("listening: {}{more} · Tab cycles", keys.join("  "))
    };
    let mut shown = ports.len().min(MAX_OFFERED);
    let mut named = shown;
    loop {
        let t = text(shown, named);
        if t.chars().count() <= room || shown <= 1 && named == 0 {
            return t;
        }
        if named > 0 {
            named -= 1;
        } else {
            shown -= 1;
        }
    }
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
        ports: Vec<AgentPort>,
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
    pub fn offer_ports(&mut self, exec: &str, offered: Vec<AgentPort>) {
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
                    if let Some(p) = ports.get(usize::from(n) - 1) {
                        return PopupAction::PickPort {
                            exec_id: exec_id.clone(),
                            port: p.port,
                        };
                    }
                }
                PopupAction::Stay
            }
            KeyCode::Tab => {
                if let PromptKind::Tunnel { ports, .. } = &self.kind {
                    if !ports.is_empty() {
                        let current = self.text();
                        let pos = ports.iter().position(|p| p.port.to_string() == current);
                        let next = pos.map_or(0, |i| (i + 1) % ports.len());
                        let text = ports[next].port.to_string();
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
                    // Inside the border of the prompt, as wide as it is drawn.
                    let room = usize::from(frame.area().width.min(PROMPT_WIDTH)).saturating_sub(2);
                    port_choices(ports, room)
                };
                (
                    // `L`: this machine to the execution; `-R` tunnels will
                    // say `R` here.
                    " new tunnel · L: here -> execution · Enter opens · Esc cancels ".to_string(),
                    Some(choices),
                )
            }
        };
        let height = if extra.is_some() { 4 } else { 3 };
        let area = centered(frame.area(), PROMPT_WIDTH, height);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn named(port: u16, name: &str) -> AgentPort {
        AgentPort {
            port,
            process: Some(name.into()),
        }
    }

    #[test]
    fn offered_ports_drop_names_then_ports_to_fit() {
        let ports = vec![named(5678, "python3"), named(6006, "tensorboard")];
        assert_eq!(
            port_choices(&ports, 70),
            "listening: F1 5678 python3  F2 6006 tensorboard · Tab cycles"
        );
        assert_eq!(
            port_choices(&ports, 50),
            "listening: F1 5678 python3  F2 6006 · Tab cycles"
        );
        let many: Vec<AgentPort> = (0..12).map(|i| named(8000 + i, "jupyter-lab")).collect();
        let text = port_choices(&many, 70);
        assert!(text.chars().count() <= 70, "{text}");
        assert!(text.contains("F1 8000"), "{text}");
        assert!(text.contains(" more · Tab cycles"), "{text}");
        assert!(!text.contains("jupyter"), "{text}");
    }
}
