//! Drawing: the screen's areas, and the whole console drawn from the app
//! state (the list, each pane and each popup draw themselves). No I/O.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::app::{App, Focus, Level};
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
        popup.draw(frame, app.open_sessions());
    }
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
            let cx = DrawCx {
                focused,
                interacting: focused && app.interacting,
                tunnels: &app.tunnels,
            };
            pane.draw(frame, rect, &cx);
        }
    }
}

fn hints(app: &App) -> &'static str {
    if app.interacting {
        return "interacting: every key goes to the shell · Ctrl-] back to the console";
    }
    match app.focus {
        Focus::List => "j/k move · Enter log · s shell · c command · t tunnel · T tunnels · / filter · y copy ssh · ? help · q quit",
        Focus::Pane(id) => app.panes.get(&id).map_or("? help", |p| p.kind.view().hints()),
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
