//! An execution's live log: bounded scrollback, follow mode, search.

use std::collections::VecDeque;

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{DrawCx, PaneAction, PaneCx, PaneView};
use crate::source::LogEvent;
use crate::tui::hints::{keys_then, Hint};
use crate::tui::keys::KeyAction;
use crate::tui::widgets::{highlight, stream_style};

/// A log pane's state.
pub struct LogPane {
    /// Lines kept (oldest dropped past `capacity`).
    pub lines: VecDeque<LogEvent>,
    /// Scrollback bound.
    pub capacity: usize,
    /// Lines dropped so far because of the bound.
    pub dropped: u64,
    /// Auto-scroll to the newest line.
    pub follow: bool,
    /// Lines scrolled up from the bottom while not following.
    pub offset: usize,
    /// Highlighted search term.
    pub search: Option<String>,
    /// A notice shown above the log (SSH ready, execution ended, errors).
    pub notice: Option<String>,
}

impl LogPane {
    /// An empty log keeping at most `capacity` lines.
    pub fn new(capacity: usize) -> Self {
        LogPane {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
            follow: true,
            offset: 0,
            search: None,
            notice: None,
        }
    }

    /// Appends events (a message with newlines becomes several lines). A
    /// marker of lost lines also becomes the pane's notice, so that it is
    /// seen even when it has scrolled by.
    pub fn push(&mut self, events: &[LogEvent]) {
        for e in events {
            if e.is_gap_marker() {
                self.notice = Some(e.message.clone());
            }
            for line in e.message.split('\n') {
                if self.lines.len() == self.capacity {
                    self.lines.pop_front();
                    self.dropped += 1;
                }
                self.lines.push_back(LogEvent {
                    time: e.time.clone(),
                    stream: e.stream.clone(),
                    message: line.trim_end_matches('\r').to_string(),
                });
                if !self.follow {
                    // Keep the view still while new lines arrive below it.
                    self.offset += 1;
                }
            }
        }
        self.offset = self.offset.min(self.lines.len());
    }

    /// Scrolls up (leaving follow mode).
    pub fn scroll_up(&mut self, n: usize) {
        self.follow = false;
        self.offset = (self.offset + n).min(self.lines.len().saturating_sub(1));
    }

    /// Scrolls down; reaching the bottom resumes following.
    pub fn scroll_down(&mut self, n: usize) {
        self.offset = self.offset.saturating_sub(n);
        if self.offset == 0 {
            self.follow = true;
        }
    }

    /// Resumes following (`End` / `F`).
    pub fn resume(&mut self) {
        self.follow = true;
        self.offset = 0;
    }

    /// Jumps to the previous line matching the search, scrolling up.
    pub fn find_previous(&mut self, height: usize) -> bool {
        let Some(term) = self.search.clone().filter(|t| !t.is_empty()) else {
            return false;
        };
        let len = self.lines.len();
        // The bottom visible line is index len - 1 - offset.
        let start = len.saturating_sub(self.offset + height.max(1) + 1);
        let hit = (0..=start.min(len.saturating_sub(1)))
            .rev()
            .find(|&i| self.lines[i].message.contains(&term));
        match hit {
            Some(i) => {
                self.follow = false;
                self.offset = len.saturating_sub(i + 1);
                true
            }
            None => false,
        }
    }

    /// The lines visible in a view of `height` rows, oldest first.
    pub fn visible(&self, height: usize) -> impl Iterator<Item = &LogEvent> {
        // Scrolled to the top, the view still fills the pane.
        let end = self
            .lines
            .len()
            .saturating_sub(self.offset)
            .max(height.min(self.lines.len()));
        let start = end.saturating_sub(height);
        self.lines.range(start..end)
    }
}

