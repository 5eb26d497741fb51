//! The shapes of the Valohai REST subset (see the reference), shared by the
//! API client and the local control plane that serves the same API.
//! Unknown fields are ignored and optional ones may be missing.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// A paginated list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    /// Total number of items.
    #[serde(default)]
    pub count: u64,
    /// URL of the next page.
    #[serde(default)]
    pub next: Option<String>,
    /// URL of the previous page.
    #[serde(default)]
    pub previous: Option<String>,
    /// This page's items.
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
}

/// `users/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// User id (a number on Valohai).
    #[serde(default)]
    pub id: serde_json::Value,
    /// Login name.
    #[serde(default)]
    pub username: String,
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    /// UUID.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub ctime: Option<String>,
    /// API URL.
    #[serde(default)]
    pub url: Option<String>,
}

/// The project reference inside an execution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ProjectRef {
    /// `{"id": ..., "name": ...}`.
    Object {
        /// UUID.
        id: String,
        /// Name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Just the UUID.
    Id(String),
}

impl ProjectRef {
    /// The project's id.
    pub fn id(&self) -> &str {
        match self {
            ProjectRef::Object { id, .. } | ProjectRef::Id(id) => id,
        }
    }
}

/// Links of an execution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecutionUrls {
    /// Web page.
    #[serde(default)]
    pub display: Option<String>,
    /// Stop endpoint.
    #[serde(default)]
    pub stop: Option<String>,
}

/// An execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    /// UUID (or the local control plane's id).
    pub id: String,
    /// Per-project counter shown to users (`#12`).
    pub counter: u64,
    /// Raw status value; see [`Execution::status`].
    #[serde(default)]
    pub status: String,
    /// Human detail of the status.
    #[serde(default)]
    pub status_detail: Option<String>,
    /// Title, if the user gave one.
    #[serde(default)]
    pub title: Option<String>,
    /// Step name.
    #[serde(default)]
    pub step: Option<String>,
    /// Creation time (ISO 8601).
    #[serde(default)]
    pub ctime: Option<String>,
    /// Last modification time.
    #[serde(default)]
    pub mtime: Option<String>,
    /// End time, once finished.
    #[serde(default)]
    pub end_time: Option<String>,
    /// Duration in seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    /// API URL of itself.
    #[serde(default)]
    pub url: Option<String>,
    /// Other links.
    #[serde(default)]
    pub urls: Option<ExecutionUrls>,
    /// The project.
    #[serde(default)]
    pub project: Option<ProjectRef>,
    /// The command (a string or a list of strings).
    #[serde(default)]
    pub command: Option<serde_json::Value>,
}

/// Execution status, with unknown values kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Created, not queued yet.
    Created,
    /// Waiting for a machine.
    Queued,
    /// Running.
    Started,
    /// Being stopped.
    Stopping,
    /// Finished successfully.
    Complete,
    /// The command failed.
    Error,
    /// The platform failed.
    Crashed,
    /// Stopped by a user.
    Stopped,
    /// A status porthole does not know, on an execution that has an end
    /// time: it has ended, whatever the word (see [`Execution::status`]).
    Ended(String),
    /// Anything else the server says.
    Other(String),
}

impl Status {
    /// Parses a raw status value.
    pub fn parse(raw: &str) -> Self {
        match raw {
            "created" => Status::Created,
            "queued" => Status::Queued,
            "started" => Status::Started,
            "stopping" | "stopping_hard" => Status::Stopping,
            "complete" => Status::Complete,
            "error" => Status::Error,
            "crashed" => Status::Crashed,
            "stopped" => Status::Stopped,
            other => Status::Other(other.to_string()),
        }
    }

    /// The raw value.
    pub fn as_str(&self) -> &str {
        match self {
            Status::Created => "created",
            Status::Queued => "queued",
            Status::Started => "started",
            Status::Stopping => "stopping",
            Status::Complete => "complete",
            Status::Error => "error",
            Status::Crashed => "crashed",
            Status::Stopped => "stopped",
            Status::Ended(s) | Status::Other(s) => s,
        }
    }

