//! Drawing: every widget draws from the app state and does no I/O.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Cell, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use std::sync::atomic::Ordering;

use super::app::{App, ExecRow, Focus, Level, Popup, PromptKind, SshState};
use super::panes::shell::ShellState;
use super::panes::{Pane, PaneKind};
use crate::source::{Status, Stream};
use crate::ssh::tunnel::TunnelState;

/// Where things go on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// The executions list.
    pub list: Rect,
    /// The tiled panes.
    pub panes: Rect,
    /// The status bar.
    pub status: Rect,
}

/// Splits the screen: list on the left (on top when narrow), panes, and a
/// one-line status bar.
pub fn areas(size: Rect) -> Areas {
    let [main, status] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(size);
    let [list, panes] = if main.width >= 90 {
        // Wide enough for every column: `complete`, `connected`, a title.
        let w = (main.width * 3 / 10).clamp(46, 60);
        Layout::horizontal([Constraint::Length(w), Constraint::Min(1)]).areas(main)
    } else {
        let h = (main.height * 35 / 100).max(5);
        Layout::vertical([Constraint::Length(h), Constraint::Min(1)]).areas(main)
    };
    Areas {
        list,
        panes,
        status,
    }
}

/// Rows and columns inside a pane's border.
pub fn inner_size(rect: Rect) -> (u16, u16) {
    (
        rect.height.saturating_sub(2).max(1),
        rect.width.saturating_sub(2).max(1),
    )
}

/// Draws the whole console.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let a = areas(frame.area());
    draw_list(frame, app, a.list);
    draw_panes(frame, app, a.panes);
    draw_status(frame, app, a.status);
    match &app.popup {
        Some(Popup::Help) => draw_help(frame, app),
        Some(Popup::Prompt(p)) => draw_prompt(frame, p),
        Some(Popup::ConfirmQuit) => draw_confirm(frame, app),
        Some(Popup::Ask(q)) => draw_question(frame, &q.text),
        None => {}
    }
}

fn status_color(status: &Status) -> Color {
    match status {
        Status::Started => Color::Green,
        Status::Created | Status::Queued => Color::Yellow,
        Status::Stopping => Color::Magenta,
        Status::Complete => Color::Blue,
        Status::Error | Status::Crashed => Color::Red,
        Status::Stopped | Status::Other(_) => Color::Gray,
    }
}

fn block(title: String, focused: bool, interacting: bool) -> Block<'static> {
    let color = match (focused, interacting) {
        (true, true) => Color::LightGreen,
        (true, false) => Color::Cyan,
        _ => Color::DarkGray,
    };
    Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(Style::new().fg(color))
        .title(Span::styled(
            title,
            Style::new().fg(if focused { Color::White } else { Color::Gray }),
        ))
}

fn draw_list(frame: &mut Frame<'_>, app: &App, area: Rect) {
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

fn draw_panes(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let rects = app.pane_rects();
    if rects.is_empty() {
        let hint = Paragraph::new(vec![
            Line::from(""),
            Line::from("  Enter  open the selected execution's log"),
            Line::from("  s      shell      c  command (ps aux)"),
            Line::from("  t      tunnel     T  tunnels"),
            Line::from("  |  -   split side by side / stacked for the next pane"),
            Line::from("  ?      all keys"),
        ])
        .fg(Color::DarkGray)
        .block(
            Block::bordered()
                .border_style(Style::new().fg(Color::DarkGray))
                .title(" panes "),
        );
        frame.render_widget(hint, area);
        return;
    }
    for (id, rect) in rects {
        if let Some(pane) = app.panes.get(&id) {
            let focused = app.focus == Focus::Pane(id);
            draw_pane(frame, app, pane, rect, focused, focused && app.interacting);
        }
    }
}

fn draw_pane(
    frame: &mut Frame<'_>,
    app: &App,
    pane: &Pane,
    area: Rect,
    focused: bool,
    interacting: bool,
) {
    // First, so that a narrow pane still shows where the keys go.
    let title = if interacting {
        format!(" [interacting]{}", pane.title())
    } else {
        pane.title()
    };
    let block = block(title, focused, interacting);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match &pane.kind {
        PaneKind::Log(l) => {
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
                    format!("-- scrolled up {} lines; End or F follows --", l.offset),
                    Style::new().fg(Color::Yellow),
                )));
            }
            frame.render_widget(Paragraph::new(lines), inner);
        }
        PaneKind::Shell(s) => {
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
            if !interacting {
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
        PaneKind::Command(c) => {
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
                (Some(e), _, _) => {
                    Span::styled(format!("failed: {e}"), Style::new().fg(Color::Red))
                }
                (None, Some(code), Some(t)) => Span::styled(
                    format!("exit {code} · {:.2}s · r re-runs", t.as_secs_f64()),
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
                    format!(" · {below} rows below; End or F follows"),
                    Style::new().fg(Color::Yellow),
                ));
            }
            lines.push(Line::from(footer));
            frame.render_widget(Paragraph::new(lines), inner);
        }
        PaneKind::Tunnels { selected } => draw_tunnels(frame, app, inner, *selected, focused),
    }
}