impl PaneView for LogPane {
    fn name(&self) -> &'static str {
        "log"
    }

    fn hints(&self) -> Vec<Hint> {
        vec![
            Hint::new(&[KeyAction::Down, KeyAction::Up], "scroll", 4),
            Hint::new(&[KeyAction::Follow], "follow", 6),
            Hint::new(&[KeyAction::Filter], "search", 5),
            Hint::new(&[KeyAction::Shell], "shell", 8),
            Hint::new(&[KeyAction::Command], "command", 7),
            Hint::new(&[KeyAction::Zoom], "zoom", 3),
            Hint::new(&[KeyAction::Close], "close", 9),
            Hint::new(&[KeyAction::FocusNext], "focus", 2),
        ]
    }

    fn scroll(&mut self, n: usize, up: bool, _cx: &PaneCx) {
        if up {
            self.scroll_up(n);
        } else {
            self.scroll_down(n);
        }
    }

    fn on_action(&mut self, action: KeyAction, _cx: &PaneCx) -> PaneAction {
        match action {
            KeyAction::Follow => {
                self.resume();
                PaneAction::Done
            }
            _ => PaneAction::Ignored,
        }
    }

    fn searchable(&self) -> bool {
        true
    }

    fn last_search(&self) -> Option<String> {
        self.search.clone()
    }

    fn search(&mut self, term: &str, cx: &PaneCx) -> Result<(), String> {
        let height = cx.inner.map_or(10, |(rows, _)| usize::from(rows));
        self.search = Some(term.to_string());
        if self.find_previous(height) {
            Ok(())
        } else {
            Err(format!("`{term}` not found above"))
        }
    }

    fn execution_gone(&mut self, note: &str) {
        self.notice = Some(note.to_string());
    }

    fn draw(&self, frame: &mut Frame<'_>, inner: Rect, cx: &DrawCx<'_>) {
        let l = self;
        let mut lines: Vec<Line> = Vec::new();
        let mut height = usize::from(inner.height);
        if let Some(n) = &l.notice {
            lines.push(Line::from(Span::styled(
                n.clone(),
                Style::new().fg(Color::Black).bg(Color::Green),
            )));
            height = height.saturating_sub(1);
        }
        for e in l.visible(height) {
            let style = stream_style(&e.stream);
            let text = crate::source::scanner::strip_ansi(&e.message);
            match l
                .search
                .as_deref()
                .filter(|s| !s.is_empty() && text.contains(*s))
            {
                Some(term) => lines.push(highlight(&text, term, style)),
                None => lines.push(Line::from(Span::styled(text, style))),
            }
        }
        if !l.follow {
            lines.push(Line::from(Span::styled(
                match keys_then(cx.keymap, KeyAction::Follow, "follows") {
                    Some(follow) => format!("-- scrolled up {} lines; {follow} --", l.offset),
                    None => format!("-- scrolled up {} lines --", l.offset),
                },
                Style::new().fg(Color::Yellow),
            )));
        }
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Stream;

    fn ev(m: &str) -> LogEvent {
        LogEvent {
            time: String::new(),
            stream: Stream::Stdout,
            message: m.into(),
        }
    }

    #[test]
    fn scrollback_is_bounded_and_scrolling_holds_the_view() {
        let mut p = LogPane::new(3);
        p.push(&[ev("a"), ev("b"), ev("c"), ev("d")]);
        assert_eq!(p.lines.len(), 3);
        assert_eq!(p.dropped, 1);
        p.scroll_up(1);
        assert!(!p.follow);
        let before: Vec<_> = p.visible(1).map(|l| l.message.clone()).collect();
        p.push(&[ev("e")]);
        let after: Vec<_> = p.visible(1).map(|l| l.message.clone()).collect();
        assert_eq!(before, after, "new lines must not move a scrolled view");
        p.scroll_down(10);
        assert!(p.follow);
        assert_eq!(p.visible(1).next().map(|l| l.message.as_str()), Some("e"));
    }

    #[test]
    fn a_gap_marker_becomes_the_notice() {
        let mut p = LogPane::new(10);
        p.push(&[
            ev("a"),
            LogEvent {
                time: String::new(),
                stream: Stream::Status,
                message: format!(
                    "{}5 log lines lost here: No space left on device",
                    crate::source::model::GAP_PREFIX
                ),
            },
        ]);
        let notice = p.notice.clone().expect("a notice");
        assert!(notice.contains("5 log lines lost here"), "{notice}");
        assert_eq!(p.lines.len(), 2);
    }

    #[test]
    fn search_jumps_to_matches() {
        let mut p = LogPane::new(100);
        p.push(
            &(0..50)
                .map(|i| ev(&format!("line {i}")))
                .collect::<Vec<_>>(),
        );
        p.search = Some("line 7".into());
        assert!(p.find_previous(10));
        assert_eq!(
            p.visible(1).next().map(|l| l.message.as_str()),
            Some("line 7")
        );
    }
}
