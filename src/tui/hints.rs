//! Key hints: each names the actions it is about (their keys come from the
//! active keymap, so a remapped key is shown as bound) or a fixed key, and
//! has a priority. The key bar drops the least important hints first when
//! it is narrow; [`KEEP`] hints always stay.

use ratatui::style::{Color, Style};
use ratatui::text::Span;

use super::keys::{KeyAction, Keymap};

/// The priority of a hint that is never dropped (`? help`, the quit key).
pub const KEEP: u8 = u8::MAX;

/// Between two hints.
pub const SEP: &str = " · ";

/// Which keys a hint names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintKeys {
    /// The first key bound to each action, joined by `/` (`j/k`); the
    /// hint is left out when none is bound.
    Bound(&'static [KeyAction]),
    /// A key that is not in the keymap (`Esc` in a prompt).
    Fixed(&'static str),
    /// The actions' keys, then a fixed key (`T/Esc`).
    BoundThen(&'static [KeyAction], &'static str),
}

/// One entry of the key bar: `ctrl-q quit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    /// The keys.
    pub keys: HintKeys,
    /// What they do.
    pub label: &'static str,
    /// Higher stays longer when the bar is narrow.
    pub priority: u8,
}

impl Hint {
    /// A hint about keymap actions.
    pub const fn new(actions: &'static [KeyAction], label: &'static str, priority: u8) -> Self {
        Hint {
            keys: HintKeys::Bound(actions),
            label,
            priority,
        }
    }

    /// A hint about a key outside the keymap.
    pub const fn fixed(key: &'static str, label: &'static str, priority: u8) -> Self {
        Hint {
            keys: HintKeys::Fixed(key),
            label,
            priority,
        }
    }

    /// A hint about keymap actions and a fixed key doing the same.
    pub const fn then(
        actions: &'static [KeyAction],
        key: &'static str,
        label: &'static str,
        priority: u8,
    ) -> Self {
        Hint {
            keys: HintKeys::BoundThen(actions, key),
            label,
            priority,
        }
    }

    /// The keys as shown, or `None` when none is bound.
    pub fn key_text(&self, keymap: &Keymap) -> Option<String> {
        match self.keys {
            HintKeys::Fixed(k) => Some(k.to_string()),
            HintKeys::Bound(actions) => {
                let keys: Vec<String> = actions.iter().filter_map(|a| keymap.key_for(*a)).collect();
                (!keys.is_empty()).then(|| keys.join("/"))
            }
            HintKeys::BoundThen(actions, key) => {
                let mut keys: Vec<String> =
                    actions.iter().filter_map(|a| keymap.key_for(*a)).collect();
                keys.push(key.to_string());
                Some(keys.join("/"))
            }
        }
    }
}

/// `? help`: in every key bar outside a popup and interaction mode.
pub const HELP: Hint = Hint::new(&[KeyAction::Help], "help", KEEP);
/// The quit key: in every key bar outside a popup and interaction mode.
pub const QUIT: Hint = Hint::new(&[KeyAction::Quit], "quit", KEEP);

/// `F or End follows`: the keys bound to `action` joined by ` or `,
/// then `what`; `None` when nothing is bound to it.
pub fn keys_then(keymap: &Keymap, action: KeyAction, what: &str) -> Option<String> {
    let keys = keymap.keys_for(action);
    (!keys.is_empty()).then(|| format!("{} {what}", keys.join(" or ")))
}

/// Columns a text takes on screen.
pub fn width(text: &str) -> usize {
    Span::raw(text).width()
}

/// The hints as shown, `(keys, label)`, the least important dropped until
/// they fit in `room` columns (the [`KEEP`] ones stay even when they do
/// not); unbound ones are left out.
pub fn fit(hints: &[Hint], keymap: &Keymap, room: usize) -> Vec<(String, &'static str)> {
    let mut shown: Vec<(String, &'static str, u8)> = hints
        .iter()
        .filter_map(|h| h.key_text(keymap).map(|k| (k, h.label, h.priority)))
        .collect();
    while total_width(&shown) > room {
        // The least important goes first; among equals, the last.
        let Some(drop) = shown
            .iter()
            .enumerate()
            .filter(|(_, h)| h.2 != KEEP)
            .min_by_key(|(i, h)| (h.2, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
        else {
            break;
        };
        shown.remove(drop);
    }
    shown.into_iter().map(|(k, l, _)| (k, l)).collect()
}

fn total_width(shown: &[(String, &str, u8)]) -> usize {
    let items: usize = shown.iter().map(|(k, l, _)| width(k) + 1 + width(l)).sum();
    items + width(SEP) * shown.len().saturating_sub(1)
}

/// Columns the [`KEEP`] hints take together.
pub fn kept_width(hints: &[Hint], keymap: &Keymap) -> usize {
    let kept: Vec<Hint> = hints
        .iter()
        .filter(|h| h.priority == KEEP)
        .copied()
        .collect();
    let shown = fit(&kept, keymap, usize::MAX);
    let items: usize = shown.iter().map(|(k, l)| width(k) + 1 + width(l)).sum();
    items + width(SEP) * shown.len().saturating_sub(1)
}

/// The fitted hints as spans: the keys brighter than what they do.
pub fn spans(shown: &[(String, &'static str)]) -> Vec<Span<'static>> {
    let key = Style::new().fg(Color::Gray);
    let dim = Style::new().fg(Color::DarkGray);
    let mut out = Vec::new();
    for (i, (k, l)) in shown.iter().enumerate() {
        if i > 0 {
            out.push(Span::styled(SEP, dim));
        }
        out.push(Span::styled(k.clone(), key));
        out.push(Span::styled(format!(" {l}"), dim));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAR: &[Hint] = &[
        Hint::new(&[KeyAction::Down, KeyAction::Up], "move", 3),
        Hint::new(&[KeyAction::Open], "log", 9),
        Hint::new(&[KeyAction::Copy], "copy ssh", 2),
        HELP,
        QUIT,
    ];

    #[test]
    fn narrow_bars_drop_the_least_important_first() {
        let keymap = Keymap::default();
        let all = fit(BAR, &keymap, 200);
        assert_eq!(
            all,
            vec![
                ("j/k".to_string(), "move"),
                ("Enter".to_string(), "log"),
                ("y".to_string(), "copy ssh"),
                ("?".to_string(), "help"),
                ("q".to_string(), "quit"),
            ]
        );
        let narrow: Vec<&str> = fit(BAR, &keymap, 30).iter().map(|h| h.1).collect();
        assert_eq!(narrow, vec!["log", "help", "quit"]);
        let tiny: Vec<&str> = fit(BAR, &keymap, 3).iter().map(|h| h.1).collect();
        assert_eq!(tiny, vec!["help", "quit"]);
        assert_eq!(kept_width(BAR, &keymap), "? help · q quit".chars().count());
    }
}
