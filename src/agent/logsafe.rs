//! Client-supplied text on its way to the agent's stderr, which is the
//! training job's log: escaped, so a client cannot write terminal escapes
//! or fake lines into it, and cut, so it cannot flood it.

use std::fmt;

/// The most characters of one client-supplied string that reach the log.
pub const MAX_CHARS: usize = 80;

/// Shows `text` escaped (control and invisible characters, and
/// backslashes, as Rust escapes) and cut after [`MAX_CHARS`] characters, saying how long
/// it really was.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_CHARS) {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() || is_invisible(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => write!(f, "{c}")?,
            }
        }
        if chars.next().is_some() {
            write!(f, "… ({} bytes in all)", self.0.len())?;
        }
        Ok(())
    }
}

/// Characters that change how the rest of a line reads without showing:
/// bidirectional overrides and zero-width marks.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let shown = Untrusted("evil\n\x1b[31mporthole-agent: fake\r").to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(
            shown.contains("\\n") && shown.contains("\\u{1b}"),
            "{shown:?}"
        );
    }

    #[test]
    fn long_text_is_cut_and_its_length_said() {
        let long = "a".repeat(5000);
        let shown = Untrusted(&long).to_string();
        assert!(
            shown.chars().count() < MAX_CHARS + 40,
            "{} chars",
            shown.len()
        );
        assert!(shown.ends_with("(5000 bytes in all)"), "{shown}");
    }

    #[test]
    fn bidi_overrides_are_shown_as_code_points() {
        let shown = Untrusted("a\u{202e}b").to_string();
        assert_eq!(shown, "a\\u{202e}b");
    }

    #[test]
    fn ordinary_names_pass_unchanged() {
        assert_eq!(Untrusted("localhost").to_string(), "localhost");
        assert_eq!(Untrusted("héllo-1.example").to_string(), "héllo-1.example");
    }
}
