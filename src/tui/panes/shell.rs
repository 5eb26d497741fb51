//! An embedded terminal: a vt100 screen fed by the remote PTY.

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
    /// The terminal emulator.
    pub parser: tui_term::vt100::Parser,
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
            parser: tui_term::vt100::Parser::new(rows.max(1), cols.max(1), SHELL_SCROLLBACK),
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

    /// The screen's text (for tests and copy).
    pub fn text(&self) -> String {
        self.parser.screen().contents()
    }
}
