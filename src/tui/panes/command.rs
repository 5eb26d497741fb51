//! A one-off command's output, exit code and elapsed time.
//!
//! Long lines wrap as in a terminal (`ps aux` puts the part worth reading
//! at the end of the line), so scrolling and search count display rows,
//! not lines: a page up then moves exactly one screen and never skips a
//! line that wrapped.

use std::time::{Duration, Instant};

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{DrawCx, PaneAction, PaneCx, PaneView};
use crate::source::Stream;
use crate::tui::hints::{keys_then, Hint};
use crate::tui::keys::KeyAction;
use crate::tui::widgets::{highlight, stream_style};

/// One line of output, with its colours stripped.
pub struct OutLine {
    /// Which stream it came from.
    pub stream: Stream,
    /// The text, without escape sequences.
    pub text: String,
    chars: usize,
}

impl OutLine {
    /// Display rows the line takes in a view `width` columns wide.
    fn rows(&self, width: usize) -> usize {
        self.chars.div_ceil(width.max(1)).max(1)
    }
}

/// A command pane's state.
pub struct CommandPane {
    /// The command line.
    pub command: String,
    /// Output lines.
    pub lines: Vec<OutLine>,
    partial: [String; 2],
    /// When the current run started.
    pub started: Instant,
    /// How long it took, once done.
    pub elapsed: Option<Duration>,
    /// The exit code, once done.
    pub exit: Option<i32>,
    /// Why it could not run.
    pub error: Option<String>,
    /// Where a scrolled view starts: a line, and a row within it. `None`
    /// keeps the newest output in view. Anchored to a line, a scrolled view
    /// stays still while output keeps arriving below it, and shows the
    /// same output when the pane's width changes (zoom, split, resize).
    pub top: Option<Anchor>,
    /// Highlighted search term.
    pub search: Option<String>,
}

/// The first row of a scrolled view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Index into `lines`.
    pub line: usize,
    /// The row within that line (its rows depend on the width).
    pub row: usize,
}

/// Most output lines kept per run.
const MAX_LINES: usize = 20_000;

