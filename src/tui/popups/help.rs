//! The key help: every key and what it does.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Constraint;
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Clear, Row, Table};
use ratatui::Frame;

use super::centered;
use crate::tui::keys::{KeyAction, Keymap};

/// Each key (as bound in `keymap`) and what it does, in the order the
/// help lists them; an action with no key is left out.
pub fn rows(keymap: &Keymap) -> Vec<(String, String)> {
    use KeyAction as A;
    let key = |a: A| keymap.key_for(a).unwrap_or_else(|| "(unbound)".into());
    let rows: Vec<(&[A], String)> = vec![
        (&[A::Down, A::Up], "move in the list, scroll a pane".into()),
        (&[A::PageDown, A::PageUp], "a page down / up".into()),
        (&[A::Open], "open the selected execution's log".into()),
        (&[A::Shell], "shell pane (opens in interaction mode)".into()),
        (
            &[A::Command],
            "command pane: prompt prefilled with `ps aux`, ↑/↓ history".into(),
        ),
        (
            &[A::Tunnel, A::Tunnels],
            "new tunnel (F1.. pick a listening port) / tunnels table".into(),
        ),
        (
            &[A::Leave],
            format!(
                "leave interaction mode ({} or {} re-enters)",
                key(A::Open),
                key(A::Interact)
            ),
        ),
        (
            &[A::FocusNext, A::FocusPrev],
            "focus the next / previous of the list and panes".into(),
        ),
        (
            &[A::FocusLeft, A::FocusRight, A::FocusUp, A::FocusDown],
            "focus the pane that way".into(),
        ),
        (
            &[A::SplitSide, A::SplitStack],
            "next pane side by side / stacked".into(),
        ),
        (
            &[A::Zoom, A::Close],
            "zoom the focused pane / close it (tunnels table: stop a tunnel)".into(),
        ),
        (
            &[A::Follow],
            format!(
                "follow a log or command output again;  {} searches it",
                key(A::Filter)
            ),
        ),
        (&[A::Rerun], "re-run a command pane's command".into()),
        (
            &[A::Linger],
            "keep the SSH server after the command: `extend 1h` / `release`".into(),
        ),
        (
            &[A::Copy],
            "copy the equivalent ssh command (OSC 52)".into(),
        ),
        (
            &[A::Filter],
            "filter executions (Esc in the list clears it)".into(),
        ),
        (&[A::Help], "this help".into()),
        (
            &[A::Quit],
            "quit (asks when shells or tunnels are open)".into(),
        ),
    ];
    let mut out: Vec<(String, String)> = rows
        .into_iter()
        .filter_map(|(actions, text)| keys_text(keymap, actions).map(|k| (k, text)))
        .collect();
    if keymap.is_ctrl_c(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)) {
        out.push((
            "ctrl-c".into(),
            "quits too, outside interaction mode (asks the same)".into(),
        ));
    }
    out
}

/// The keys of `actions` as the help shows them: the first key of each
/// joined by `/`, then the second keys (`j/k, ↓/↑`); a modifier repeated
/// from the key before is not repeated (`alt-←/→/↑/↓`).
fn keys_text(keymap: &Keymap, actions: &[KeyAction]) -> Option<String> {
    let keys: Vec<Vec<String>> = actions.iter().map(|a| keymap.keys_for(*a)).collect();
    let depth = keys.iter().map(Vec::len).max().unwrap_or(0);
    let columns: Vec<String> = (0..depth)
        .map(|i| {
            let mut out: Vec<String> = Vec::new();
            let mut previous = "";
            for k in keys.iter().filter_map(|ks| ks.get(i)) {
                let prefix = modifiers(k);
                if !prefix.is_empty() && prefix == previous {
                    out.push(k[prefix.len()..].to_string());
                } else {
                    out.push(k.clone());
                }
                previous = prefix;
            }
            out.join("/")
        })
        .collect();
    (!columns.is_empty()).then(|| columns.join(", "))
}

/// The `ctrl-alt-` part of a key's name.
fn modifiers(key: &str) -> &str {
    let mut end = 0;
    for m in ["ctrl-", "alt-"] {
        if key[end..].starts_with(m) && key.len() > end + m.len() {
            end += m.len();
        }
    }
    &key[..end]
}

/// Draws the key help.
pub fn draw(frame: &mut Frame<'_>, keymap: &Keymap) {
    let help = rows(keymap);
    let key_width = help
        .iter()
        .map(|(k, _)| Span::raw(k.as_str()).width())
        .max()
        .unwrap_or(0)
        .clamp(10, 24) as u16;
    let area = centered(frame.area(), 80, help.len() as u16 + 2);
    frame.render_widget(Clear, area);
    let rows: Vec<Row> = help
        .into_iter()
        .map(|(k, v)| {
            Row::new(vec![
                Cell::from(Span::styled(k, Style::new().fg(Color::Cyan))),
                Cell::from(v),
            ])
        })
        .collect();
    let table = Table::new(rows, [Constraint::Length(key_width), Constraint::Min(10)]).block(
        Block::bordered()
            .border_style(Style::new().fg(Color::Cyan))
            .title(" porthole keys · any key closes "),
    );
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use crate::tui::keys::KeyList;

    #[test]
    fn the_help_names_the_keys_as_bound() {
        let keymap = Keymap::default();
        let help = rows(&keymap);
        let key_of = |text: &str, help: &[(String, String)]| {
            help.iter()
                .find(|(_, t)| t.starts_with(text))
                .map(|(k, _)| k.clone())
        };
        assert_eq!(key_of("move", &help).as_deref(), Some("j/k, ↓/↑"));
        assert_eq!(
            key_of("focus the pane", &help).as_deref(),
            Some("alt-←/→/↑/↓")
        );
        assert_eq!(key_of("quit", &help).as_deref(), Some("q"));
        assert_eq!(key_of("follow", &help).as_deref(), Some("End, F"));
        let overrides: HashMap<KeyAction, KeyList> =
            toml::from_str("quit = \"ctrl-q\"\ncopy = []").expect("toml");
        let keymap = Keymap::with_overrides(&overrides).expect("valid");
        let help = rows(&keymap);
        assert_eq!(key_of("quit", &help).as_deref(), Some("ctrl-q"));
        assert_eq!(key_of("copy", &help), None);
    }
}
