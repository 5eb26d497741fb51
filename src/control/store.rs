//! Durable records and logs of local executions.
//!
//! Layout under `data_dir/control/` (directories mode 0700):
//! - `token`: the API token (hex, mode 0600), made once and kept;
//! - `executions/<id>/record.json`: the [`Execution`], replaced atomically
//!   (temporary file + rename) on every change, so a crash leaves the old
//!   record or the new one, never half of one;
//! - `executions/<id>/events.jsonl` and its indexes: the log, see
//!   [`super::logstore`].
//!
//! Records are kept in memory (they are small); logs stay on disk and are
//! read by window. The store's lock covers the records and the map of
//! logs only; each log has its own lock, held for one write, so that one
//! busy execution does not slow the others or the readers.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use anyhow::Context as _;
use rand::RngExt as _;

use super::logstore::{ExecLog, Window, WriteNote};
use crate::source::model::{now_iso, parse_time, Execution, LogEvent, Status, Stream};

/// Status detail of executions a previous run left unfinished.
pub const RESTARTED_DETAIL: &str = "control plane restarted while it was running";

/// The token file's name under the control directory.
pub const TOKEN_FILE: &str = "token";

/// Reads the API token from `dir/token`, creating it (32 random bytes as
/// hex, mode 0600) the first time.
pub fn load_or_create_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_token(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "{} does not hold a token (64 hex digits); delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let bytes: [u8; 32] = rand::rng().random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Mode 0600 from the start (not chmod after writing), then an atomic
    // rename, so the token is never readable by others nor half-written.
    let tmp = tempfile::Builder::new()
        .prefix(".token")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    std::fs::write(tmp.path(), format!("{token}\n"))
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    // Two control planes starting at once: keep whichever token won.
    match tmp.persist_noclobber(&path) {
        Ok(_) => Ok(token),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok(text.trim().to_string())
        }
        Err(e) => Err(e.error).with_context(|| format!("cannot save {}", path.display())),
    }
}

fn is_token(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes `contents` to `path` through a temporary file in the same
/// directory and a rename.
pub fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_data())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// One execution: its record and its log.
#[derive(Debug)]
struct Entry {
    record: Execution,
    log: Arc<ExecLog>,
}

#[derive(Debug, Default)]
struct Inner {
    /// id -> entry.
    entries: HashMap<String, Entry>,
    /// counter -> id, for ordering and `local:N`.
    counters: BTreeMap<u64, String>,
}

/// Creates `path` (and missing parents) with mode 0700: execution
/// directories hold commands and logs that are nobody else's business.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// The executions of the local control plane, on disk and in memory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Readers (lookups, lists, every events poll) share it; only
    /// creating and changing records take it alone.
    inner: RwLock<Inner>,
    /// Set when this instance hands over (another may load the same
    /// directory): from then on nothing is written to disk.
    closed: AtomicBool,
}

impl Store {
    /// Loads every execution under `control_dir/executions/`, creating the
    /// directory if needed. Executions a previous run left unfinished are
    /// recorded as `error` ("control plane restarted while it was running").
    pub fn open(control_dir: &Path) -> anyhow::Result<Store> {
        let dir = control_dir.join("executions");
        create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut inner = Inner::default();
        let listing =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for item in listing {
            let item = item.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = item.path();
            if !path.join("record.json").is_file() {
                continue;
            }
            match load_entry(&path) {
                Ok(entry) => {
                    if let Some(other) = inner.counters.get(&entry.record.counter) {
                        tracing::warn!(
                            "{}: counter {} is also used by {other}; skipped",
                            path.display(),
                            entry.record.counter
                        );
                        continue;
                    }
                    inner
                        .counters
                        .insert(entry.record.counter, entry.record.id.clone());
                    inner.entries.insert(entry.record.id.clone(), entry);
                }
                // One damaged record must not hide all the others.
                Err(e) => tracing::warn!("skipping {}: {e:#}", path.display()),
            }
        }
        let store = Store {
            dir,
            inner: RwLock::new(inner),
            closed: AtomicBool::new(false),
        };
        let unfinished: Vec<String> = store
            .lock()
            .entries
            .values()
            .filter(|e| !e.record.status().is_finished())
            .map(|e| e.record.id.clone())
            .collect();
        for id in unfinished {
            store.finish(&id, Status::Error, Some(RESTARTED_DETAIL.to_string()), None);
        }
        Ok(store)
    }

