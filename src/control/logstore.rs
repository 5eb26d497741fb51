//! One execution's log on disk, with line indexes, so that any window of
//! it costs what the window holds, whatever the log's size.
//!
//! Files in the execution's directory:
//! - `events.jsonl`: one [`LogEvent`] per line, as JSON;
//! - `events.idx`: the byte offset where each line starts, 8 bytes
//!   little-endian per line, so `total` is the file's size / 8 and the
//!   last N events start at entry `total - N`;
//! - `status.idx`: start and end offsets (2 x 8 bytes) of each `status`
//!   event, for `status-events/` without reading the log.
//!
//! Writes go at known offsets (not `O_APPEND`): the log, then `status.idx`,
//! then `events.idx`. A line counts once its `events.idx` entry is written,
//! and readers only read lines that count, so a failed or torn write is
//! never served; it is cut off and the next write goes over it. Lines that
//! could not be written are counted, and the next successful write starts
//! with a marker event ([`GAP_PREFIX`]) saying how many were lost and why.
//! Opening repairs what a crash left between the three writes, reading
//! only the unindexed end of the log.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use bytes::Bytes;
use futures::TryStreamExt as _;

use crate::source::model::{now_iso, LogEvent, Stream};

pub use crate::source::model::GAP_PREFIX;

/// The log file's name.
pub const LOG_FILE: &str = "events.jsonl";
/// The line index's name.
pub const INDEX_FILE: &str = "events.idx";
/// The status event index's name.
pub const STATUS_FILE: &str = "status.idx";

/// Bytes per `events.idx` entry.
const ENTRY: u64 = 8;
/// Bytes per `status.idx` entry.
const STATUS_ENTRY: u64 = 16;
/// How much of the log one streamed chunk holds.
const CHUNK: u64 = 1024 * 1024;

/// The open files and counts of one log, behind its own lock.
#[derive(Debug)]
struct Writer {
    data: File,
    index: File,
    status: File,
    /// Lines that count.
    count: u64,
    /// Bytes of the log that count.
    len: u64,
    /// Status events that count.
    status_count: u64,
    /// Lines lost since the last successful write, and why.
    gap: Option<(u64, String)>,
}

/// What a write reports, for the control plane's own log.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteNote {
    /// Nothing to say.
    Written,
    /// Writes started failing (the first failure of a gap).
    Failing(String),
    /// Writes succeed again after `lost` lines were lost.
    Recovered {
        /// Lines lost.
        lost: u64,
    },
}

/// One execution's log.
#[derive(Debug)]
pub struct ExecLog {
    dir: PathBuf,
    writer: Mutex<Writer>,
}

/// A window of the log, fixed when it was asked for: the lines
/// `first .. total`, bytes `start .. end` of the log.
#[derive(Debug, Clone)]
pub struct Window {
    /// Events in the log (or status events, for a status window).
    pub total: u64,
    /// Index of the window's first event.
    pub first: u64,
    /// Where it starts in the log.
    start: u64,
    /// Where it ends.
    end: u64,
    path: PathBuf,
}

impl Window {
    /// Events in the window.
    pub fn len(&self) -> u64 {
        self.total - self.first
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The window's events as a JSON array's elements, separated by
    /// commas (no brackets), in chunks read as they are sent: memory
    /// stays at one chunk whatever the window's size.
    pub fn json_elements(self) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
        let end = self.end;
        self.chunks().map_ok(move |(at, chunk)| {
            let mut buf = Vec::from(chunk);
            // One event per line and no raw newline inside one (JSON
            // escapes them): newlines become the array's commas, and the
            // window's last newline goes. (Written as a select, not a
            // branch, so that it runs a vector at a time.)
            for b in &mut buf {
                *b = if *b == b'\n' { b',' } else { *b };
            }
            if at + buf.len() as u64 == end {
                buf.pop();
            }
            Bytes::from(buf)
        })
    }

