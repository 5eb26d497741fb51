//! The key help: every key and what it does.

use ratatui::layout::Constraint;
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Clear, Row, Table};
use ratatui::Frame;

use super::centered;

/// Each key and what it does, in the order the help lists them.
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

/// Draws the key help.
pub fn draw(frame: &mut Frame<'_>) {
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