    fn lock(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn exec_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Stops all writes to disk: this instance is going away and another
    /// one may take over the directory.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Records a new execution from `template`, giving it a fresh id and
    /// the next counter, and returns it.
    pub fn create(&self, mut template: Execution) -> anyhow::Result<Execution> {
        let mut inner = self.lock();
        let id = uuid::Uuid::new_v4().to_string();
        let counter = inner.counters.keys().next_back().map_or(1, |c| c + 1);
        template.id = id.clone();
        template.counter = counter;
        let dir = self.exec_dir(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let made = ExecLog::open(&dir).and_then(|log| {
            self.save(&template)?;
            Ok(log)
        });
        let log = match made {
            Ok(log) => log,
            Err(e) => {
                // No empty or half-made execution stays behind.
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        inner.counters.insert(counter, id.clone());
        inner.entries.insert(
            id,
            Entry {
                record: template.clone(),
                log: Arc::new(log),
            },
        );
        Ok(template)
    }

    fn save(&self, record: &Execution) -> anyhow::Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(record).context("cannot encode the record")?;
        write_atomically(&self.exec_dir(&record.id).join("record.json"), &json)
    }

    /// Changes a record (and its `mtime`) and saves it; returns the new
    /// record, or `None` for an unknown id.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Execution)) -> Option<Execution> {
        let mut inner = self.lock();
        let entry = inner.entries.get_mut(id)?;
        change(&mut entry.record);
        entry.record.mtime = Some(now_iso());
        let record = entry.record.clone();
        // Saved under the lock, so that the file keeps the last change.
        if let Err(e) = self.save(&record) {
            warn(&format!("{e:#}"));
        }
        drop(inner);
        Some(record)
    }

    /// The log of `id`.
    fn log(&self, id: &str) -> Option<Arc<ExecLog>> {
        self.read().entries.get(id).map(|e| e.log.clone())
    }

    /// Appends one log event.
    pub fn push_event(&self, id: &str, event: LogEvent) {
        self.push_events(id, std::slice::from_ref(&event));
    }

    /// Appends log events, in one write. Lines that cannot be written
    /// (a full disk) are counted, and a marker event takes their place
    /// once writing works again; the first failure and the recovery are
    /// reported on stderr.
    pub fn push_events(&self, id: &str, events: &[LogEvent]) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let Some(log) = self.log(id) else {
            return;
        };
        match log.push(events) {
            WriteNote::Written => {}
            WriteNote::Failing(cause) => warn(&format!(
                "the log of {id}: {cause}; counting the lost lines until writing works again"
            )),
            WriteNote::Recovered { lost } => warn(&format!(
                "the log of {id} is written again; {lost} lines were lost, and a marker in the log says where"
            )),
        }
    }

    /// Appends a `status` event with `message`, timestamped now.
    pub fn push_status(&self, id: &str, message: impl Into<String>) {
        self.push_event(
            id,
            LogEvent {
                time: now_iso(),
                stream: Stream::Status,
                message: message.into(),
            },
        );
    }

    /// Marks an execution finished with `status`, unless it already is
    /// (a stop racing with the command's own end keeps the first word),
    /// and records a status event. `duration` defaults to the time since
    /// the record's creation.
    pub fn finish(
        &self,
        id: &str,
        status: Status,
        detail: Option<String>,
        duration: Option<f64>,
    ) -> Option<Execution> {
        let mut done = false;
        let record = self.update(id, |r| {
            if r.status().is_finished() {
                return;
            }
            done = true;
            let end = now_iso();
            r.duration = duration.or_else(|| seconds_between(r.ctime.as_deref(), &end));
            r.end_time = Some(end);
            r.status = status.as_str().to_string();
            r.status_detail = detail.clone();
        })?;
        if done {
            let message = match &detail {
                Some(d) => format!("status: {} ({d})", status.as_str()),
                None => format!("status: {}", status.as_str()),
            };
            self.push_status(id, message);
        }
        Some(record)
    }

    /// Finds an execution by id, `local:N`, `local:latest`, or a bare
    /// counter; returns its id.
    pub fn resolve(&self, key: &str) -> Option<String> {
        let inner = self.read();
        if inner.entries.contains_key(key) {
            return Some(key.to_string());
        }
        let counter = key.strip_prefix("local:").unwrap_or(key);
        if counter == "latest" {
            return inner.counters.values().next_back().cloned();
        }
        let n: u64 = counter.parse().ok()?;
        inner.counters.get(&n).cloned()
    }

    /// The record of `id`.
    pub fn get(&self, id: &str) -> Option<Execution> {
        self.read().entries.get(id).map(|e| e.record.clone())
    }

    /// Every record, oldest (lowest counter) first.
    pub fn list(&self) -> Vec<Execution> {
        let inner = self.read();
        inner
            .counters
            .values()
            .filter_map(|id| inner.entries.get(id))
            .map(|e| e.record.clone())
            .collect()
    }

    /// The last `limit` events of `id` (all of them for 0), as a window
    /// to stream.
    pub fn window(&self, id: &str, limit: u64) -> Option<std::io::Result<Window>> {
        self.log(id).map(|log| log.window(limit))
    }

    /// The last `limit` events of `id` (all for 0), read, and the total:
    /// for small windows.
    pub fn events(&self, id: &str, limit: u64) -> Option<anyhow::Result<(u64, Vec<LogEvent>)>> {
        let window = self.window(id, limit)?;
        Some(
            window
                .map_err(anyhow::Error::from)
                .and_then(|w| Ok((w.total, w.read()?))),
        )
    }

    /// The last `limit` status events of `id` (all for 0), and how many
    /// there are.
    pub fn status_events(
        &self,
        id: &str,
        limit: u64,
    ) -> Option<anyhow::Result<(u64, Vec<LogEvent>)>> {
        self.log(id).map(|log| log.status_events(limit))
    }
}

/// Reports a problem of the control plane itself (it has no other place).
fn warn(message: &str) {
    tracing::warn!("{message}");
    eprintln!("porthole control plane: warning: {message}");
}

fn load_entry(dir: &Path) -> anyhow::Result<Entry> {
    let path = dir.join("record.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let record: Execution =
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
    let log = ExecLog::open(dir)?;
    Ok(Entry {
        record,
        log: Arc::new(log),
    })
}

/// Seconds from one execution timestamp to another, read as everywhere
/// else (see [`parse_time`]: a record written by hand or by another tool
/// may carry an offset); `None` when either is unreadable or `end` comes
/// first.
fn seconds_between(start: Option<&str>, end: &str) -> Option<f64> {
    let (a, b) = (parse_time(start?)?, parse_time(end)?);
    let micros = b.signed_duration_since(a).num_microseconds()?;
    // Precision: microseconds are what the timestamps carry.
    (micros >= 0).then(|| micros as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Execution {
        serde_json::from_value(serde_json::json!({
            "id": "", "counter": 0, "status": "started", "ctime": now_iso(),
        }))
        .expect("a valid record")
    }

    #[test]
    fn records_and_logs_survive_a_reload_and_unfinished_ones_become_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("opens");
        let a = store.create(template()).expect("created");
        let b = store.create(template()).expect("created");
        assert_eq!((a.counter, b.counter), (1, 2));
        store.finish(&a.id, Status::Complete, None, None);
        for i in 0..50 {
            store.push_event(
                &a.id,
                LogEvent {
                    time: now_iso(),
                    stream: Stream::Stdout,
                    message: format!("line {i}"),
                },
            );
        }
        drop(store);

        let store = Store::open(dir.path()).expect("reopens");
        let (total, events) = store.events(&a.id, 0).expect("known").expect("reads");
        assert_eq!(total, 51);
        let lines: Vec<_> = events
            .iter()
            .filter(|e| e.stream == Stream::Stdout)
            .map(|e| &e.message)
            .collect();
        assert_eq!(lines.len(), 50);
        assert_eq!(lines[49], "line 49");
        let b = store.get(&b.id).expect("known");
        assert_eq!(b.status, "error");
        assert_eq!(b.status_detail.as_deref(), Some(RESTARTED_DETAIL));
        assert!(b.end_time.is_some());
        let (_, status) = store
            .status_events(&b.id, 0)
            .expect("known")
            .expect("reads");
        assert!(
            status.iter().any(|e| e.message.contains(RESTARTED_DETAIL)),
            "{status:?}"
        );
        let c = store.create(template()).expect("created");
        assert_eq!(c.counter, 3);
        assert_eq!(store.resolve("local:latest"), Some(c.id.clone()));
        assert_eq!(store.resolve("local:1"), Some(a.id.clone()));
        assert_eq!(store.resolve(&c.id), Some(c.id.clone()));
        assert_eq!(store.resolve("local:9"), None);
        assert_eq!(store.resolve("nonsense"), None);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("opens");
        let a = store.create(template()).expect("created");
        store.push_status(&a.id, "hello");
        drop(store);
        let log = dir
            .path()
            .join("executions")
            .join(&a.id)
            .join("events.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("opens");
        f.write_all(br#"{"time":"2024-01-01T00:00:00","str"#)
            .expect("writes");
        let store = Store::open(dir.path()).expect("reopens");
        let (_, events) = store.events(&a.id, 0).expect("known").expect("reads");
        assert_eq!(events[0].message, "hello");
        assert!(events[1].is_gap_marker(), "{events:?}");
    }

    #[test]
    fn limits_pick_the_last_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("opens");
        let a = store.create(template()).expect("created");
        for i in 0..10 {
            store.push_status(&a.id, format!("{i}"));
        }
        let (total, events) = store.events(&a.id, 3).expect("known").expect("reads");
        assert_eq!(total, 10);
        let got: Vec<_> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(got, ["7", "8", "9"]);
    }

    #[test]
    fn execution_directories_are_private_and_a_failed_create_leaves_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("opens");
        let a = store.create(template()).expect("created");
        for d in [store.dir.clone(), store.exec_dir(&a.id)] {
            let mode = std::fs::metadata(&d).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
        // A record that cannot be saved (the store's directory made
        // read-only; root ignores that, so make a file stand in the way).
        let blocked = Store {
            dir: dir.path().join("not-a-dir"),
            inner: RwLock::new(Inner::default()),
            closed: AtomicBool::new(false),
        };
        std::fs::write(&blocked.dir, b"").expect("writes");
        assert!(blocked.create(template()).is_err());
        let listed: Vec<_> = std::fs::read_dir(store.dir.clone())
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(listed.len(), 1, "{listed:?}");
    }

    #[test]
    fn the_token_is_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = load_or_create_token(dir.path()).expect("made");
        assert!(is_token(&t), "{t}");
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(dir.path()).expect("read"), t);
    }

    #[test]
    fn durations_are_read_across_offsets_and_never_negative() {
        // The record's own format, no zone (UTC).
        assert_eq!(
            seconds_between(
                Some("2026-12-01T07:00:00.000000"),
                "2026-12-01T07:00:01.500000"
            ),
            Some(1.5)
        );
        // A ctime with an offset is the same instant as its UTC spelling.
        assert_eq!(
            seconds_between(
                Some("2026-12-01T10:00:00+03:00"),
                "2026-12-01T07:00:01.500000"
            ),
            Some(1.5)
        );
        assert_eq!(
            seconds_between(Some("2026-12-01T02:00:00-05:00"), "2026-12-01T07:01:00"),
            Some(60.0)
        );
        assert_eq!(
            seconds_between(Some("2026-12-01T07:00:02"), "2026-12-01T07:00:01"),
            None
        );
        assert_eq!(seconds_between(None, "2026-12-01T07:00:01"), None);
        assert_eq!(seconds_between(Some("later"), "2026-12-01T07:00:01"), None);
    }
}