    /// The window's events as they are stored, one JSON object per line
    /// (NDJSON), in chunks read as they are sent.
    pub fn lines(self) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
        self.chunks().map_ok(|(_, chunk)| chunk)
    }

    /// The window's bytes, a chunk at a time, each with where it starts.
    fn chunks(self) -> impl futures::Stream<Item = std::io::Result<(u64, Bytes)>> + Send {
        let state = (None::<File>, self.start, self);
        futures::stream::try_unfold(state, |(file, pos, w)| async move {
            if pos >= w.end {
                return Ok(None);
            }
            let path = w.path.clone();
            let n = (w.end - pos).min(CHUNK);
            let (chunk, file) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                // The window's own handle, read in order: each chunk is
                // one read into fresh capacity (no zeroing, no seeking).
                let mut file = match file {
                    Some(f) => f,
                    None => {
                        let mut f = File::open(&path)?;
                        f.seek(SeekFrom::Start(pos))?;
                        f
                    }
                };
                let mut buf = Vec::with_capacity(n as usize);
                (&mut file).take(n).read_to_end(&mut buf)?;
                if (buf.len() as u64) < n {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the log is shorter than its index says",
                    ));
                }
                Ok((buf, file))
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Some(((pos, Bytes::from(chunk)), (Some(file), pos + n, w))))
        })
    }

    /// The window's events, parsed (for small windows).
    pub fn read(&self) -> anyhow::Result<Vec<LogEvent>> {
        let mut file = File::open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.start))?;
        let mut bytes = Vec::new();
        file.take(self.end - self.start).read_to_end(&mut bytes)?;
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).context("a damaged log line"))
            .collect()
    }
}

fn open_rw(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

fn read_u64(file: &File, at: u64) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, at)?;
    Ok(u64::from_le_bytes(b))
}

/// Where the line starting at `start` ends (past its newline), if it is
/// complete within `len`.
fn line_end(data: &File, start: u64, len: u64) -> std::io::Result<Option<u64>> {
    let mut pos = start;
    let mut buf = vec![0u8; 64 * 1024];
    while pos < len {
        let n = ((len - pos) as usize).min(buf.len());
        data.read_exact_at(&mut buf[..n], pos)?;
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Ok(Some(pos + i as u64 + 1));
        }
        pos += n as u64;
    }
    Ok(None)
}

