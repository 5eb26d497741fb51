//! Drawing helpers the list, the panes and the popups share.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType};

use crate::source::Stream;

/// A pane's border: thick and coloured when focused, green while keys go
/// to its shell.
pub fn block(title: String, focused: bool, interacting: bool) -> Block<'static> {
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

/// How a line of each stream looks: stderr red, status cyan and italic.
pub fn stream_style(stream: &Stream) -> Style {
    match stream {
        Stream::Stderr => Style::new().fg(Color::LightRed),
        Stream::Status => Style::new().fg(Color::Cyan).add_modifier(Modifier::ITALIC),
        _ => Style::new(),
    }
}

/// `text` in `base` style with every `term` in it highlighted.
pub fn highlight(text: &str, term: &str, base: Style) -> Line<'static> {
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
