//! `porthole linger EXEC extend D | release`: the agent's linger over its
//! `porthole-linger@porthole` subsystem, said in the user's local time.

use chrono::{DateTime, Local};

use super::FAILURE;
use crate::agent::state::LingerRequest;
use crate::agent::status::LINGER_SUBSYSTEM;
use crate::ssh::{self, Session};

/// Sends `request` and prints what the agent answered; returns the exit
/// code.
pub async fn request(
    session: &Session,
    target: &str,
    request: LingerRequest,
) -> anyhow::Result<i32> {
    let label = if !target.is_empty() && target.bytes().all(|b| b.is_ascii_digit()) {
        format!("execution #{target}")
    } else {
        target.to_string()
    };
    match ask(session, &label, request).await? {
        Ok(line) => {
            println!("{line}");
            Ok(0)
        }
        Err(why) => {
            eprintln!("porthole: {why}");
            Ok(FAILURE)
        }
    }
}

/// Sends `request` to the agent behind `session`; the answer is one line
/// for the user, `Err` when the agent did not take the request.
pub async fn ask(
    session: &Session,
    label: &str,
    request: LingerRequest,
) -> anyhow::Result<Result<String, String>> {
    let line = match request {
        LingerRequest::Extend(d) => format!("extend {}s\n", d.as_secs()),
        LingerRequest::Release => "release\n".to_string(),
    };
    let (exit, out, err) = ssh::exec::subsystem(session, LINGER_SUBSYSTEM, line.as_bytes()).await?;
    if exit.code() != 0 {
        let why = String::from_utf8_lossy(&err);
        let why = why.trim();
        return Ok(Err(if why.is_empty() {
            format!(
                "{label} has no linger to change (its SSH server is not porthole-agent, \
                 or an older one)"
            )
        } else {
            why.trim_start_matches("porthole-agent: ").to_string()
        }));
    }
    let answer: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    Ok(Ok(describe(label, request, &answer["linger"])))
}

/// One line for the user, deadlines in local time.
fn describe(target: &str, request: LingerRequest, linger: &serde_json::Value) -> String {
    let deadline = linger["deadline"]
        .as_str()
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&Local));
    let left = linger["remaining_secs"].as_u64();
    match (request, deadline, left) {
        (LingerRequest::Release, _, _) => {
            format!("{target}: linger released; its SSH server stops when the command has ended")
        }
        (LingerRequest::Extend(_), Some(at), Some(left)) => format!(
            "{target}: SSH stays up until {} ({} left)",
            at.format("%Y-%m-%d %H:%M:%S %:z"),
            humantime::format_duration(std::time::Duration::from_secs(left))
        ),
        (LingerRequest::Extend(d), _, _) => format!(
            "{target}: the command is still running; SSH stays up at least {} after it ends",
            humantime::format_duration(d)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_extended_deadline_is_said_in_local_time_with_the_time_left() {
        let linger = serde_json::json!({
            "secs": 30, "deadline": "2026-12-01T12:00:00Z", "remaining_secs": 3600
        });
        let line = describe(
            "#5",
            LingerRequest::Extend(Duration::from_secs(3600)),
            &linger,
        );
        let local = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .expect("date")
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string();
        assert_eq!(line, format!("#5: SSH stays up until {local} (1h left)"));
    }

    #[test]
    fn before_the_command_ends_the_extension_is_counted_from_its_end() {
        let linger = serde_json::json!({ "secs": 3600, "deadline": null, "remaining_secs": null });
        let line = describe(
            "#5",
            LingerRequest::Extend(Duration::from_secs(3600)),
            &linger,
        );
        assert!(line.contains("at least 1h after it ends"), "{line}");
    }
}
