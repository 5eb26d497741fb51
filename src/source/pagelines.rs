//! Reading an events page sent as NDJSON, as the local control plane does
//! for a client that asks for it: a first line `{"total": N, ...}`, then
//! one event per line.
//!
//! A raw newline cannot occur inside JSON, so lines are found without
//! parsing, and a batch of them is parsed on two threads: a long log is
//! read at the speed of the machine, not of one core. Memory is one batch
//! and its events, whatever the page's size.

use serde::Deserialize;

use super::model::LogEventRef;
use super::pagestream::PageError;

/// Bytes gathered before they are parsed: large enough that a thread is
/// worth starting, small enough to stay a bounded cost.
pub const BATCH: usize = 1 << 20;
/// Longest line kept waiting for its end (as [`super::pagestream`]'s
/// longest event).
const MAX_LINE: usize = 16 << 20;
/// Below this a batch is parsed on the calling thread alone.
const PARALLEL_FROM: usize = 256 << 10;

/// The page's first line.
#[derive(Debug, Deserialize)]
struct Head {
    total: u64,
}

/// One piece of a page.
#[derive(Debug, PartialEq)]
pub enum LineItem<'a> {
    /// The log's total count of events (first).
    Total(u64),
    /// The next event.
    Event(LogEventRef<'a>),
}

/// Gathers a page's bytes, fed in any pieces, and hands out its lines.
#[derive(Debug, Default)]
pub struct PageLines {
    carry: Vec<u8>,
    head_seen: bool,
}

impl PageLines {
    /// A reader at the start of a page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the page.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), PageError> {
        self.carry.extend_from_slice(bytes);
        // More than a batch without a newline is one line that is too long.
        if self.carry.len() > MAX_LINE + BATCH
            && memchr::memrchr(b'\n', &self.carry[self.carry.len() - MAX_LINE..]).is_none()
        {
            return Err(PageError::TooLong(MAX_LINE));
        }
        Ok(())
    }

    /// Whether a batch is waiting to be parsed.
    pub fn has_batch(&self) -> bool {
        self.carry.len() >= BATCH
    }

    /// Hands the whole lines read so far to `out` (all of what is left
    /// when `last`), in order; stops (returning `false`) as soon as `out`
    /// does.
    pub fn drain(
        &mut self,
        last: bool,
        out: &mut impl FnMut(LineItem<'_>) -> bool,
    ) -> Result<bool, PageError> {
        let cut = if last {
            self.carry.len()
        } else {
            match memchr::memrchr(b'\n', &self.carry) {
                Some(i) => i + 1,
                None => return Ok(true),
            }
        };
        let mut lines = &self.carry[..cut];
        if !self.head_seen {
            let Some(end) = memchr::memchr(b'\n', lines).or(last.then_some(lines.len())) else {
                return Ok(true);
            };
            let head: Head = serde_json::from_slice(&lines[..end])
                .map_err(|e| PageError::Member(format!("the first line: {e}")))?;
            self.head_seen = true;
            if !out(LineItem::Total(head.total)) {
                return Ok(false);
            }
            lines = &lines[(end + 1).min(lines.len())..];
        }
        let go_on = parse_lines(lines)?
            .into_iter()
            .all(|event| out(LineItem::Event(event)));
        self.carry.drain(..cut);
        Ok(go_on)
    }

    /// Checks that the page had its first line.
    pub fn finish(&self) -> Result<(), PageError> {
        if self.head_seen {
            Ok(())
        } else {
            Err(PageError::Shape("the page ends before its first line"))
        }
    }
}

/// The events of whole lines, in order; a large batch is split at a
/// newline and its halves parsed at once.
fn parse_lines(lines: &[u8]) -> Result<Vec<LogEventRef<'_>>, PageError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let middle = (lines.len() >= PARALLEL_FROM && threads > 1)
        .then(|| memchr::memchr(b'\n', &lines[lines.len() / 2..]))
        .flatten()
        .map(|i| lines.len() / 2 + i + 1);
    let Some(middle) = middle else {
        return parse_serially(lines);
    };
    let (first, second) = lines.split_at(middle);
    std::thread::scope(|scope| {
        let later = scope.spawn(|| parse_serially(second));
        let mut events = parse_serially(first)?;
        let rest = later
            .join()
            .map_err(|_| PageError::Event("the parsing thread failed".into()))??;
        events.extend(rest);
        Ok(events)
    })
}

