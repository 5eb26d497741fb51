//! Overlays above everything: each owns its state, handles its keys and
//! draws itself; what a key asks of the rest of the console comes back as
//! a [`PopupAction`] for the app to carry out.

pub mod ask;
pub mod confirm;
pub mod help;
pub mod prompt;

use crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;

pub use prompt::{Prompt, PromptKind};

use super::action::Question;
use super::hints::{Hint, KEEP};
use super::keys::Keymap;

/// An overlay above everything.
pub enum Popup {
    /// The key help.
    Help,
    /// A prompt.
    Prompt(Box<Prompt>),
    /// "Sessions are open, quit anyway?"
    ConfirmQuit,
    /// A task's question (trust this host key?).
    Ask(Question),
}

/// What a key in a popup asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopupAction {
    /// The popup stays open.
    Stay,
    /// The popup closes; nothing else to do.
    Close,
    /// The popup closes and the console quits.
    Quit,
    /// The prompt was submitted: the app acts on its text.
    Submit,
    /// A listening port was picked in the tunnel prompt: open a tunnel to
    /// it (the popup closes).
    PickPort {
        /// The execution.
        exec_id: String,
        /// The remote port.
        port: u16,
    },
    /// The filter prompt's text changed (the popup stays).
    Filter(String),
}

impl Popup {
    /// A prompt for `kind`, its text `prefill`ed.
    pub fn prompt(kind: PromptKind, prefill: &str) -> Self {
        Popup::Prompt(Box::new(Prompt::new(kind, prefill)))
    }

    /// Handles a key; `history` is the commands run before, for the
    /// command prompt.
    pub fn on_key(&mut self, key: KeyEvent, history: &[String]) -> PopupAction {
        match self {
            // Any key closes the help.
            Popup::Help => PopupAction::Close,
            Popup::ConfirmQuit => confirm::on_key(&key),
            Popup::Ask(q) => ask::on_key(q, &key),
            Popup::Prompt(p) => p.on_key(key, history),
        }
    }

    /// The key bar while it is open: its own keys (the console's keys do
    /// not apply).
    pub fn hints(&self) -> Vec<Hint> {
        let cancel = Hint::fixed("Esc", "cancel", KEEP);
        match self {
            Popup::Help => vec![Hint::fixed("any key", "closes the help", KEEP)],
            Popup::ConfirmQuit => vec![
                Hint::fixed("y", "quit", KEEP),
                Hint::fixed("any other key", "stay", KEEP),
            ],
            Popup::Ask(_) => vec![
                Hint::fixed("y", "yes", KEEP),
                Hint::fixed("any other key", "no", KEEP),
            ],
            Popup::Prompt(p) => match &p.kind {
                PromptKind::Filter => vec![
                    Hint::fixed("type", "to filter", 5),
                    Hint::fixed("Enter", "apply", KEEP),
                    Hint::fixed("Esc", "cancel", KEEP),
                ],
                PromptKind::Search(_) => vec![
                    Hint::fixed("Enter", "search upwards (empty: again)", KEEP),
                    cancel,
                ],
                PromptKind::Command(_) => vec![
                    Hint::fixed("Enter", "run", KEEP),
                    Hint::fixed("↑/↓", "history", 5),
                    cancel,
                ],
                PromptKind::Tunnel { .. } => vec![
                    Hint::fixed("Enter", "open", KEEP),
                    Hint::fixed("F1..", "pick a listening port", 5),
                    Hint::fixed("Tab", "cycle ports", 4),
                    cancel,
                ],
                PromptKind::Linger { .. } => {
                    vec![Hint::fixed("Enter", "send", KEEP), cancel]
                }
            },
        }
    }

    /// Draws the popup; `open` counts the shells and tunnels open (for the
    /// quit confirmation); `keymap` names the keys in the help.
    pub fn draw(&self, frame: &mut Frame<'_>, open: (usize, usize), keymap: &Keymap) {
        match self {
            Popup::Help => help::draw(frame, keymap),
            Popup::Prompt(p) => p.draw(frame),
            Popup::ConfirmQuit => confirm::draw(frame, open.0, open.1),
            Popup::Ask(q) => ask::draw(frame, &q.text),
        }
    }
}

/// A `width` x `height` rectangle in the middle of `area` (clipped to it).
pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