/// How a line of each stream looks: stderr red, status cyan and italic.
fn stream_style(stream: &Stream) -> Style {
    match stream {
        Stream::Stderr => Style::new().fg(Color::LightRed),
        Stream::Status => Style::new().fg(Color::Cyan).add_modifier(Modifier::ITALIC),
        _ => Style::new(),
    }
}

fn highlight(text: &str, term: &str, base: Style) -> Line<'static> {
    let mut spans = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(term) {
        spans.push(Span::styled(rest[..pos].to_string(), base));
        spans.push(Span::styled(
            term.to_string(),
            Style::new().bg(Color::Yellow).fg(Color::Black),
        ));
        rest = &rest[pos + term.len()..];
    }
    spans.push(Span::styled(rest.to_string(), base));
    Line::from(spans)
}

fn human_bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// Each tunnel takes two lines: what it connects and its counters, then
/// its state in full (a failure names its cause, e.g. the port in use).
fn draw_tunnels(frame: &mut Frame<'_>, app: &App, area: Rect, selected: usize, focused: bool) {
    if app.tunnels.is_empty() {
        frame.render_widget(
            Paragraph::new("no tunnels; t opens one for the selected execution")
                .fg(Color::DarkGray),
            area,
        );
        return;
    }
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "{:<16} {:<16} {:<12} {:>4}  {}",
            "LOCAL", "TARGET", "EXECUTION", "CONN", "UP / DOWN"
        ),
        Style::new().add_modifier(Modifier::BOLD),
    ))];
    for (i, t) in app.tunnels.iter().enumerate() {
        let (state, color) = match &t.state {
            TunnelState::Listening => ("listening".to_string(), Color::Yellow),
            TunnelState::Up => ("up".to_string(), Color::Green),
            TunnelState::Reconnecting { attempt, reason } => (
                format!("reconnecting (attempt {attempt}): {reason}"),
                Color::Yellow,
            ),
            TunnelState::Failed(e) => (format!("failed: {e}"), Color::Red),
        };
        let (conns, up, down) = t.tunnel.as_ref().map_or((0, 0, 0), |t| {
            (
                t.stats.connections.load(Ordering::Relaxed),
                t.stats.bytes_up.load(Ordering::Relaxed),
                t.stats.bytes_down.load(Ordering::Relaxed),
            )
        });
        let local = t.local().map_or_else(|| "-".into(), |a| a.to_string());
        let label: String = t.exec_label.chars().take(12).collect();
        let style = if i == selected && focused {
            Style::new().bg(Color::Blue)
        } else {
            Style::new()
        };
        lines.push(Line::from(Span::styled(
            format!(
                "{local:<16} {:<16} {label:<12} {conns:>4}  {} / {}",
                t.spec_text(),
                human_bytes(up),
                human_bytes(down)
            ),
            style,
        )));
        let mut detail = vec![Span::raw("  "), Span::styled(state, Style::new().fg(color))];
        if let Some(e) = &t.last_error {
            detail.push(Span::styled(
                format!(" · last connection: {e}"),
                Style::new().fg(Color::DarkGray),
            ));
        }
        lines.push(Line::from(detail));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

fn hints(app: &App) -> &'static str {
    if app.interacting {
        return "interacting: every key goes to the shell · Ctrl-] back to the console";
    }
    match app.focus {
        Focus::List => "j/k move · Enter log · s shell · c command · t tunnel · T tunnels · / filter · y copy ssh · ? help · q quit",
        Focus::Pane(id) => match app.panes.get(&id).map(|p| &p.kind) {
            Some(PaneKind::Log(_)) => "j/k scroll · End/F follow · / search · s shell · c command · z zoom · x close · Tab focus · ? help",
            Some(PaneKind::Shell(_)) => "Enter/i interact · j/k history · z zoom · x close · Tab focus · ? help",
            Some(PaneKind::Command(_)) => "r re-run · j/k scroll · / search · End follows · z zoom · x close · Tab focus · ? help",
            Some(PaneKind::Tunnels { .. }) => "j/k select · x stop tunnel · t new tunnel · Tab focus · ? help",
            None => "? help",
        },
    }
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let line = match &app.status {
        Some((msg, Level::Error)) => Line::from(Span::styled(
            msg.clone(),
            Style::new().fg(Color::White).bg(Color::Red),
        )),
        Some((msg, Level::Info)) => Line::from(vec![
            Span::styled(msg.clone(), Style::new().fg(Color::Cyan)),
            Span::raw("  ·  "),
            Span::styled(hints(app), Style::new().fg(Color::DarkGray)),
        ]),
        None => Line::from(Span::styled(hints(app), Style::new().fg(Color::DarkGray))),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

const HELP: &[(&str, &str)] = &[
    ("j/k, arrows", "move in the list, scroll a pane"),
    ("Enter", "open the selected execution's log"),
    ("s", "shell pane (opens in interaction mode)"),
    (
        "c",
        "command pane: prompt prefilled with `ps aux`, ↑/↓ history",
    ),
    (
        "t / T",
        "new tunnel (prefilled 5678; F1.. pick a listening port) / tunnels list",
    ),
    ("Ctrl-]", "leave interaction mode (Enter or i re-enters)"),
    ("Tab, Alt+arrows", "move focus between the list and panes"),
    ("| / -", "next pane side by side / stacked"),
    (
        "z / x",
        "zoom the focused pane / close it (in T: stop the tunnel)",
    ),
    (
        "End, F",
        "follow a log or command output again;  / searches it",
    ),
    ("r", "re-run a command pane's command"),
    (
        "L",
        "linger: `extend 1h` or `release` the SSH server after the command",
    ),
    ("y", "copy the equivalent ssh command (OSC 52)"),
    ("/", "filter executions"),
    ("q", "quit (asks when sessions or tunnels are open)"),
];

fn draw_help(frame: &mut Frame<'_>, _app: &App) {
    let area = centered(frame.area(), 86, HELP.len() as u16 + 4);
    frame.render_widget(Clear, area);
    let rows: Vec<Row> = HELP
        .iter()
        .map(|(k, v)| {
            Row::new(vec![
                Cell::from(Span::styled(*k, Style::new().fg(Color::Cyan))),
                Cell::from(*v),
            ])
        })
        .collect();
    let table = Table::new(rows, [Constraint::Length(17), Constraint::Min(10)]).block(
        Block::bordered()
            .border_style(Style::new().fg(Color::Cyan))
            .title(" porthole keys · any key closes "),
    );
    frame.render_widget(table, area);
}

fn draw_prompt(frame: &mut Frame<'_>, prompt: &super::app::Prompt) {
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
    let [input, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    frame.render_widget(&prompt.input, input);
    if let Some(text) = extra {
        frame.render_widget(Paragraph::new(text).fg(Color::DarkGray), rest);
    }
}

fn draw_question(frame: &mut Frame<'_>, text: &str) {
    let lines: Vec<Line> = text
        .lines()
        .map(|l| Line::from(l.to_string()))
        .chain([
            Line::from(""),
            Line::from(Span::styled(
                "y trusts and connects · any other key refuses",
                Style::new().fg(Color::Yellow),
            )),
        ])
        .collect();
    let area = centered(frame.area(), 96, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .border_style(Style::new().fg(Color::Yellow))
                .title(" host key "),
        ),
        area,
    );
}

fn draw_confirm(frame: &mut Frame<'_>, app: &App) {
    let shells = app
        .panes
        .values()
        .filter(|p| matches!(&p.kind, PaneKind::Shell(s) if matches!(s.state, ShellState::Live | ShellState::Connecting)))
        .count();
    let tunnels = app
        .tunnels
        .iter()
        .filter(|t| !matches!(t.state, TunnelState::Failed(_)))
        .count();
    let area = centered(frame.area(), 60, 5);
    frame.render_widget(Clear, area);
    let text = Paragraph::new(vec![
        Line::from(format!(
            "{shells} shell(s) and {tunnels} tunnel(s) are open."
        )),
        Line::from("Quit and close them?  y quits · any other key stays"),
    ])
    .block(
        Block::bordered()
            .border_style(Style::new().fg(Color::Yellow))
            .title(" quit? "),
    );
    frame.render_widget(text, area);
}
