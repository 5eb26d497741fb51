//! Keys: the configurable keymap of the console, and the encoding of key
//! presses into the bytes a remote terminal expects.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

/// What a key does outside interaction mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    /// Move up in the list, or scroll up.
    Up,
    /// Move down in the list, or scroll down.
    Down,
    /// Open the selected execution's log.
    Open,
    /// Shell pane.
    Shell,
    /// Command pane.
    Command,
    /// New tunnel.
    Tunnel,
    /// Tunnels list.
    Tunnels,
    /// Extend or release the agent's linger.
    Linger,
    /// Leave interaction mode.
    Leave,
    /// Focus the next pane.
    FocusNext,
    /// Focus the previous pane.
    FocusPrev,
    /// Focus left.
    FocusLeft,
    /// Focus right.
    FocusRight,
    /// Focus up.
    FocusUp,
    /// Focus down.
    FocusDown,
    /// Next pane goes side by side.
    SplitSide,
    /// Next pane goes below.
    SplitStack,
    /// Zoom the focused pane.
    Zoom,
    /// Close the focused pane (or stop the selected tunnel).
    Close,
    /// Copy the equivalent ssh command.
    Copy,
    /// Filter executions / search a log.
    Filter,
    /// Help overlay.
    Help,
    /// Quit.
    Quit,
    /// Resume following a log.
    Follow,
    /// Re-run a command pane's command.
    Rerun,
    /// Enter interaction mode on a shell pane.
    Interact,
    /// Scroll a page up.
    PageUp,
    /// Scroll a page down.
    PageDown,
}

/// A key as written in the config: `q`, `T`, `ctrl-]`, `alt-left`, `enter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeySpec {
    code: KeyCode,
    mods: KeyModifiers,
}

impl KeySpec {
    /// Parses a key name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s.trim();
        loop {
            let lower = rest.to_ascii_lowercase();
            if let Some(r) = lower
                .strip_prefix("ctrl-")
                .or_else(|| lower.strip_prefix("c-"))
            {
                mods |= KeyModifiers::CONTROL;
                rest = &rest[rest.len() - r.len()..];
            } else if let Some(r) = lower
                .strip_prefix("alt-")
                .or_else(|| lower.strip_prefix("m-"))
            {
                mods |= KeyModifiers::ALT;
                rest = &rest[rest.len() - r.len()..];
            } else {
                break;
            }
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "esc" | "escape" => KeyCode::Esc,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            "space" => KeyCode::Char(' '),
            f if f.len() > 1 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().map_err(|_| format!("bad key `{s}`"))?)
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => {
                        return Err(format!(
                            "unknown key `{s}` (e.g. `q`, `ctrl-]`, `alt-left`, `enter`, `f1`)"
                        ))
                    }
                }
            }
        };
        Ok(KeySpec { code, mods })
    }

    fn of(event: &KeyEvent) -> Self {
        // Shift is part of the character for letters and symbols.
        let mut mods = event.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
        if matches!(event.code, KeyCode::Char(_)) {
            mods &= !KeyModifiers::SHIFT;
        }
        KeySpec {
            code: event.code,
            mods,
        }
    }

    /// The key's name as the console shows it: `q`, `ctrl-q`, `Enter`,
    /// `alt-←`, `shift-Tab`.
    pub fn display(&self) -> String {
        let mut out = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            out.push_str("ctrl-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            out.push_str("alt-");
        }
        let name = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "shift-Tab".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Backspace => "Backspace".into(),
            KeyCode::Delete => "Delete".into(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        out.push_str(&name);
        out
    }
}

/// Key bindings; defaults as in the design, overridable from the config.
#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: HashMap<KeySpec, KeyAction>,
    /// The bound keys in the order they were given (defaults first), so
    /// that hints name the first key of an action.
    order: Vec<KeySpec>,
    leave: KeySpec,
}

