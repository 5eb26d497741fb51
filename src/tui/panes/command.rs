//! A one-off command's output, exit code and elapsed time.

use std::time::{Duration, Instant};

use crate::source::Stream;

/// A command pane's state.
pub struct CommandPane {
    /// The command line.
    pub command: String,
    /// Output lines with their stream.
    pub lines: Vec<(Stream, String)>,
    partial: [String; 2],
    /// When the current run started.
    pub started: Instant,
    /// How long it took, once done.
    pub elapsed: Option<Duration>,
    /// The exit code, once done.
    pub exit: Option<i32>,
    /// Why it could not run.
    pub error: Option<String>,
    /// Lines scrolled up from the bottom.
    pub offset: usize,
}

/// Most output lines kept per run.
const MAX_LINES: usize = 20_000;

impl CommandPane {
    /// A pane for `command`, about to run.
    pub fn new(command: String) -> Self {
        CommandPane {
            command,
            lines: Vec::new(),
            partial: [String::new(), String::new()],
            started: Instant::now(),
            elapsed: None,
            exit: None,
            error: None,
            offset: 0,
        }
    }

    /// Clears the output for a re-run.
    pub fn restart(&mut self) {
        *self = CommandPane::new(std::mem::take(&mut self.command));
    }

    /// Whether it is still running.
    pub fn running(&self) -> bool {
        self.exit.is_none() && self.error.is_none()
    }

    /// Adds output of one stream, split into lines.
    pub fn output(&mut self, stream: Stream, bytes: &[u8]) {
        let slot = usize::from(stream == Stream::Stderr);
        self.partial[slot].push_str(&String::from_utf8_lossy(bytes));
        while let Some(pos) = self.partial[slot].find('\n') {
            let line: String = self.partial[slot].drain(..=pos).collect();
            self.lines.push((
                stream.clone(),
                line.trim_end_matches(['\n', '\r']).to_string(),
            ));
        }
        if self.lines.len() > MAX_LINES {
            let extra = self.lines.len() - MAX_LINES;
            self.lines.drain(..extra);
        }
    }

    /// Records the end.
    pub fn done(&mut self, exit: i32) {
        for (slot, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            if !self.partial[slot].is_empty() {
                let rest = std::mem::take(&mut self.partial[slot]);
                self.lines.push((stream, rest));
            }
        }
        self.exit = Some(exit);
        self.elapsed = Some(self.started.elapsed());
    }
}