impl ExecLog {
    /// Opens (creating if needed) the log in `dir`, repairing what a crash
    /// left: index entries past the log, and log lines past the index
    /// (indexed if whole, dropped with a marker if torn or damaged).
    /// Costs the unindexed end of the log, not the log.
    pub fn open(dir: &Path) -> anyhow::Result<ExecLog> {
        let data = open_rw(&dir.join(LOG_FILE))?;
        let index = open_rw(&dir.join(INDEX_FILE))?;
        let status = open_rw(&dir.join(STATUS_FILE))?;
        let data_len = data.metadata()?.len();
        let mut count = index.metadata()?.len() / ENTRY;
        // The indexed part ends where the last indexed line ends; entries
        // pointing past the log or at a torn line go.
        let mut indexed_end = 0;
        while count > 0 {
            let start = read_u64(&index, (count - 1) * ENTRY)?;
            if start < data_len {
                if let Some(end) = line_end(&data, start, data_len)? {
                    indexed_end = end;
                    break;
                }
            }
            count -= 1;
        }
        index.set_len(count * ENTRY)?;
        let mut status_count = status.metadata()?.len() / STATUS_ENTRY;
        while status_count > 0
            && read_u64(&status, (status_count - 1) * STATUS_ENTRY)? >= indexed_end
        {
            status_count -= 1;
        }
        status.set_len(status_count * STATUS_ENTRY)?;
        let mut writer = Writer {
            data,
            index,
            status,
            count,
            len: indexed_end,
            status_count,
            gap: None,
        };
        let damaged = writer.index_tail(data_len, dir)?;
        let log = ExecLog {
            dir: dir.to_path_buf(),
            writer: Mutex::new(writer),
        };
        if damaged > 0 {
            log.lock().gap = Some((
                damaged,
                "the control plane stopped while writing them (torn or damaged lines)".into(),
            ));
            // Written now, so that the marker sits where the lines were.
            log.push(&[]);
        }
        Ok(log)
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends events. Lines that cannot be written are counted; the
    /// first write that succeeds afterwards starts with a marker event.
    pub fn push(&self, events: &[LogEvent]) -> WriteNote {
        let mut w = self.lock();
        let mut batch: Vec<LogEvent> = Vec::with_capacity(events.len() + 1);
        if let Some((lost, cause)) = &w.gap {
            batch.push(gap_marker(*lost, cause));
        }
        batch.extend_from_slice(events);
        if batch.is_empty() {
            return WriteNote::Written;
        }
        match w.write(&batch) {
            Ok(()) => match w.gap.take() {
                Some((lost, _)) => WriteNote::Recovered { lost },
                None => WriteNote::Written,
            },
            Err(e) => {
                let cause = format!("cannot write the log: {e}");
                let first = w.gap.is_none();
                let lost = w.gap.as_ref().map_or(0, |g| g.0) + events.len() as u64;
                w.gap = Some((lost, cause.clone()));
                if first {
                    WriteNote::Failing(cause)
                } else {
                    WriteNote::Written
                }
            }
        }
    }

    /// The last `limit` events (all for 0).
    pub fn window(&self, limit: u64) -> std::io::Result<Window> {
        let (count, len) = {
            let w = self.lock();
            (w.count, w.len)
        };
        let got = if limit == 0 { count } else { limit.min(count) };
        let first = count - got;
        let start = if got == 0 {
            len
        } else {
            // Entries below the count are written before it grows, and
            // never change: read without the lock.
            let index = File::open(self.dir.join(INDEX_FILE))?;
            read_u64(&index, first * ENTRY)?
        };
        Ok(Window {
            total: count,
            first,
            start,
            end: len,
            path: self.dir.join(LOG_FILE),
        })
    }

    /// The last `limit` status events (all for 0) and how many there are.
    pub fn status_events(&self, limit: u64) -> anyhow::Result<(u64, Vec<LogEvent>)> {
        let count = self.lock().status_count;
        let got = if limit == 0 { count } else { limit.min(count) };
        let first = count - got;
        let index = File::open(self.dir.join(STATUS_FILE))?;
        let data = File::open(self.dir.join(LOG_FILE))?;
        let mut entries = vec![0u8; (got * STATUS_ENTRY) as usize];
        index.read_exact_at(&mut entries, first * STATUS_ENTRY)?;
        let mut out = Vec::with_capacity(got as usize);
        for e in entries.chunks_exact(STATUS_ENTRY as usize) {
            let mut start = [0u8; 8];
            let mut end = [0u8; 8];
            start.copy_from_slice(&e[..8]);
            end.copy_from_slice(&e[8..]);
            let (start, end) = (u64::from_le_bytes(start), u64::from_le_bytes(end));
            let mut line = vec![0u8; end.saturating_sub(start) as usize];
            data.read_exact_at(&mut line, start)?;
            out.push(serde_json::from_slice(&line).context("a damaged status line")?);
        }
        Ok((count, out))
    }
}

impl Writer {
    /// Writes `batch` whole or not at all (as far as readers can tell).
    fn write(&mut self, batch: &[LogEvent]) -> std::io::Result<()> {
        let mut data = Vec::with_capacity(batch.len() * 96);
        let mut index = Vec::with_capacity(batch.len() * ENTRY as usize);
        let mut status = Vec::new();
        for e in batch {
            let start = self.len + data.len() as u64;
            serde_json::to_writer(&mut data, e)?;
            data.push(b'\n');
            index.extend_from_slice(&start.to_le_bytes());
            if e.stream == Stream::Status {
                let end = self.len + data.len() as u64;
                status.extend_from_slice(&start.to_le_bytes());
                status.extend_from_slice(&end.to_le_bytes());
            }
        }
        let index_at = self.count * ENTRY;
        let status_at = self.status_count * STATUS_ENTRY;
        let result = self
            .data
            .write_all_at(&data, self.len)
            .and_then(|()| self.status.write_all_at(&status, status_at))
            .and_then(|()| self.index.write_all_at(&index, index_at));
        if let Err(e) = result {
            // Cut what was written so that nothing torn stays behind; if
            // that fails too, the next write goes over it anyway.
            let _ = self.index.set_len(index_at);
            let _ = self.status.set_len(status_at);
            let _ = self.data.set_len(self.len);
            return Err(e);
        }
        self.len += data.len() as u64;
        self.count += batch.len() as u64;
        self.status_count += (status.len() as u64) / STATUS_ENTRY;
        Ok(())
    }