fn parse_serially(lines: &[u8]) -> Result<Vec<LogEventRef<'_>>, PageError> {
    let mut events = Vec::with_capacity(lines.len() / 64);
    let mut from = 0;
    let ends = memchr::memchr_iter(b'\n', lines).chain(std::iter::once(lines.len()));
    for end in ends {
        let line = &lines[from..end];
        from = end + 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        events.push(serde_json::from_slice(line).map_err(|e| PageError::Event(e.to_string()))?);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::LogEvent;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq)]
    enum Owned {
        Total(u64),
        Event(LogEvent),
    }

    fn read(page: &[u8], step: usize) -> Result<Vec<Owned>, PageError> {
        let mut lines = PageLines::new();
        let mut got = Vec::new();
        let mut keep = |item: LineItem<'_>| {
            got.push(match item {
                LineItem::Total(n) => Owned::Total(n),
                LineItem::Event(e) => Owned::Event(e.to_owned_event()),
            });
            true
        };
        for chunk in page.chunks(step.max(1)) {
            lines.push(chunk)?;
            if lines.has_batch() {
                lines.drain(false, &mut keep)?;
            }
            // Also drain at odd moments: a line cut anywhere waits.
            lines.drain(false, &mut keep)?;
        }
        lines.drain(true, &mut keep)?;
        lines.finish()?;
        Ok(got)
    }

    fn event(n: usize, message: &str) -> LogEvent {
        LogEvent {
            time: format!("2026-12-02T00:00:{:02}.000000", n % 60),
            stream: if n.is_multiple_of(7) {
                crate::source::Stream::Stderr
            } else {
                crate::source::Stream::Stdout
            },
            message: message.to_string(),
        }
    }

    fn page(events: &[LogEvent]) -> Vec<u8> {
        let mut page = format!("{{\"total\":{},\"truncated\":false}}\n", events.len()).into_bytes();
        for e in events {
            serde_json::to_writer(&mut page, e).expect("serializes");
            page.push(b'\n');
        }
        page
    }

    #[test]
    fn a_page_reads_the_same_in_any_pieces_and_on_two_threads() {
        // Large enough for several batches, each split across threads.
        let events: Vec<LogEvent> = (0..40_000)
            .map(|n| {
                event(
                    n,
                    &format!("line {n} \"quoted\" \\ é {}", "x".repeat(n % 90)),
                )
            })
            .collect();
        let bytes = page(&events);
        assert!(bytes.len() > 2 * BATCH);
        let mut want = vec![Owned::Total(events.len() as u64)];
        want.extend(events.iter().cloned().map(Owned::Event));
        for step in [bytes.len(), 65_536, 4093] {
            assert_eq!(read(&bytes, step).expect("reads"), want, "step {step}");
        }
    }

    #[test]
    fn a_last_line_without_its_newline_counts() {
        let mut bytes = page(&[event(1, "a"), event(2, "b")]);
        bytes.pop();
        let got = read(&bytes, 5).expect("reads");
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], Owned::Event(event(2, "b")));
    }

    #[test]
    fn damaged_pages_are_errors() {
        for bad in [
            "",
            "[]\n",
            "{\"total\":1}\n{\"stream\":3}\n",
            "{\"total\":1}\n{\"stream\":\"stdout\"\n",
            "{\"total\":1}\nnot json\n",
        ] {
            assert!(read(bad.as_bytes(), 3).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_reader_that_stops_gets_nothing_more() {
        let bytes = page(&[event(1, "a"), event(2, "b")]);
        let mut lines = PageLines::new();
        lines.push(&bytes).expect("takes");
        let mut seen = 0;
        let go_on = lines
            .drain(true, &mut |_| {
                seen += 1;
                seen < 2
            })
            .expect("reads");
        assert!(!go_on);
        assert_eq!(seen, 2);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = read(&bytes, 7);
        }
    }
}
