//! Drawing: the screen's areas, and the whole console drawn from the app
//! state (the list, each pane and each popup draw themselves). No I/O.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::app::{App, Focus, Level};
use super::hints::{self, Hint, KEEP};
use super::keys::{KeyAction, Keymap};
use super::list;
use super::panes::DrawCx;

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
    list::draw(frame, app, a.list);
    draw_panes(frame, app, a.panes);
    draw_status(frame, app, a.status);
    if let Some(popup) = &app.popup {
        popup.draw(frame, app.open_sessions(), &app.keymap);
    }
}

fn draw_panes(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let rects = app.pane_rects();
    if rects.is_empty() {
        let hint = Paragraph::new(empty_panes_hint(&app.keymap))
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
            let cx = DrawCx {
                focused,
                interacting: focused && app.interacting,
                tunnels: &app.tunnels,
                keymap: &app.keymap,
            };
            pane.draw(frame, rect, &cx);
        }
    }
}

/// The panes area's hint when no pane is open, naming the keys as bound
/// (an unbound action is left out).
fn empty_panes_hint(keymap: &Keymap) -> Vec<Line<'static>> {
    let key = |a: KeyAction| keymap.key_for(a);
    let entry =
        |k: Option<String>, text: &str, pad: usize| k.map(|k| format!("{k:<6} {text:<pad$}"));
    let pair = |a: Option<String>, b: Option<String>| {
        let joined: Vec<String> = [a, b].into_iter().flatten().collect();
        (!joined.is_empty()).then(|| format!("  {}", joined.join("").trim_end()))
    };
    let split: Vec<String> = [KeyAction::SplitSide, KeyAction::SplitStack]
        .into_iter()
        .filter_map(key)
        .collect();
    let lines = [
        pair(
            entry(key(KeyAction::Open), "open the selected execution's log", 0),
            None,
        ),
        pair(
            entry(key(KeyAction::Shell), "shell", 11),
            key(KeyAction::Command).map(|k| format!("{k}  command (ps aux)")),
        ),
        pair(
            entry(key(KeyAction::Tunnel), "tunnel", 11),
            key(KeyAction::Tunnels).map(|k| format!("{k}  tunnels")),
        ),
        pair(
            (!split.is_empty()).then(|| {
                format!(
                    "{:<6} split side by side / stacked for the next pane",
                    split.join("  ")
                )
            }),
            None,
        ),
        pair(entry(key(KeyAction::Help), "all keys", 0), None),
    ];
    std::iter::once(Line::from(""))
        .chain(lines.into_iter().flatten().map(Line::from))
        .collect()
}

/// What the key bar offers now: the open popup's keys, the way out of
/// interaction mode, or the focused list's or pane's keys with `? help`
/// and the quit key.
pub fn key_hints(app: &App) -> Vec<Hint> {
    if let Some(popup) = &app.popup {
        return popup.hints();
    }
    if app.interacting {
        return vec![Hint::new(&[KeyAction::Leave], "back to the console", KEEP)];
    }
    let mut out = match app.focus {
        Focus::List => {
            let mut list = vec![
                Hint::new(&[KeyAction::Down, KeyAction::Up], "move", 3),
                Hint::new(&[KeyAction::Open], "log", 9),
                Hint::new(&[KeyAction::Shell], "shell", 8),
                Hint::new(&[KeyAction::Command], "command", 6),
                Hint::new(&[KeyAction::Tunnel], "tunnel", 7),
                Hint::new(&[KeyAction::Tunnels], "tunnels", 4),
                Hint::new(&[KeyAction::Filter], "filter", 5),
                Hint::new(&[KeyAction::Copy], "copy ssh", 2),
            ];
            let esc = KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE);
            if !app.filter.is_empty() && app.keymap.action(&esc).is_none() {
                list.insert(0, Hint::fixed("Esc", "clear filter", 10));
            }
            list
        }
        Focus::Pane(id) => app
            .panes
            .get(&id)
            .map(|p| p.kind.view().hints())
            .unwrap_or_default(),
    };
    out.extend([hints::HELP, hints::QUIT]);
    out
}

/// The status line: the message (cut to leave room for the hints that
/// always stay), then the key bar fitted to what is left.
fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let width = usize::from(area.width);
    let bar = key_hints(app);
    let mut message: Option<(String, Style)> = match &app.status {
        Some((msg, Level::Error)) => {
            Some((msg.clone(), Style::new().fg(Color::White).bg(Color::Red)))
        }
        Some((msg, Level::Info)) => Some((msg.clone(), Style::new().fg(Color::Cyan))),
        None => None,
    };
    if message.is_none() && app.interacting && app.popup.is_none() {
        message = Some((
            "interacting: every key goes to the shell".to_string(),
            Style::new().fg(Color::Yellow),
        ));
    }
    let mut spans = Vec::new();
    let mut room = width;
    if let Some((msg, style)) = message {
        let kept = hints::kept_width(&bar, &app.keymap);
        let sep = hints::width(hints::SEP);
        let max = width.saturating_sub(kept + sep);
        let msg = cut(&msg, max.max(width.min(12)));
        room = width.saturating_sub(hints::width(&msg) + sep);
        spans.push(Span::styled(msg, style));
        spans.push(Span::styled(hints::SEP, Style::new().fg(Color::DarkGray)));
    }
    let shown = hints::fit(&bar, &app.keymap, room);
    spans.extend(hints::spans(&shown));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `text` cut to `width` columns, ending with `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if hints::width(text) <= width {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        if hints::width(&out) + hints::width(&c.to_string()) + 1 > width {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}
