//! Every tunnel of every execution, as a table: what each connects, its
//! counters and its state.

use std::sync::atomic::Ordering;

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

    fn hints(&self) -> &'static str {
        "j/k select · x stop tunnel · t new tunnel · Tab focus · ? help"
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

/// Each tunnel takes two lines: what it connects and its counters, then
/// its state in full (a failure names its cause, e.g. the port in use).
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
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "{:<16} {:<16} {:<12} {:>4}  {}",
            "LOCAL", "TARGET", "EXECUTION", "CONN", "UP / DOWN"
        ),
        Style::new().add_modifier(Modifier::BOLD),
    ))];
    for (i, t) in tunnels.iter().enumerate() {
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