    /// Whether the execution has ended.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            Status::Complete | Status::Error | Status::Crashed | Status::Stopped | Status::Ended(_)
        )
    }
}

impl Execution {
    /// The parsed status. A status porthole does not know counts as
    /// ended once the execution has an end time, so that a new final
    /// status of the platform's is not taken for a running one.
    pub fn status(&self) -> Status {
        match Status::parse(&self.status) {
            Status::Other(s) if self.end_time.as_deref().is_some_and(|t| !t.is_empty()) => {
                Status::Ended(s)
            }
            status => status,
        }
    }

    /// Title, else step, else the command, for lists.
    pub fn label(&self) -> String {
        if let Some(t) = self.title.as_deref().filter(|t| !t.is_empty()) {
            return t.to_string();
        }
        if let Some(s) = self.step.as_deref().filter(|s| !s.is_empty()) {
            return s.to_string();
        }
        match &self.command {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(parts)) => parts
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        }
    }
}

/// Which stream a log event came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Platform status messages.
    Status,
    /// Anything else.
    #[serde(other)]
    Other,
}

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogEvent {
    /// ISO 8601 time without zone, as Valohai sends it.
    #[serde(default)]
    pub time: String,
    /// The stream.
    pub stream: Stream,
    /// The text (a line, usually without its newline).
    #[serde(default)]
    pub message: String,
}

/// `executions/{id}/events/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsPage {
    /// How many events the log has.
    #[serde(default)]
    pub total: u64,
    /// Whether older events were left out.
    #[serde(default)]
    pub truncated: bool,
    /// The events, oldest first.
    #[serde(default)]
    pub events: Vec<LogEvent>,
}

/// One log event borrowed from the bytes it was read from (no copy when
/// its strings have no escapes): for reading long logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEventRef<'a> {
    /// ISO 8601 time without zone.
    #[serde(default, borrow)]
    pub time: std::borrow::Cow<'a, str>,
    /// The stream.
    pub stream: Stream,
    /// The text.
    #[serde(default, borrow)]
    pub message: std::borrow::Cow<'a, str>,
}

impl LogEventRef<'_> {
    /// An owned copy.
    pub fn to_owned_event(&self) -> LogEvent {
        LogEvent {
            time: self.time.clone().into_owned(),
            stream: self.stream.clone(),
            message: self.message.clone().into_owned(),
        }
    }

    /// Whether this event marks lost log lines (see [`GAP_PREFIX`]).
    pub fn is_gap_marker(&self) -> bool {
        self.stream == Stream::Status && self.message.starts_with(GAP_PREFIX)
    }
}

/// How a gap marker's message starts: a `status` event the local control
/// plane writes where log lines were lost (a full disk), saying how many
/// and why.
pub const GAP_PREFIX: &str = "[porthole gap] ";

impl LogEvent {
    /// Whether this event marks lost log lines (see [`GAP_PREFIX`]).
    pub fn is_gap_marker(&self) -> bool {
        self.stream == Stream::Status && self.message.starts_with(GAP_PREFIX)
    }
}

/// `executions/{id}/status-events/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusEvents {
    /// How many there are.
    #[serde(default)]
    pub total: u64,
    /// The events, oldest first.
    #[serde(default)]
    pub status_events: Vec<LogEvent>,
}

/// `POST executions/` as the local control plane takes it: a local command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateExecution {
    /// Project id (the local plane has one, `local`).
    #[serde(default)]
    pub project: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// How long the agent keeps SSH up after the command ends (`10m`).
    #[serde(default)]
    pub linger: Option<String>,
    /// Public key line allowed to log in (default: the user's porthole key).
    #[serde(default)]
    pub debug_key: Option<String>,
    /// Working directory for the command (default: the control plane's).
    #[serde(default)]
    pub cwd: Option<String>,
}