    /// Indexes the log's lines past the indexed part (up to `data_len`).
    /// Whole valid lines are kept; torn or damaged ones are dropped (the
    /// valid lines after them move up). Returns how many were dropped.
    fn index_tail(&mut self, data_len: u64, dir: &Path) -> anyhow::Result<u64> {
        if self.len >= data_len {
            self.data.set_len(self.len)?;
            return Ok(0);
        }
        let mut reader = BufReader::with_capacity(256 * 1024, self.data.try_clone()?);
        reader.seek(SeekFrom::Start(self.len))?;
        let mut reader = reader.take(data_len - self.len);
        // Lines to keep go to a side file when anything was dropped, so
        // that memory stays small even for a long unindexed tail.
        let mut kept: Option<tempfile::NamedTempFile> = None;
        let mut kept_count = 0u64;
        let mut damaged = 0u64;
        let mut pos = self.len;
        let mut indexed_end = self.len;
        let mut line = Vec::new();
        let mut index = Vec::new();
        let mut status = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            let whole = line.last() == Some(&b'\n');
            let event = whole
                .then(|| serde_json::from_slice::<LogEvent>(&line).ok())
                .flatten();
            match event {
                Some(event) if kept.is_none() && damaged == 0 => {
                    index.extend_from_slice(&pos.to_le_bytes());
                    if event.stream == Stream::Status {
                        status.extend_from_slice(&pos.to_le_bytes());
                        status.extend_from_slice(&(pos + n as u64).to_le_bytes());
                    }
                    indexed_end = pos + n as u64;
                }
                Some(_) => {
                    let file = match &mut kept {
                        Some(f) => f,
                        None => kept.insert(tempfile::NamedTempFile::new_in(dir)?),
                    };
                    file.write_all(&line)?;
                    kept_count += 1;
                }
                None => damaged += 1,
            }
            pos += n as u64;
            if index.len() >= 1 << 20 {
                self.flush_repair(&mut index, &mut status, indexed_end)?;
            }
        }
        self.flush_repair(&mut index, &mut status, indexed_end)?;
        self.data.set_len(self.len)?;
        if let Some(file) = kept {
            // Re-append the whole lines that followed a damaged one.
            let reader = BufReader::new(file.reopen()?);
            let mut batch = Vec::new();
            for l in reader.split(b'\n') {
                let l = l?;
                if let Ok(e) = serde_json::from_slice::<LogEvent>(&l) {
                    batch.push(e);
                }
                if batch.len() >= 10_000 {
                    self.write(&batch)?;
                    batch.clear();
                }
            }
            self.write(&batch)?;
            tracing::debug!("{kept_count} log lines moved up after damaged ones");
        }
        Ok(damaged)
    }

    /// Writes index entries gathered by a repair, the last of them for
    /// a line ending at `indexed_end`.
    fn flush_repair(
        &mut self,
        index: &mut Vec<u8>,
        status: &mut Vec<u8>,
        indexed_end: u64,
    ) -> std::io::Result<()> {
        self.status
            .write_all_at(status, self.status_count * STATUS_ENTRY)?;
        self.index.write_all_at(index, self.count * ENTRY)?;
        self.len = indexed_end;
        self.count += index.len() as u64 / ENTRY;
        self.status_count += status.len() as u64 / STATUS_ENTRY;
        index.clear();
        status.clear();
        Ok(())
    }
}

