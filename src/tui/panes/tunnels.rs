//! Every tunnel of every execution, as a table: what each connects, its
//! counters and its state.

use std::sync::atomic::Ordering;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{DrawCx, PaneAction, PaneCx, PaneView};
use crate::ssh::tunnel::TunnelState;
use crate::tui::keys::KeyAction;
use crate::tui::tunnels::TunnelRow;

/// The tunnels pane's state: the tunnels are the app's, shared with the
/// list's SSH column.
#[derive(Debug, Clone, Default)]
pub struct TunnelsPane {
    /// Selected row.
    pub selected: usize,
}

impl PaneView for TunnelsPane {
    fn name(&self) -> &'static str {
        "tunnels"
    }

    fn title(&self, _exec_label: &str) -> String {
        " tunnels ".to_string()
    }

    fn hints(&self) -> Vec<crate::tui::hints::Hint> {
        use crate::tui::hints::Hint;
        vec![
            Hint::new(&[KeyAction::Down, KeyAction::Up], "select", 4),
            Hint::new(&[KeyAction::Close], "stop", 9),
            Hint::fixed("X", "clear failed", 6),
            Hint::new(&[KeyAction::Tunnel], "new", 8),
            Hint::then(&[KeyAction::Tunnels], "Esc", "close", 7),
        ]
    }

    fn scroll(&mut self, n: usize, up: bool, cx: &PaneCx) {
        self.selected = if up {
            self.selected.saturating_sub(n)
        } else {
            (self.selected + n).min(cx.tunnels.saturating_sub(1))
        };
    }

    fn on_action(&mut self, action: KeyAction, cx: &PaneCx) -> PaneAction {
        match action {
            // `x` stops the selected tunnel; with none, it closes the pane.
            KeyAction::Close if self.selected < cx.tunnels => PaneAction::StopTunnel(self.selected),
            _ => PaneAction::Ignored,
        }
    }

    fn on_key(&mut self, key: &KeyEvent, _cx: &PaneCx) -> PaneAction {
        if !key.modifiers.difference(KeyModifiers::SHIFT).is_empty() {
            return PaneAction::Ignored;
        }
        match key.code {
            // Back to the list, as in k9s.
            KeyCode::Esc => PaneAction::Leave,
            KeyCode::Char('X') => PaneAction::ClearFailedTunnels,
            _ => PaneAction::Ignored,
        }
    }

    fn draw(&self, frame: &mut Frame<'_>, inner: Rect, cx: &DrawCx<'_>) {
        draw_table(frame, cx.tunnels, inner, self.selected, cx.focused);
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`.
fn human_bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// `text` cut to `width` columns, ending with `…` when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// The narrowest STATUS column the optional columns leave.
const STATUS_MIN: usize = 20;

/// One row per tunnel: DIR, LOCAL, TARGET, then EXECUTION, CONN and UP /
/// DOWN while they leave STATUS room (dropped in reverse order), and STATUS
/// with the rest of the width, its reason cut with `…`. Below the rows, the
/// selected tunnel's state in full when its cell had to cut it.
fn draw_table(
    frame: &mut Frame<'_>,
    tunnels: &[TunnelRow],
    area: Rect,
    selected: usize,
    focused: bool,
) {
    if tunnels.is_empty() {
        frame.render_widget(
            Paragraph::new("no tunnels; t opens one for the selected execution")
                .fg(Color::DarkGray),
            area,
        );
        return;
    }
    struct Cells {
        local: String,
        target: String,
        exec: String,
        conns: String,
        bytes: String,
        status: String,
        color: Color,
    }
    let rows: Vec<Cells> = tunnels
        .iter()
        .map(|t| {
            let (conns, up, down) = t.tunnel.as_ref().map_or((0, 0, 0), |t| {
                (
                    t.stats.connections.load(Ordering::Relaxed),
                    t.stats.bytes_up.load(Ordering::Relaxed),
                    t.stats.bytes_down.load(Ordering::Relaxed),
                )
            });
            let color = match &t.state {
                TunnelState::Listening | TunnelState::Reconnecting { .. } => Color::Yellow,
                TunnelState::Up => Color::Green,
                TunnelState::Failed(_) => Color::Red,
            };
            Cells {
                local: t.local_text(),
                target: t.spec_text(),
                exec: t.exec_label.clone(),
                conns: conns.to_string(),
                bytes: format!("{} / {}", human_bytes(up), human_bytes(down)),
                status: t.status_text(),
                color,
            }
        })
        .collect();
    let widest = |f: &dyn Fn(&Cells) -> usize, header: &str, max: usize| {
        rows.iter()
            .map(f)
            .chain([header.chars().count()])
            .max()
            .unwrap_or(0)
            .min(max)
    };
    // Titles get more room on a wide screen.
    let exec_max = if area.width >= 120 { 24 } else { 12 };
    let local_w = widest(&|c| c.local.chars().count(), "LOCAL", 22);
    let target_w = widest(&|c| c.target.chars().count(), "TARGET", 24);
    let exec_w = widest(&|c| c.exec.chars().count(), "EXECUTION", exec_max);
    let conns_w = widest(&|c| c.conns.len(), "CONN", 6);
    let bytes_w = widest(&|c| c.bytes.len(), "UP / DOWN", 24);
    let width = usize::from(area.width);
    // DIR, LOCAL and TARGET always; the others while STATUS keeps room.
    let fixed = 3 + 1 + local_w + 1 + target_w + 1;
    let mut optional = [exec_w + 1, conns_w + 1, bytes_w + 1];
    let mut shown = 3;
    while shown > 0 && fixed + optional[..shown].iter().sum::<usize>() + STATUS_MIN > width {
        shown -= 1;
        optional[shown] = 0;
    }
    let status_w = width.saturating_sub(fixed + optional.iter().sum::<usize>());
    let line = |dir: &str, c: [&str; 6]| -> String {
        let mut out = format!(
            "{dir:<3} {:<local_w$} {:<target_w$} ",
            fit(c[0], local_w),
            fit(c[1], target_w)
        );
        if shown > 0 {
            out.push_str(&format!("{:<exec_w$} ", fit(c[2], exec_w)));
        }
        if shown > 1 {
            out.push_str(&format!("{:>conns_w$} ", fit(c[3], conns_w)));
        }
        if shown > 2 {
            out.push_str(&format!("{:<bytes_w$} ", fit(c[4], bytes_w)));
        }
        out
    };
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "{}{}",
            line(
                "DIR",
                ["LOCAL", "TARGET", "EXECUTION", "CONN", "UP / DOWN", ""]
            ),
            "STATUS"
        ),
        Style::new().add_modifier(Modifier::BOLD),
    ))];
    for (i, (t, c)) in tunnels.iter().zip(&rows).enumerate() {
        let base = if i == selected && focused {
            Style::new().bg(Color::Blue).fg(Color::White)
        } else {
            Style::new()
        };
        let status_style = if i == selected && focused {
            base
        } else {
            base.fg(c.color)
        };
        let head = line(
            t.dir(),
            [&c.local, &c.target, &c.exec, &c.conns, &c.bytes, ""],
        );
        lines.push(Line::from(vec![
            Span::styled(head, base),
            Span::styled(
                format!("{:<status_w$}", fit(&c.status, status_w)),
                status_style,
            ),
        ]));
    }
    // The selected tunnel's state in full, when its cell cut it.
    if let Some(c) = rows
        .get(selected)
        .filter(|c| c.status.chars().count() > status_w)
    {
        let room = usize::from(area.height).saturating_sub(lines.len() + 1);
        if room > 0 {
            lines.push(Line::raw(""));
            lines.push(Line::from(Span::styled(
                c.status.clone(),
                Style::new().fg(Color::DarkGray),
            )));
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}
