//! The executions in the list: their rows, their SSH state, and the
//! notices panes show about them.

use std::time::Duration;

use crate::source::scanner::{Endpoint, Linger};
use crate::source::Execution;
use crate::tui::keys::{KeyAction, Keymap};

/// An execution in the list.
#[derive(Debug, Clone)]
pub struct ExecRow {
    /// Which source it comes from (index into [`App::sources`](super::app::App::sources)).
    pub source: usize,
    /// The execution.
    pub exec: Execution,
    /// Its SSH announcement, once seen.
    pub endpoint: Option<Endpoint>,
    /// What its agent said of its linger, once the command has ended.
    pub linger: Option<Linger>,
}

impl ExecRow {
    /// `#12 title`.
    pub fn label(&self) -> String {
        let label = self.exec.label();
        if label.is_empty() {
            format!("#{}", self.exec.counter)
        } else {
            format!("#{} {}", self.exec.counter, label)
        }
    }
}

/// SSH state shown in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshState {
    /// No announcement yet.
    Waiting,
    /// Announced: shells and tunnels can open.
    Ready,
    /// A shell or tunnel is open.
    Connected,
    /// The command has ended; the agent serves this much longer.
    Lingering(Duration),
    /// The execution has ended, or its agent has stopped: nothing to
    /// connect to.
    Gone,
}

impl SshState {
    /// As the list shows it: `waiting`, `ready`, `connected`,
    /// `lingering 9m`, `gone`.
    pub fn text(&self) -> String {
        match self {
            SshState::Waiting => "waiting".into(),
            SshState::Ready => "ready".into(),
            SshState::Connected => "connected".into(),
            SshState::Lingering(left) => format!("lingering {}", short_duration(*left)),
            SshState::Gone => "gone".into(),
        }
    }
}

/// `45s`, `9m`, `119m`, `5h`, `3d`, as kubectl counts: whole units, the
/// smaller one kept while the larger would say too little.
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=7_199 => format!("{}m", secs / 60),
        7_200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// `execution #7 ended: error (exit code 2)`, or what the agent said.
pub(crate) fn ended_notice(exec: &Execution, linger: Option<Linger>) -> String {
    if !exec.status().is_finished() && linger.is_some() {
        return format!(
            "execution #{}: the command has ended and its SSH server has stopped (linger over)",
            exec.counter
        );
    }
    match exec.status_detail.as_deref().filter(|d| !d.is_empty()) {
        Some(detail) => format!(
            "execution #{} ended: {} ({detail})",
            exec.counter, exec.status
        ),
        None => format!("execution #{} ended: {}", exec.counter, exec.status),
    }
}

/// Why nothing can connect: `#3 is complete; its SSH server has gone`.
pub(crate) fn gone_text(row: &ExecRow) -> String {
    if row.exec.status().is_finished() {
        format!(
            "#{} is {}; its SSH server has gone",
            row.exec.counter, row.exec.status
        )
    } else {
        format!(
            "#{}: the command has ended and its SSH server has stopped (linger over)",
            row.exec.counter
        )
    }
}

/// What a log pane says once its execution has announced SSH, with the
/// keys (as bound) that use it.
pub(crate) fn ready_notice(ep: &Endpoint, keymap: &Keymap) -> String {
    let keys: Vec<String> = [
        (KeyAction::Shell, "shell"),
        (KeyAction::Command, "command"),
        (KeyAction::Tunnel, "tunnel"),
        (KeyAction::Copy, "copy ssh command"),
    ]
    .into_iter()
    .filter_map(|(a, what)| keymap.key_for(a).map(|k| format!("{k} {what}")))
    .collect();
    if keys.is_empty() {
        format!("SSH ready at {}:{}", ep.host, ep.port)
    } else {
        format!(
            "SSH ready at {}:{} — {}",
            ep.host,
            ep.port,
            keys.join(" · ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_count_whole_units() {
        let d = |s: u64| short_duration(Duration::from_secs(s));
        assert_eq!(d(0), "0s");
        assert_eq!(d(59), "59s");
        assert_eq!(d(60), "1m");
        assert_eq!(d(3599), "59m");
        assert_eq!(d(3600), "60m");
        assert_eq!(d(7199), "119m");
        assert_eq!(d(7200), "2h");
        assert_eq!(d(172_799), "47h");
        assert_eq!(d(172_800), "2d");
        assert_eq!(d(3583 * 86_400), "3583d");
    }
}