/// The marker event put where `lost` lines could not be written.
pub fn gap_marker(lost: u64, cause: &str) -> LogEvent {
    let lines = if lost == 1 { "line" } else { "lines" };
    LogEvent {
        time: now_iso(),
        stream: Stream::Status,
        message: format!("{GAP_PREFIX}{lost} log {lines} lost here: {cause}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(m: &str) -> LogEvent {
        LogEvent {
            time: "2024-01-01T00:00:00.000000".into(),
            stream: Stream::Stdout,
            message: m.into(),
        }
    }

    fn all(log: &ExecLog) -> Vec<String> {
        log.window(0)
            .expect("window")
            .read()
            .expect("reads")
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn windows_are_the_last_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ExecLog::open(dir.path()).expect("opens");
        for i in 0..10 {
            log.push(&[ev(&i.to_string())]);
        }
        let w = log.window(3).expect("window");
        assert_eq!((w.total, w.first), (10, 7));
        let got: Vec<_> = w
            .read()
            .expect("reads")
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(got, ["7", "8", "9"]);
        assert_eq!(log.window(0).expect("window").len(), 10);
        assert_eq!(log.window(50).expect("window").len(), 10);
    }

    #[tokio::test]
    async fn streamed_windows_are_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ExecLog::open(dir.path()).expect("opens");
        // Enough for several chunks.
        let many: Vec<LogEvent> = (0..20_000).map(|i| ev(&format!("line {i}"))).collect();
        log.push(&many);
        for limit in [0, 1, 5_000] {
            let w = log.window(limit).expect("window");
            let parts: Vec<Bytes> = w.json_elements().try_collect().await.expect("reads");
            let mut json = b"[".to_vec();
            for p in parts {
                json.extend_from_slice(&p);
            }
            json.push(b']');
            let got: Vec<LogEvent> = serde_json::from_slice(&json).expect("valid JSON");
            let want = if limit == 0 { 20_000 } else { limit as usize };
            assert_eq!(got, many[20_000 - want..]);
            // And as lines, just as stored.
            let w = log.window(limit).expect("window");
            let parts: Vec<Bytes> = w.lines().try_collect().await.expect("reads");
            let text: Vec<u8> = parts.concat();
            let got: Vec<LogEvent> = text
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("a JSON line"))
                .collect();
            assert_eq!(got, many[20_000 - want..]);
        }
        let empty = ExecLog::open(tempfile::tempdir().expect("dir").path()).expect("opens");
        let w = empty.window(0).expect("window");
        let parts: Vec<Bytes> = w.json_elements().try_collect().await.expect("reads");
        assert!(parts.is_empty());
    }

    #[test]
    fn status_events_have_their_own_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ExecLog::open(dir.path()).expect("opens");
        let status = LogEvent {
            stream: Stream::Status,
            ..ev("ready")
        };
        log.push(&[ev("a"), status.clone(), ev("b")]);
        drop(log);
        let log = ExecLog::open(dir.path()).expect("reopens");
        assert_eq!(log.status_events(0).expect("reads"), (1, vec![status]));
    }

    #[test]
    fn a_crash_between_the_writes_is_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ExecLog::open(dir.path()).expect("opens");
        log.push(&[ev("a"), ev("b")]);
        drop(log);
        // A whole line past the index (crash before its entry), then a
        // torn one (crash mid-write).
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .expect("opens");
        f.write_all(
            b"{\"time\":\"t\",\"stream\":\"stdout\",\"message\":\"c\"}\n{\"time\":\"t\",\"str",
        )
        .expect("writes");
        drop(f);
        let log = ExecLog::open(dir.path()).expect("reopens");
        let got = all(&log);
        assert_eq!(got[..3], ["a", "b", "c"]);
        assert!(got[3].starts_with(GAP_PREFIX), "{got:?}");
        assert!(got[3].contains("1 log line lost"), "{got:?}");
        log.push(&[ev("d")]);
        assert_eq!(all(&log).len(), 5);
        // A damaged line in the middle (an older version appended after a
        // torn line): the lines after it stay.
        drop(log);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .expect("opens");
        f.write_all(b"garbage\n{\"time\":\"t\",\"stream\":\"stdout\",\"message\":\"e\"}\n")
            .expect("writes");
        drop(f);
        let log = ExecLog::open(dir.path()).expect("reopens");
        let got = all(&log);
        assert_eq!(got[4], "d");
        assert_eq!(got[5], "e");
        assert!(got[6].starts_with(GAP_PREFIX), "{got:?}");
    }

    /// A full disk, injected by swapping the log file for `/dev/full`
    /// (whose writes fail with ENOSPC): the lost lines are counted, the
    /// marker says how many and why, and nothing torn stays.
    #[test]
    fn a_full_disk_leaves_a_marker_with_the_real_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ExecLog::open(dir.path()).expect("opens");
        log.push(&[ev("before")]);
        let Ok(full) = OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("no /dev/full here; skipped");
            return;
        };
        let real = std::mem::replace(&mut log.lock().data, full);
        let note = log.push(&[ev("lost 1"), ev("lost 2")]);
        match note {
            WriteNote::Failing(cause) => {
                assert!(cause.contains("No space left on device"), "{cause}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(log.push(&[ev("lost 3")]), WriteNote::Written);
        log.lock().data = real;
        assert_eq!(log.push(&[ev("after")]), WriteNote::Recovered { lost: 3 });
        drop(log);
        let log = ExecLog::open(dir.path()).expect("reopens");
        let got = all(&log);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "before");
        assert!(
            got[1].starts_with(GAP_PREFIX)
                && got[1].contains("3 log lines lost here")
                && got[1].contains("No space left on device"),
            "{got:?}"
        );
        assert_eq!(got[2], "after");
        assert_eq!(log.status_events(0).expect("reads").0, 1);
    }
}