/// A row of the view: the line it belongs to and its text.
pub struct Row<'a> {
    /// Index into `lines`.
    pub line: usize,
    /// The row's part of the line.
    pub text: &'a str,
}

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
            top: None,
            search: None,
        }
    }

    /// Clears the output for a re-run (the search term stays).
    pub fn restart(&mut self) {
        let search = self.search.take();
        *self = CommandPane::new(std::mem::take(&mut self.command));
        self.search = search;
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
            self.push_line(stream.clone(), &line);
        }
        if self.lines.len() > MAX_LINES {
            let extra = self.lines.len() - MAX_LINES;
            self.lines.drain(..extra);
            // The view's rows moved up with the dropped lines; stay near
            // where the user was rather than jumping to the end.
            if let Some(top) = self.top.as_mut() {
                *top = match top.line.checked_sub(extra) {
                    Some(line) => Anchor { line, row: top.row },
                    None => Anchor { line: 0, row: 0 },
                };
            }
        }
    }

    fn push_line(&mut self, stream: Stream, raw: &str) {
        let text = crate::source::scanner::strip_ansi(raw.trim_end_matches(['\n', '\r']));
        let chars = text.chars().count();
        self.lines.push(OutLine {
            stream,
            text,
            chars,
        });
    }

    /// Records the end.
    pub fn done(&mut self, exit: i32) {
        for (slot, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            if !self.partial[slot].is_empty() {
                let rest = std::mem::take(&mut self.partial[slot]);
                self.push_line(stream, &rest);
            }
        }
        self.exit = Some(exit);
        self.elapsed = Some(self.started.elapsed());
    }

    /// Display rows of the whole output at `width` columns.
    pub fn total_rows(&self, width: usize) -> usize {
        self.lines.iter().map(|l| l.rows(width)).sum()
    }

    /// The first row a full view of `height` rows can start at.
    fn last_top(&self, width: usize, height: usize) -> usize {
        self.total_rows(width).saturating_sub(height)
    }

    /// The first row of the view.
    pub fn first_row(&self, width: usize, height: usize) -> usize {
        let last = self.last_top(width, height);
        self.top.map_or(last, |t| self.row_of(t, width).min(last))
    }

    /// The row, counted from the top of the output, that `anchor` is at.
    fn row_of(&self, anchor: Anchor, width: usize) -> usize {
        let line = anchor.line.min(self.lines.len());
        let above: usize = self.lines[..line].iter().map(|l| l.rows(width)).sum();
        let within = self
            .lines
            .get(line)
            .map_or(0, |l| anchor.row.min(l.rows(width) - 1));
        above + within
    }

    /// The line and row within it of the `row`th row of the output.
    fn anchor_at(&self, mut row: usize, width: usize) -> Anchor {
        for (line, l) in self.lines.iter().enumerate() {
            let n = l.rows(width);
            if row < n {
                return Anchor { line, row };
            }
            row -= n;
        }
        Anchor {
            line: self.lines.len(),
            row: 0,
        }
    }

    /// Starts the view at `row`, or follows the end when that is where a
    /// full view would start anyway.
    fn set_first_row(&mut self, row: usize, width: usize, height: usize) {
        let last = self.last_top(width, height);
        self.top = (row < last).then(|| self.anchor_at(row, width));
    }

    /// Rows between the view's bottom and the end of the output.
    pub fn rows_below(&self, width: usize, height: usize) -> usize {
        let total = self.total_rows(width);
        total.saturating_sub(self.first_row(width, height) + height)
    }

    /// Scrolls by `rows` (negative is up); reaching the end follows again.
    pub fn scroll(&mut self, rows: isize, width: usize, height: usize) {
        let now = self.first_row(width, height);
        self.set_first_row(now.saturating_add_signed(rows), width, height);
    }

    /// Keeps the newest output in view again (`End` / `F`).
    pub fn resume(&mut self) {
        self.top = None;
    }

    /// The rows visible in a view `width` wide and `height` tall, top first.
    pub fn view(&self, width: usize, height: usize) -> Vec<Row<'_>> {
        let width = width.max(1);
        let mut skip = self.first_row(width, height);
        let mut rows = Vec::with_capacity(height);
        for (index, line) in self.lines.iter().enumerate() {
            let n = line.rows(width);
            if skip >= n {
                skip -= n;
                continue;
            }
            for piece in pieces(&line.text, width).skip(skip) {
                if rows.len() == height {
                    return rows;
                }
                rows.push(Row {
                    line: index,
                    text: piece,
                });
            }
            skip = 0;
        }
        rows
    }

    /// Sets the search term and brings the nearest match into view: the
    /// closest one at or above the view's last row, else the last one
    /// below it. A match already in view does not move the view, unless
    /// the same term is searched again: then the next match above the
    /// view comes into view, wrapping around to the end (as `less` does).
    pub fn find(&mut self, term: &str, width: usize, height: usize) -> bool {
        if term.is_empty() {
            self.search = None;
            return false;
        }
        let again = self.search.as_deref() == Some(term);
        self.search = Some(term.to_string());
        let view = self.view(width, height);
        let matches = |i: usize| self.lines[i].text.contains(term);
        if !again && view.iter().any(|r| matches(r.line)) {
            return true;
        }
        let len = self.lines.len();
        // Lines from `from` upwards, then from the end down to `from`.
        let from = match (again, view.first(), view.last()) {
            (true, Some(first), _) => first.line,
            (false, _, Some(last)) => last.line + 1,
            _ => len,
        };
        let hit = (0..from.min(len))
            .rev()
            .chain((from.min(len)..len).rev())
            .find(|&i| matches(i));
        let Some(hit) = hit else {
            return false;
        };
        let start = self.row_of(Anchor { line: hit, row: 0 }, width);
        self.set_first_row(start, width, height);
        true
    }
}

