//! The executions list: drawn from the app's rows, filter and selection.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::app::{App, ExecRow, Focus, SshState};
use super::widgets::block;
use crate::source::Status;

fn status_color(status: &Status) -> Color {
    match status {
        Status::Started => Color::Green,
        Status::Created | Status::Queued => Color::Yellow,
        Status::Stopping => Color::Magenta,
        Status::Complete => Color::Blue,
        Status::Error | Status::Crashed => Color::Red,
        Status::Stopped | Status::Ended(_) | Status::Other(_) => Color::Gray,
    }
}

/// The index among the visible rows of screen row `y` in the list drawn
/// in `area` (row 0 is the border, row 1 the header), counting the rows
/// scrolled out of view above.
pub fn row_at(app: &App, area: Rect, y: u16) -> usize {
    let height = usize::from(area.height.saturating_sub(3));
    let (first, _) = window(app.visible().len(), app.selected, height);
    first + usize::from(y.saturating_sub(area.y + 2))
}

/// Which of `len` rows fit in `height` lines: the first shown and how
/// many, keeping the selected one in view. When not all fit, one line is
/// kept to say how many more there are.
pub fn window(len: usize, selected: usize, height: usize) -> (usize, usize) {
    if len <= height {
        return (0, len);
    }
    // Too low for a "more" line: the selected row alone.
    let shown = if height >= 2 { height - 1 } else { 1 };
    let first = (selected + 1).saturating_sub(shown).min(len - shown);
    (first, shown)
}

/// `text` cut to `width` characters, ending with `…` when cut.
fn ellipsize(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Draws the executions list: a row each, with their SSH state; a
/// source that cannot be read says so at the top.
pub fn draw(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut title = format!(" executions · {} ", app.sources.join(" + "));
    if !app.filter.is_empty() {
        title.push_str(&format!("· /{} ", app.filter));
    }
    let block = block(title, app.focus == Focus::List, false);
    let inner = block.inner(area);
    frame.render_widget(block, area);

    // A source that cannot be read says so at the top; the other sources'
    // rows stay below.
    let errors: Vec<String> = app
        .source_errors
        .iter()
        .map(|(i, e)| {
            let name = app.sources.get(*i).map_or("source", String::as_str);
            format!("cannot list {name} executions: {e} (retrying)")
        })
        .collect();
    let rows_area = if errors.is_empty() {
        inner
    } else {
        let height = if app.executions.is_empty() {
            inner.height
        } else {
            (errors.len() as u16 * 3).min(inner.height / 2)
        };
        let [top, rest] =
            Layout::vertical([Constraint::Length(height), Constraint::Min(0)]).areas(inner);
        frame.render_widget(
            Paragraph::new(errors.join("\n"))
                .wrap(Wrap { trim: true })
                .fg(Color::Red),
            top,
        );
        rest
    };
    if app.executions.is_empty() && !errors.is_empty() {
        return;
    }
    let visible = app.visible();
    if visible.is_empty() {
        let msg = if app.executions.is_empty() {
            "no executions yet"
        } else {
            "nothing matches the filter"
        };
        frame.render_widget(Paragraph::new(msg).fg(Color::DarkGray), rows_area);
        return;
    }
    let focused = app.focus == Focus::List;
    // AGE and SSH are as wide as what they show (`3583d`, `lingering
    // 59m`), so that the title keeps the rest.
    let widest = |min: usize, f: &dyn Fn(&ExecRow) -> String| {
        visible
            .iter()
            .map(|r| f(r).chars().count())
            .fold(min, usize::max) as u16
    };
    let status_width = widest(6, &|r| r.exec.status.clone());
    let age_width = widest(3, &|r| app.age(r));
    let ssh_width = widest(7, &|r| app.ssh_state(r).text());
    // Five columns, four spaces between them; the title has the rest.
    let title_width = usize::from(rows_area.width)
        .saturating_sub(5 + 4 + usize::from(status_width + age_width + ssh_width))
        .max(1);
    let height = usize::from(rows_area.height.saturating_sub(1));
    let (first, shown) = window(visible.len(), app.selected, height);
    let rows: Vec<Row> = visible
        .iter()
        .enumerate()
        .skip(first)
        .take(shown)
        .map(|(i, r)| {
            let selected = i == app.selected;
            list_row(app, r, selected && focused, selected, title_width)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(status_width),
            Constraint::Length(age_width),
            Constraint::Length(ssh_width),
            Constraint::Min(8),
        ],
    )
    .header(
        Row::new(["#", "STATUS", "AGE", "SSH", "TITLE"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .column_spacing(1);
    frame.render_widget(table, rows_area);
    if shown < visible.len() && height >= 2 {
        let below = visible.len() - first - shown;
        let text = match (first, below) {
            (0, n) => format!("↓ {n} more"),
            (n, 0) => format!("↑ {n} more above"),
            (a, b) => format!("↑ {a} above · ↓ {b} more"),
        };
        let line = Rect {
            y: rows_area.y + rows_area.height.saturating_sub(1),
            height: 1,
            ..rows_area
        };
        frame.render_widget(Paragraph::new(text).fg(Color::DarkGray), line);
    }
}

fn list_row<'a>(
    app: &App,
    r: &'a ExecRow,
    focused: bool,
    selected: bool,
    title_width: usize,
) -> Row<'a> {
    let status = r.exec.status();
    let ssh_state = app.ssh_state(r);
    let ssh_color = match ssh_state {
        SshState::Waiting | SshState::Gone => Color::DarkGray,
        SshState::Ready => Color::Green,
        SshState::Connected => Color::LightGreen,
        SshState::Lingering(_) => Color::Yellow,
    };
    let ssh = ssh_state.text();
    let style = match (selected, focused) {
        (true, true) => Style::new().bg(Color::Blue).fg(Color::White),
        (true, false) => Style::new().bg(Color::DarkGray).fg(Color::White),
        _ => Style::new(),
    };
    // On the selection bar the row's own colour is enough: a status colour
    // on it can vanish (blue `complete` on the blue bar).
    let colour = |c: Color| {
        if selected {
            Style::new()
        } else {
            Style::new().fg(c)
        }
    };
    Row::new(vec![
        Cell::from(format!("{:>4}", r.exec.counter)),
        Cell::from(Span::styled(
            r.exec.status.clone(),
            colour(status_color(&status)),
        )),
        Cell::from(app.age(r)),
        Cell::from(Span::styled(ssh, colour(ssh_color))),
        Cell::from(ellipsize(
            &if app.sources.len() > 1 {
                format!(
                    "[{}] {}",
                    app.sources.get(r.source).map_or("?", String::as_str),
                    r.exec.label()
                )
            } else {
                r.exec.label()
            },
            title_width,
        )),
    ])
    .style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_the_selected_row_in_view() {
        // All fit.
        assert_eq!(window(3, 2, 5), (0, 3));
        // Ten rows in five lines: four rows and a "more" line.
        assert_eq!(window(10, 0, 5), (0, 4));
        assert_eq!(window(10, 3, 5), (0, 4));
        assert_eq!(window(10, 4, 5), (1, 4));
        assert_eq!(window(10, 9, 5), (6, 4));
        // A list one line high still shows the selected row.
        assert_eq!(window(10, 7, 1), (7, 1));
    }

    #[test]
    fn long_titles_end_with_an_ellipsis() {
        assert_eq!(ellipsize("train resnet50", 20), "train resnet50");
        assert_eq!(ellipsize("train resnet50", 8), "train r…");
        assert_eq!(ellipsize("é🙂x", 2), "é…");
    }
}
