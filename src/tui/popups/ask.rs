//! A task's yes/no question (trust this host key?).

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, PopupAction};
use crate::tui::action::Question;

/// `y` says yes, any other key no; either way the popup closes.
pub fn on_key(question: &Question, key: &KeyEvent) -> PopupAction {
    let yes = matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y'));
    // The asking task may have given up waiting: nothing to do then.
    let _ = question.reply.send(yes);
    PopupAction::Close
}

/// Draws the question and how to answer it.
pub fn draw(frame: &mut Frame<'_>, text: &str) {
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