/// Reads an execution's timestamp (`ctime`, `mtime`, `end_time`, a log
/// event's `time`), as an instant in UTC; `None` when unreadable.
///
/// RFC 3339 with any offset (`Z`, `+03:00`, `-05:00`) is taken as written.
/// A time without an offset (`2017-02-16T15:25:33.037000`, as Valohai's
/// log events and the local control plane write it) is UTC: that is what
/// both mean by it, and reading it as local time would shift every age by
/// the reader's offset.
pub fn parse_time(time: &str) -> Option<DateTime<Utc>> {
    let time = time.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(time) {
        return Some(t.with_timezone(&Utc));
    }
    // `%.f` also takes a time without a fraction; a space for the `T` is
    // what some databases' ISO output has.
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(time, format).ok())
        .map(|t| t.and_utc())
}

/// A compact age for lists, from an execution's timestamp (see
/// [`parse_time`]): `42s`, `7m`, `3h`, `2d` (`3583d` for a very old one),
/// or `-` when the time is missing or unreadable.
pub fn age(time: Option<&str>) -> String {
    age_at(time, Utc::now())
}

/// [`age`] as seen at `now`.
pub fn age_at(time: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(t) = time.and_then(parse_time) else {
        return "-".into();
    };
    // A time ahead of `now` (clocks of two machines disagree) is brand
    // new, not negative.
    let secs = u64::try_from(now.signed_duration_since(t).num_seconds()).unwrap_or(0);
    // Every size has its unit: a bare number in an AGE column reads as
    // anything.
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Current time in Valohai's format: ISO 8601, UTC, microseconds, no zone.
pub fn now_iso() -> String {
    let t = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    t.trim_end_matches('Z').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_status_with_an_end_time_has_ended() {
        let mut e: Execution =
            serde_json::from_str(r#"{"id": "x", "counter": 3, "status": "archived"}"#)
                .expect("parses");
        assert_eq!(e.status(), Status::Other("archived".into()));
        assert!(
            !e.status().is_finished(),
            "no end time: maybe still running"
        );
        e.end_time = Some("2026-12-02T01:00:00Z".into());
        assert_eq!(e.status(), Status::Ended("archived".into()));
        assert!(e.status().is_finished());
        assert_eq!(e.status().as_str(), "archived");
        // Known ones keep their meaning whatever the end time says.
        e.status = "started".into();
        assert_eq!(e.status(), Status::Started);
    }

    #[test]
    fn recorded_shapes_parse_and_unknown_fields_are_ignored() {
        let list = r#"{"count": 1, "next": null, "previous": null, "results": [{
            "id": "016f0a4c-aaaa", "counter": 12, "status": "started", "status_detail": null,
            "step": "train", "title": null, "tags": [], "deleted": false,
            "ctime": "2024-09-04T12:16:20.722000Z", "mtime": "2024-09-04T12:16:20.722000Z",
            "end_time": null, "duration": null, "url": "https://app.valohai.com/api/v0/executions/016f0a4c-aaaa/",
            "urls": {"display": "https://app.valohai.com/p/x/y/execution/016f0a4c-aaaa/", "stop": "s", "copy": "c"},
            "project": {"id": "p-1", "name": "demo"}, "environment": {"id": "e", "name": "n", "slug": "s"},
            "commit": {"identifier": "abc", "ref": "main"}, "creator_id": 1, "creator_name": "me",
            "image": "python:3.11", "command": "python train.py", "parameters": {}, "runtime_config": {}}]}"#;
        let page: Page<Execution> = serde_json::from_str(list).expect("parses");
        let e = &page.results[0];
        assert_eq!(e.counter, 12);
        assert_eq!(e.status(), Status::Started);
        assert_eq!(e.label(), "train");
        assert_eq!(e.project.as_ref().map(ProjectRef::id), Some("p-1"));

        let events = r#"{"total": 2, "truncated": false, "events": [
            {"time": "2017-02-16T15:25:33.037000", "stream": "stdout", "message": "hello"},
            {"time": "2017-02-16T15:25:34.000000", "stream": "weird", "message": "x"}]}"#;
        let page: EventsPage = serde_json::from_str(events).expect("parses");
        assert_eq!(page.events[1].stream, Stream::Other);

        let status = r#"{"total": 1, "status_events": [{"stream": "status",
            "message": "::ssh::{\"port\": 2222, \"address\": \"127.0.0.1\"}", "time": "2024-09-04T12:16:20.722000"}]}"#;
        let s: StatusEvents = serde_json::from_str(status).expect("parses");
        assert_eq!(s.status_events.len(), 1);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for bad in ["", "{", "[]", r#"{"results": 5}"#, r#"{"id": 1}"#, "null"] {
            assert!(serde_json::from_str::<Execution>(bad).is_err(), "{bad}");
        }
        assert!(
            serde_json::from_str::<Page<Execution>>(r#"{"results": [{"counter": "x"}]}"#).is_err()
        );
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t)
            .expect("a test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn times_with_any_offset_or_none_are_read() {
        let utc = at("2026-12-01T07:00:00Z");
        for t in [
            "2026-12-01T07:00:00Z",
            "2026-12-01T07:00:00z",
            "2026-12-01T07:00:00+00:00",
            "2026-12-01T10:00:00+03:00",
            "2026-12-01T02:00:00-05:00",
            "2026-12-01T12:30:00+05:30",
            "2026-12-01T07:00:00",
            "2026-12-01 07:00:00",
            " 2026-12-01T07:00:00.000000 ",
        ] {
            assert_eq!(parse_time(t), Some(utc), "{t}");
        }
        // Fractions are kept, with or without an offset.
        assert_eq!(
            parse_time("2026-12-01T10:00:00.123456+03:00"),
            parse_time("2026-12-01T07:00:00.123456")
        );
        assert_eq!(
            parse_time("2026-12-01T07:00:00.123456").map(|t| t.timestamp_subsec_micros()),
            Some(123_456)
        );
        for bad in [
            "",
            "yesterday",
            "2026-12-01",
            "2026-13-01T00:00:00",
            "12:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ages_have_a_unit_at_every_size_and_honour_offsets() {
        let now = at("2026-12-01T12:00:00Z");
        let cases = [
            ("2026-12-01T12:00:00Z", "0s"),
            ("2026-12-01T11:59:55Z", "5s"),
            ("2026-12-01T11:57:00Z", "3m"),
            ("2026-12-01T10:00:00Z", "2h"),
            ("2026-11-27T12:00:00Z", "4d"),
            // The same instants, said with offsets or none.
            ("2026-12-01T14:57:00+03:00", "3m"),
            ("2026-12-01T05:00:00-05:00", "2h"),
            ("2026-12-01T11:59:54.900000", "5s"),
            ("2026-12-01T10:00:00", "2h"),
            // Almost ten years: days, never a bare number.
            ("2017-02-16T15:25:33.037000", "3574d"),
            ("2017-02-08T12:00:00Z", "3583d"),
            // Ahead of this clock: new, not negative.
            ("2026-12-01T12:00:30Z", "0s"),
            ("garbage", "-"),
        ];
        for (t, want) in cases {
            assert_eq!(age_at(Some(t), now), want, "{t}");
        }
        assert_eq!(age_at(None, now), "-");
        for secs in [0_i64, 59, 60, 3599, 3600, 86_399, 86_400, 10_000 * 86_400] {
            let t = (now - chrono::TimeDelta::seconds(secs)).to_rfc3339();
            let a = age_at(Some(&t), now);
            assert!(a.ends_with(['s', 'm', 'h', 'd']), "{secs}: {a}");
        }
    }

    #[test]
    fn time_format_has_no_zone() {
        let t = now_iso();
        assert!(!t.ends_with('Z'), "{t}");
        assert_eq!(t.len(), "2017-02-16T15:25:33.037000".len(), "{t}");
    }
}