const DEFAULTS: &[(&str, KeyAction)] = &[
    ("j", KeyAction::Down),
    ("down", KeyAction::Down),
    ("k", KeyAction::Up),
    ("up", KeyAction::Up),
    ("enter", KeyAction::Open),
    ("s", KeyAction::Shell),
    ("c", KeyAction::Command),
    ("t", KeyAction::Tunnel),
    ("T", KeyAction::Tunnels),
    ("L", KeyAction::Linger),
    ("ctrl-]", KeyAction::Leave),
    ("tab", KeyAction::FocusNext),
    ("backtab", KeyAction::FocusPrev),
    ("alt-left", KeyAction::FocusLeft),
    ("alt-right", KeyAction::FocusRight),
    ("alt-up", KeyAction::FocusUp),
    ("alt-down", KeyAction::FocusDown),
    ("|", KeyAction::SplitSide),
    ("-", KeyAction::SplitStack),
    ("z", KeyAction::Zoom),
    ("x", KeyAction::Close),
    ("y", KeyAction::Copy),
    ("/", KeyAction::Filter),
    ("?", KeyAction::Help),
    ("q", KeyAction::Quit),
    ("end", KeyAction::Follow),
    ("F", KeyAction::Follow),
    ("r", KeyAction::Rerun),
    ("i", KeyAction::Interact),
    ("pageup", KeyAction::PageUp),
    ("pagedown", KeyAction::PageDown),
];

impl Default for Keymap {
    fn default() -> Self {
        let mut map = Keymap {
            bindings: HashMap::new(),
            order: Vec::new(),
            leave: KeySpec {
                code: KeyCode::Char(']'),
                mods: KeyModifiers::CONTROL,
            },
        };
        for (key, action) in DEFAULTS {
            if let Ok(spec) = KeySpec::parse(key) {
                map.bind(spec, *action);
            }
        }
        map
    }
}

impl Keymap {
    /// Applies `[keys]` overrides: `action = "key"` or `action = ["k1", "k2"]`.
    /// A rebound action loses its default keys.
    pub fn with_overrides(overrides: &HashMap<KeyAction, KeyList>) -> Result<Self, String> {
        let mut map = Keymap::default();
        for (action, keys) in overrides {
            map.bindings.retain(|_, a| a != action);
            for key in keys.as_slice() {
                let spec = KeySpec::parse(key)?;
                map.bind(spec, *action);
                if *action == KeyAction::Leave {
                    map.leave = spec;
                }
            }
        }
        let bindings = &map.bindings;
        map.order.retain(|k| bindings.contains_key(k));
        Ok(map)
    }

    fn bind(&mut self, spec: KeySpec, action: KeyAction) {
        self.order.retain(|k| *k != spec);
        self.order.push(spec);
        self.bindings.insert(spec, action);
    }

    /// The names of the keys bound to `action`, first given first (the
    /// key that leaves interaction mode first for [`KeyAction::Leave`]).
    pub fn keys_for(&self, action: KeyAction) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        if action == KeyAction::Leave {
            keys.push(self.leave.display());
        }
        for spec in &self.order {
            if self.bindings.get(spec) == Some(&action) {
                let name = spec.display();
                if !keys.contains(&name) {
                    keys.push(name);
                }
            }
        }
        keys
    }

    /// The name of the first key bound to `action`, as hints show it;
    /// `None` when nothing is bound to it.
    pub fn key_for(&self, action: KeyAction) -> Option<String> {
        self.keys_for(action).into_iter().next()
    }

    /// Whether `event` is `Ctrl-C` and nothing else is bound to it: it
    /// quits (with the same confirmation as the quit key) outside a shell.
    pub fn is_ctrl_c(&self, event: &KeyEvent) -> bool {
        let spec = KeySpec::of(event);
        spec == KeySpec {
            code: KeyCode::Char('c'),
            mods: KeyModifiers::CONTROL,
        } && !self.bindings.contains_key(&spec)
    }

    /// The action bound to a key press.
    pub fn action(&self, event: &KeyEvent) -> Option<KeyAction> {
        self.bindings.get(&KeySpec::of(event)).copied()
    }

    /// Whether this key leaves interaction mode.
    pub fn is_leave(&self, event: &KeyEvent) -> bool {
        KeySpec::of(event) == self.leave
            // Terminals report Ctrl-] as Ctrl-5 or as the raw GS byte.
            || (self.leave.code == KeyCode::Char(']')
                && event.modifiers.contains(KeyModifiers::CONTROL)
                && matches!(event.code, KeyCode::Char('5') | KeyCode::Char('\u{1d}')))
    }
}

