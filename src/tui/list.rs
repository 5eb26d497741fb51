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
/// in `area` (row 0 is the border, row 1 the header).
pub fn row_at(area: Rect, y: u16) -> usize {
    usize::from(y.saturating_sub(area.y + 2))
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
    let rows: Vec<Row> = visible
        .iter()
        .enumerate()
        .map(|(i, r)| list_row(app, r, i == app.selected && focused, i == app.selected))
        .collect();
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
}

fn list_row<'a>(app: &App, r: &'a ExecRow, focused: bool, selected: bool) -> Row<'a> {
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
        (true, false) => Style::new().bg(Color::DarkGray),
        _ => Style::new(),
    };
    Row::new(vec![
        Cell::from(format!("{:>4}", r.exec.counter)),
        Cell::from(Span::styled(
            r.exec.status.clone(),
            Style::new().fg(status_color(&status)),
        )),
        Cell::from(app.age(r)),
        Cell::from(Span::styled(ssh, Style::new().fg(ssh_color))),
        Cell::from(if app.sources.len() > 1 {
            format!(
                "[{}] {}",
                app.sources.get(r.source).map_or("?", String::as_str),
                r.exec.label()
            )
        } else {
            r.exec.label()
        }),
    ])
    .style(style)
}
