//! "Sessions are open, quit anyway?"

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::{centered, PopupAction};

/// `y` quits; any other key stays.
pub fn on_key(key: &KeyEvent) -> PopupAction {
    if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
        PopupAction::Quit
    } else {
        PopupAction::Close
    }
}

/// Draws the question with what quitting would close.
pub fn draw(frame: &mut Frame<'_>, shells: usize, tunnels: usize) {
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
