//! An embedded terminal: a vt100 screen fed by the remote PTY.

use ratatui::layout::Rect;
use ratatui::style::{Color, Stylize};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{DrawCx, PaneAction, PaneCx, PaneView};
use crossterm::event::KeyEvent;

use crate::tui::hints::Hint;
use crate::tui::keys::{self, KeyAction};

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellState {
    /// Connecting.
    Connecting,
    /// Live.
    Live,
    /// The remote shell ended.
    Ended(String),
    /// Could not connect, or the connection broke.
    Failed(String),
}

/// A shell pane's state.
pub struct ShellPane {
    /// The terminal emulator (boxed: its screen is large, and panes of
    /// every kind sit in one enum).
    pub parser: Box<tui_term::vt100::Parser>,
    /// Session state.
    pub state: ShellState,
    /// Rows scrolled back into history.
    pub scrollback: usize,
    /// Bytes received (for titles and tests).
    pub received: u64,
}

/// History kept per shell pane.
pub const SHELL_SCROLLBACK: usize = 5_000;

impl ShellPane {
    /// A pane with a screen of `rows` x `cols`.
    pub fn new(rows: u16, cols: u16) -> Self {
        ShellPane {
            parser: Box::new(tui_term::vt100::Parser::new(
                rows.max(1),
                cols.max(1),
                SHELL_SCROLLBACK,
            )),
            state: ShellState::Connecting,
            scrollback: 0,
            received: 0,
        }
    }

    /// Feeds remote output.
    pub fn output(&mut self, bytes: &[u8]) {
        self.parser.process(bytes);
        self.received += bytes.len() as u64;
        if self.scrollback > 0 {
            // Stay where the user scrolled to.
            self.parser.screen_mut().set_scrollback(self.scrollback);
        }
    }

    /// Resizes the screen; returns whether the size changed.
    pub fn resize(&mut self, rows: u16, cols: u16) -> bool {
        let (r, c) = self.parser.screen().size();
        if (r, c) == (rows, cols) || rows == 0 || cols == 0 {
            return false;
        }
        self.parser.screen_mut().set_size(rows, cols);
        true
    }

    /// Scrolls through history (positive = back).
    pub fn scroll(&mut self, delta: isize) {
        let next = if delta >= 0 {
            self.scrollback.saturating_add(delta.unsigned_abs())
        } else {
            self.scrollback.saturating_sub(delta.unsigned_abs())
        };
        self.parser.screen_mut().set_scrollback(next);
        // vt100 clamps to the history it has.
        self.scrollback = self.parser.screen().scrollback();
    }

    /// A key typed while interacting: the view returns to the live screen;
    /// the bytes to send, none when there is nothing to send them to.
    pub fn key_input(&mut self, key: &KeyEvent) -> Option<Vec<u8>> {
        if self.scrollback > 0 {
            self.scroll(-(self.scrollback as isize));
        }
        let bytes = keys::encode(key, self.parser.screen().application_cursor());
        (!bytes.is_empty() && self.holds_session()).then_some(bytes)
    }

    /// Pasted text as the remote program reads it: bracketed when it asked
    /// for bracketed paste.
    pub fn paste_input(&self, text: &str) -> Vec<u8> {
        if self.parser.screen().bracketed_paste() {
            format!("\x1b[200~{text}\x1b[201~").into_bytes()
        } else {
            text.as_bytes().to_vec()
        }
    }

    /// The screen's text (for tests and copy).
    pub fn text(&self) -> String {
        self.parser.screen().contents()
    }
}

impl PaneView for ShellPane {
    fn name(&self) -> &'static str {
        "shell"
    }

    fn hints(&self) -> Vec<Hint> {
        vec![
            Hint::new(&[KeyAction::Open, KeyAction::Interact], "interact", 9),
            Hint::new(&[KeyAction::Down, KeyAction::Up], "history", 5),
            Hint::new(&[KeyAction::Zoom], "zoom", 4),
            Hint::new(&[KeyAction::Close], "close", 8),
            Hint::new(&[KeyAction::FocusNext], "focus", 3),
        ]
    }

    fn scroll(&mut self, n: usize, up: bool, _cx: &PaneCx) {
        ShellPane::scroll(self, if up { n as isize } else { -(n as isize) });
    }

    fn on_action(&mut self, action: KeyAction, _cx: &PaneCx) -> PaneAction {
        match action {
            KeyAction::Open | KeyAction::Interact => PaneAction::Interact,
            _ => PaneAction::Ignored,
        }
    }

    fn owns_session(&self) -> bool {
        true
    }

    fn holds_session(&self) -> bool {
        matches!(self.state, ShellState::Live | ShellState::Connecting)
    }

    fn connected(&self) -> bool {
        self.state == ShellState::Live
    }

    fn resize(&mut self, rows: u16, cols: u16) -> bool {
        ShellPane::resize(self, rows, cols)
    }

    fn execution_gone(&mut self, note: &str) {
        if self.holds_session() {
            self.state = ShellState::Ended(note.to_string());
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, inner: Rect, cx: &DrawCx<'_>) {
        let s = self;
        match &s.state {
            ShellState::Connecting if s.received == 0 => {
                frame.render_widget(Paragraph::new("connecting…").fg(Color::DarkGray), inner);
                return;
            }
            ShellState::Failed(e) if s.received == 0 => {
                frame.render_widget(
                    Paragraph::new(format!("cannot open a shell:\n{e}"))
                        .fg(Color::Red)
                        .wrap(Wrap { trim: true }),
                    inner,
                );
                return;
            }
            _ => {}
        }
        let mut term = tui_term::widget::PseudoTerminal::new(s.parser.screen());
        if !cx.interacting {
            term = term.cursor(tui_term::widget::Cursor::default().visibility(false));
        }
        frame.render_widget(term, inner);
        let banner = match &s.state {
            ShellState::Ended(m) => Some((m.clone(), Color::Yellow)),
            ShellState::Failed(e) => Some((e.clone(), Color::Red)),
            _ if s.scrollback > 0 => {
                Some((format!("history: {} rows up", s.scrollback), Color::Yellow))
            }
            _ => None,
        };
        if let Some((text, color)) = banner {
            let row = Rect::new(
                inner.x,
                inner.y + inner.height.saturating_sub(1),
                inner.width,
                1,
            );
            frame.render_widget(Paragraph::new(text).fg(Color::Black).bg(color), row);
        }
    }
}
