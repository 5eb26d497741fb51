//! Questions asked on the controlling terminal, never on stdin (which may
//! carry data) and never echoed for secrets.

use std::io::{BufRead as _, BufReader, Write as _};
use std::sync::Arc;

use crate::ssh::identity::AskSecret;
use crate::ssh::trust::Ask;

/// A yes/no question on /dev/tty; `None` when there is no terminal.
pub fn terminal_ask() -> Ask {
    Arc::new(|question: &str| {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let mut out = tty.try_clone().ok()?;
        write!(out, "{question} [y/N] ").ok()?;
        out.flush().ok()?;
        let mut answer = String::new();
        BufReader::new(tty).read_line(&mut answer).ok()?;
        let answer = answer.trim().to_ascii_lowercase();
        Some(answer == "y" || answer == "yes")
    })
}

/// A passphrase prompt on /dev/tty without echo; `None` without a terminal.
pub fn terminal_secret() -> AskSecret {
    Arc::new(|prompt: &str| rpassword::prompt_password(prompt).ok())
}