/// One key or several in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeyList {
    /// `"q"`.
    One(String),
    /// `["q", "ctrl-c"]`.
    Many(Vec<String>),
}

impl KeyList {
    fn as_slice(&self) -> Vec<&str> {
        match self {
            KeyList::One(k) => vec![k.as_str()],
            KeyList::Many(ks) => ks.iter().map(String::as_str).collect(),
        }
    }
}

/// Encodes a key press as the bytes an xterm sends, honouring the remote
/// application's cursor-key mode.
pub fn encode(event: &KeyEvent, application_cursor: bool) -> Vec<u8> {
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    let alt = event.modifiers.contains(KeyModifiers::ALT);
    let arrow = |c: u8| {
        if application_cursor {
            vec![0x1b, b'O', c]
        } else {
            vec![0x1b, b'[', c]
        }
    };
    let mut out = match event.code {
        KeyCode::Char(c) if ctrl => match c {
            'a'..='z' => vec![c as u8 - b'a' + 1],
            'A'..='Z' => vec![c as u8 - b'A' + 1],
            '@' | ' ' | '2' => vec![0],
            '[' | '3' => vec![0x1b],
            '\\' | '4' => vec![0x1c],
            ']' | '5' => vec![0x1d],
            '^' | '6' => vec![0x1e],
            '_' | '7' | '/' => vec![0x1f],
            '8' | '?' => vec![0x7f],
            other => other.to_string().into_bytes(),
        },
        KeyCode::Char(c) => c.to_string().into_bytes(),
        KeyCode::Enter => vec![b'\r'],
        KeyCode::Tab => vec![b'\t'],
        KeyCode::BackTab => b"\x1b[Z".to_vec(),
        KeyCode::Backspace => vec![0x7f],
        KeyCode::Esc => vec![0x1b],
        KeyCode::Up => arrow(b'A'),
        KeyCode::Down => arrow(b'B'),
        KeyCode::Right => arrow(b'C'),
        KeyCode::Left => arrow(b'D'),
        KeyCode::Home => arrow(b'H'),
        KeyCode::End => arrow(b'F'),
        KeyCode::Insert => b"\x1b[2~".to_vec(),
        KeyCode::Delete => b"\x1b[3~".to_vec(),
        KeyCode::PageUp => b"\x1b[5~".to_vec(),
        KeyCode::PageDown => b"\x1b[6~".to_vec(),
        KeyCode::F(n) => match n {
            1 => b"\x1bOP".to_vec(),
            2 => b"\x1bOQ".to_vec(),
            3 => b"\x1bOR".to_vec(),
            4 => b"\x1bOS".to_vec(),
            5 => b"\x1b[15~".to_vec(),
            6 => b"\x1b[17~".to_vec(),
            7 => b"\x1b[18~".to_vec(),
            8 => b"\x1b[19~".to_vec(),
            9 => b"\x1b[20~".to_vec(),
            10 => b"\x1b[21~".to_vec(),
            11 => b"\x1b[23~".to_vec(),
            12 => b"\x1b[24~".to_vec(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if alt && !out.is_empty() {
        out.insert(0, 0x1b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn defaults_follow_the_design() {
        let m = Keymap::default();
        assert_eq!(
            m.action(&key(KeyCode::Char('s'), KeyModifiers::NONE)),
            Some(KeyAction::Shell)
        );
        assert_eq!(
            m.action(&key(KeyCode::Char('T'), KeyModifiers::SHIFT)),
            Some(KeyAction::Tunnels)
        );
        assert_eq!(
            m.action(&key(KeyCode::Left, KeyModifiers::ALT)),
            Some(KeyAction::FocusLeft)
        );
        assert!(m.is_leave(&key(KeyCode::Char(']'), KeyModifiers::CONTROL)));
        assert!(m.is_leave(&key(KeyCode::Char('5'), KeyModifiers::CONTROL)));
    }

    #[test]
    fn overrides_replace_defaults() {
        let overrides: HashMap<KeyAction, KeyList> =
            toml::from_str("quit = \"ctrl-q\"\nshell = [\"S\", \"alt-s\"]").expect("toml");
        let m = Keymap::with_overrides(&overrides).expect("valid");
        assert_eq!(m.action(&key(KeyCode::Char('q'), KeyModifiers::NONE)), None);
        assert_eq!(
            m.action(&key(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(KeyAction::Quit)
        );
        assert_eq!(
            m.action(&key(KeyCode::Char('s'), KeyModifiers::ALT)),
            Some(KeyAction::Shell)
        );
        assert!(KeySpec::parse("ctrl-").is_err());
        assert!(KeySpec::parse("hyper-x").is_err());
    }

    #[test]
    fn hints_name_the_bound_keys() {
        let m = Keymap::default();
        assert_eq!(m.key_for(KeyAction::Quit).as_deref(), Some("q"));
        assert_eq!(m.key_for(KeyAction::Down).as_deref(), Some("j"));
        assert_eq!(m.keys_for(KeyAction::Down), vec!["j", "↓"]);
        assert_eq!(m.key_for(KeyAction::Open).as_deref(), Some("Enter"));
        assert_eq!(m.key_for(KeyAction::Leave).as_deref(), Some("ctrl-]"));
        assert_eq!(m.key_for(KeyAction::FocusLeft).as_deref(), Some("alt-←"));
        let overrides: HashMap<KeyAction, KeyList> =
            toml::from_str("quit = \"ctrl-q\"\nshell = []\nleave = \"ctrl-b\"").expect("toml");
        let m = Keymap::with_overrides(&overrides).expect("valid");
        assert_eq!(m.key_for(KeyAction::Quit).as_deref(), Some("ctrl-q"));
        assert_eq!(m.key_for(KeyAction::Shell), None);
        assert_eq!(m.key_for(KeyAction::Leave).as_deref(), Some("ctrl-b"));
        assert!(m.is_ctrl_c(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        let overrides: HashMap<KeyAction, KeyList> =
            toml::from_str("copy = \"ctrl-c\"").expect("toml");
        let m = Keymap::with_overrides(&overrides).expect("valid");
        assert!(!m.is_ctrl_c(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    }

    #[test]
    fn keys_encode_like_xterm() {
        assert_eq!(
            encode(&key(KeyCode::Char('c'), KeyModifiers::CONTROL), false),
            vec![3]
        );
        assert_eq!(
            encode(&key(KeyCode::Up, KeyModifiers::NONE), false),
            b"\x1b[A"
        );
        assert_eq!(
            encode(&key(KeyCode::Up, KeyModifiers::NONE), true),
            b"\x1bOA"
        );
        assert_eq!(
            encode(&key(KeyCode::Char('x'), KeyModifiers::ALT), false),
            b"\x1bx"
        );
        assert_eq!(
            encode(&key(KeyCode::Enter, KeyModifiers::NONE), false),
            b"\r"
        );
        assert_eq!(
            encode(&key(KeyCode::Char('é'), KeyModifiers::NONE), false),
            "é".as_bytes()
        );
    }
}