/// A line cut into rows of at most `width` characters (one empty row for
/// an empty line).
fn pieces(text: &str, width: usize) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.char_indices().nth(width) {
            Some((at, _)) => {
                rest = Some(&s[at..]);
                Some(&s[..at])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

/// The output area (width, height) of a command pane inside `cx`: its
/// inside less the footer row.
fn view_size(cx: &PaneCx) -> (usize, usize) {
    cx.inner.map_or((80, 10), |(rows, cols)| {
        (
            usize::from(cols),
            usize::from(rows.saturating_sub(1)).max(1),
        )
    })
}

impl PaneView for CommandPane {
    fn name(&self) -> &'static str {
        "command"
    }

    fn title(&self, exec_label: &str) -> String {
        format!(" {} · {} · {} ", exec_label, self.name(), self.command)
    }

    fn hints(&self) -> Vec<Hint> {
        vec![
            Hint::new(&[KeyAction::Rerun], "re-run", 8),
            Hint::new(&[KeyAction::Down, KeyAction::Up], "scroll", 4),
            Hint::new(&[KeyAction::Filter], "search", 6),
            Hint::new(&[KeyAction::Follow], "follow", 5),
            Hint::new(&[KeyAction::Zoom], "zoom", 3),
            Hint::new(&[KeyAction::Close], "close", 7),
            Hint::new(&[KeyAction::FocusNext], "focus", 2),
        ]
    }

    fn scroll(&mut self, n: usize, up: bool, cx: &PaneCx) {
        let (width, height) = view_size(cx);
        // A page is the pane's own height here, not the screen's: wrapped
        // rows make lines uneven.
        let rows = if n > 1 { height } else { n };
        let rows = isize::try_from(rows).unwrap_or(isize::MAX);
        CommandPane::scroll(self, if up { -rows } else { rows }, width, height);
    }

    fn on_action(&mut self, action: KeyAction, _cx: &PaneCx) -> PaneAction {
        match action {
            KeyAction::Follow => {
                self.resume();
                PaneAction::Done
            }
            KeyAction::Rerun if self.running() => PaneAction::Done,
            KeyAction::Rerun => {
                self.restart();
                PaneAction::Rerun(self.command.clone())
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
        let (width, rows) = view_size(cx);
        if self.find(term, width, rows) {
            Ok(())
        } else {
            Err(format!("`{term}` not found in the output"))
        }
    }

    fn owns_session(&self) -> bool {
        true
    }

    fn holds_session(&self) -> bool {
        self.running()
    }

    fn draw(&self, frame: &mut Frame<'_>, inner: Rect, cx: &DrawCx<'_>) {
        let c = self;
        let height = usize::from(inner.height).saturating_sub(1);
        let width = usize::from(inner.width.max(1));
        let term = c.search.as_deref().filter(|t| !t.is_empty());
        let rows: Vec<Line> = c
            .view(width, height)
            .into_iter()
            .map(|row| {
                let style = stream_style(&c.lines[row.line].stream);
                match term.filter(|t| row.text.contains(*t)) {
                    Some(t) => highlight(row.text, t, style),
                    None => Line::from(Span::styled(row.text.to_string(), style)),
                }
            })
            .collect();
        let mut lines = rows;
        let footer = match (&c.error, c.exit, c.elapsed) {
            (Some(e), _, _) => Span::styled(format!("failed: {e}"), Style::new().fg(Color::Red)),
            (None, Some(code), Some(t)) => Span::styled(
                match keys_then(cx.keymap, KeyAction::Rerun, "re-runs") {
                    Some(rerun) => format!("exit {code} · {:.2}s · {rerun}", t.as_secs_f64()),
                    None => format!("exit {code} · {:.2}s", t.as_secs_f64()),
                },
                Style::new().fg(if code == 0 { Color::Green } else { Color::Red }),
            ),
            _ => Span::styled(
                format!("running… {:.0}s", c.started.elapsed().as_secs_f64()),
                Style::new().fg(Color::Yellow),
            ),
        };
        let mut footer = vec![footer];
        let below = c.rows_below(width, height);
        if c.top.is_some() && below > 0 {
            footer.push(Span::styled(
                match keys_then(cx.keymap, KeyAction::Follow, "follows") {
                    Some(follow) => format!(" · {below} rows below; {follow}"),
                    None => format!(" · {below} rows below"),
                },
                Style::new().fg(Color::Yellow),
            ));
        }
        lines.push(Line::from(footer));
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pane(lines: &[&str]) -> CommandPane {
        let mut p = CommandPane::new("ps aux".into());
        for l in lines {
            p.output(Stream::Stdout, format!("{l}\n").as_bytes());
        }
        p.done(0);
        p
    }

    fn shown(p: &CommandPane, w: usize, h: usize) -> Vec<String> {
        p.view(w, h).iter().map(|r| r.text.to_string()).collect()
    }

    #[test]
    fn long_lines_wrap_and_the_end_is_shown() {
        let p = pane(&["abcdefgh", "ij", "", "klmno"]);
        assert_eq!(p.total_rows(3), 3 + 1 + 1 + 2);
        assert_eq!(shown(&p, 3, 3), ["", "klm", "no"]);
    }

    #[test]
    fn paging_up_through_wrapped_lines_skips_no_row() {
        // Every third line wraps over three rows, the way `ps aux` looks.
        let lines: Vec<String> = (0..200)
            .map(|i| {
                if i % 3 == 0 {
                    format!("{i:03}-{}", "x".repeat(25))
                } else {
                    format!("{i:03}")
                }
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut p = pane(&refs);
        let (w, h) = (10, 7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            for r in p.view(w, h) {
                seen.insert(r.line);
            }
            if p.first_row(w, h) == 0 {
                break;
            }
            p.scroll(-(h as isize), w, h);
        }
        assert_eq!(seen.len(), 200, "every line was on screen once");
        // Paging down again reaches the end and follows new output.
        for _ in 0..500 {
            p.scroll(h as isize, w, h);
        }
        assert!(p.top.is_none());
    }

    #[test]
    fn a_scrolled_view_stays_put_while_output_arrives() {
        let mut p = CommandPane::new("tail".into());
        for i in 0..50 {
            p.output(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        p.scroll(-10, 20, 5);
        let before = shown(&p, 20, 5);
        p.output(Stream::Stdout, b"line 50\nline 51\n");
        assert_eq!(before, shown(&p, 20, 5));
        p.resume();
        assert_eq!(shown(&p, 20, 5).last().map(String::as_str), Some("line 51"));
    }

    #[test]
    fn a_scrolled_view_keeps_its_line_when_the_width_changes() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("{i:03} {}", "w".repeat(30)))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut p = pane(&refs);
        p.scroll(-40, 40, 10);
        let top = shown(&p, 40, 10)[0].clone();
        // Zoomed to twice the width, then split to half: the same line
        // stays at the top.
        assert_eq!(shown(&p, 80, 10)[0], top);
        assert!(shown(&p, 20, 10)[0].starts_with(&top[..3]));
    }

    #[test]
    fn search_brings_a_match_into_view() {
        let lines: Vec<String> = (0..100).map(|i| format!("proc {i:03}")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut p = pane(&refs);
        assert!(p.find("proc 070", 20, 5));
        assert_eq!(shown(&p, 20, 5)[0], "proc 070");
        // The next search for an earlier line moves up; a missing one fails.
        assert!(p.find("proc 003", 20, 5));
        assert_eq!(shown(&p, 20, 5)[0], "proc 003");
        // The same term again: the previous match above the view, and
        // round to the last one past the top.
        assert!(p.find("proc 0", 20, 5));
        assert!(p.find("proc 0", 20, 5));
        let first = shown(&p, 20, 5)[0].clone();
        assert!(p.find("proc 0", 20, 5));
        assert_ne!(shown(&p, 20, 5)[0], first, "a repeated search moves on");
        assert!(!p.find("nothing like this", 20, 5));
    }

    #[test]
    fn colours_are_stripped_and_partial_lines_kept() {
        let mut p = CommandPane::new("ls".into());
        p.output(Stream::Stdout, b"\x1b[31mred\x1b[0m\nno newline");
        p.output(Stream::Stderr, b"oops\n");
        p.done(2);
        let texts: Vec<&str> = p.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["red", "oops", "no newline"]);
    }
}
