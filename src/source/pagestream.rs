//! Reading an events page (`{"total": N, "truncated": b, "events": [...]}`)
//! as it arrives, one event at a time, so that a page of any size costs
//! one event of memory.
//!
//! An event that lies whole within the bytes at hand is parsed by serde
//! straight from them, which also tells where it ends: a long log is read
//! in one pass. Only an event cut by the end of a chunk (one per chunk) is
//! split at the JSON structure (strings and nesting tracked) and gathered
//! before it is parsed.

use super::model::LogEventRef;

/// Longest top-level member kept (`total`, `truncated`, anything else).
const MAX_MEMBER: usize = 1 << 20;
/// Longest event: a 64 KiB line with every character escaped, and room.
const MAX_EVENT: usize = 16 << 20;

/// One piece of a page, borrowed from the splitter until the next one.
#[derive(Debug, PartialEq)]
pub enum Piece<'a> {
    /// A top-level member other than `events`.
    Member(String, serde_json::Value),
    /// One element of `events`.
    Event(LogEventRef<'a>),
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    /// Not JSON of the page's shape.
    #[error("not an events page: {0}")]
    Shape(&'static str),
    /// A member or an event past its bound.
    #[error("an events page with a value longer than {0} bytes")]
    TooLong(usize),
    /// A member that is not JSON.
    #[error("an events page with a damaged member: {0}")]
    Member(String),
    /// An element of `events` that is not an event.
    #[error("an event: {0}")]
    Event(String),
}

/// Splits a page's bytes, fed in any pieces, into [`Piece`]s.
#[derive(Debug, Default)]
pub struct PageSplitter {
    depth: u32,
    in_str: bool,
    escaped: bool,
    in_events: bool,
    done: bool,
    buf: Vec<u8>,
}

impl PageSplitter {
    /// A splitter at the start of a page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the page, handing complete pieces to
    /// `out`; stops (returning `false`) as soon as `out` does.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut impl FnMut(Piece<'_>) -> bool,
    ) -> Result<bool, PageError> {
        // An event is not copied byte by byte: it is handed out as a slice
        // of `bytes` when it lies within them, and only the part read
        // before this call (or left at its end) goes through `buf`.
        let mut event_from = (self.in_events && self.depth >= 3).then_some(0);
        let mut i = 0;
        while i < bytes.len() {
            if self.in_str {
                // Most bytes are inside strings: skip up to the next quote
                // or backslash at once.
                let rest = &bytes[i..];
                let stop = if self.escaped {
                    0
                } else {
                    rest.iter()
                        .position(|&b| b == b'"' || b == b'\\')
                        .unwrap_or(rest.len())
                };
                if !self.in_events {
                    self.keep(&rest[..stop])?;
                }
                i += stop;
                if i == bytes.len() {
                    break;
                }
                let b = bytes[i];
                if !self.in_events {
                    self.keep(&[b])?;
                }
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_str = false;
                }
                i += 1;
                continue;
            }
            let b = bytes[i];
            i += 1;
            match self.depth {
                0 => match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b'{' if !self.done => self.depth = 1,
                    _ => return Err(PageError::Shape("not one JSON object")),
                },
                1 => match b {
                    b'}' => {
                        self.depth = 0;
                        self.done = true;
                        if !self.end_member(out)? {
                            return Ok(false);
                        }
                    }
                    b',' => {
                        if !self.end_member(out)? {
                            return Ok(false);
                        }
                    }
                    b'[' if self.is_events_key() => {
                        self.buf.clear();
                        self.in_events = true;
                        self.depth = 2;
                    }
                    b'[' | b'{' => {
                        self.keep(&[b])?;
                        self.depth += 1;
                    }
                    b'"' => {
                        self.keep(&[b])?;
                        self.in_str = true;
                    }
                    _ => self.keep(&[b])?,
                },
                2 if self.in_events => match b {
                    b' ' | b'\t' | b'\r' | b'\n' | b',' => {}
                    b']' => {
                        self.in_events = false;
                        self.depth = 1;
                    }
                    b'{' => {
                        let start = i - 1;
                        let mut parsed = serde_json::Deserializer::from_slice(&bytes[start..])
                            .into_iter::<LogEventRef<'_>>();
                        if let Some(Ok(event)) = parsed.next() {
                            i = start + parsed.byte_offset();
                            if !out(Piece::Event(event)) {
                                return Ok(false);
                            }
                            continue;
                        }
                        // Cut by the end of these bytes (or damaged, which
                        // the parse of the whole event will say): gathered
                        // the slow way.
                        self.buf.clear();
                        event_from = Some(start);
                        self.depth = 3;
                    }
                    _ => return Err(PageError::Shape("an event that is not an object")),
                },
                _ => {
                    if !self.in_events {
                        self.keep(&[b])?;
                    }
                    match b {
                        b'"' => self.in_str = true,
                        b'[' | b'{' => self.depth += 1,
                        b']' | b'}' => {
                            self.depth -= 1;
                            if self.in_events && self.depth == 2 {
                                let here = &bytes[event_from.take().unwrap_or(0)..i];
                                let go_on = if self.buf.is_empty() {
                                    if here.len() > MAX_EVENT {
                                        return Err(PageError::TooLong(MAX_EVENT));
                                    }
                                    out(Piece::Event(parse_event(here)?))
                                } else {
                                    self.keep(here)?;
                                    // The buffer keeps its room for the next one.
                                    let go_on = out(Piece::Event(parse_event(&self.buf)?));
                                    self.buf.clear();
                                    go_on
                                };
                                if !go_on {
                                    return Ok(false);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Some(from) = event_from {
            // An event goes on in the next bytes.
            self.keep(&bytes[from..])?;
        }
        Ok(true)
    }

    /// Checks that the page ended where it should.
    pub fn finish(&self) -> Result<(), PageError> {
        if self.done {
            Ok(())
        } else {
            Err(PageError::Shape("the page ends early"))
        }
    }

    fn keep(&mut self, bytes: &[u8]) -> Result<(), PageError> {
        let max = if self.in_events {
            MAX_EVENT
        } else {
            MAX_MEMBER
        };
        if self.buf.len() + bytes.len() > max {
            return Err(PageError::TooLong(max));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Whether the member read so far is `"events":`, waiting for its value.
    fn is_events_key(&self) -> bool {
        let text = self.buf.trim_ascii();
        let Some(key) = text.strip_suffix(b":") else {
            return false;
        };
        serde_json::from_slice::<String>(key.trim_ascii()).is_ok_and(|k| k == "events")
    }

    fn end_member(&mut self, out: &mut impl FnMut(Piece<'_>) -> bool) -> Result<bool, PageError> {
        let text = std::mem::take(&mut self.buf);
        if text.trim_ascii().is_empty() {
            return Ok(true);
        }
        let mut object = Vec::with_capacity(text.len() + 2);
        object.push(b'{');
        object.extend_from_slice(&text);
        object.push(b'}');
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&object).map_err(|e| PageError::Member(e.to_string()))?;
        Ok(map.into_iter().all(|(k, v)| out(Piece::Member(k, v))))
    }
}

fn parse_event(raw: &[u8]) -> Result<LogEventRef<'_>, PageError> {
    serde_json::from_slice(raw).map_err(|e| PageError::Event(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Owned pieces, for comparing.
    #[derive(Debug, PartialEq)]
    enum Owned {
        Member(String, serde_json::Value),
        Event(crate::source::LogEvent),
    }

    fn split(page: &[u8], step: usize) -> Result<Vec<Owned>, PageError> {
        let mut s = PageSplitter::new();
        let mut out = Vec::new();
        let mut keep = |p: Piece<'_>| {
            out.push(match p {
                Piece::Member(k, v) => Owned::Member(k, v),
                Piece::Event(event) => Owned::Event(event.to_owned_event()),
            });
            true
        };
        for chunk in page.chunks(step.max(1)) {
            s.feed(chunk, &mut keep)?;
        }
        s.finish()?;
        Ok(out)
    }

    const PAGE: &str = r#" {"total": 3, "truncated" : false, "events": [
        {"time": "t", "stream": "stdout", "message": "a \"quoted\" ] } [ {"},
        {"time": "t", "stream": "stdout", "message": "\\"},
        {"time": "t", "stream": "stderr", "message": "", "extra": {"n": [1, {}]}}
    ], "later": {"x": [1]}} "#;

    #[test]
    fn pages_split_into_members_and_events() {
        let want = split(PAGE.as_bytes(), PAGE.len()).expect("splits");
        assert_eq!(want[0], Owned::Member("total".into(), 3.into()));
        assert_eq!(want[1], Owned::Member("truncated".into(), false.into()));
        let events: Vec<crate::source::LogEvent> = want
            .iter()
            .filter_map(|p| match p {
                Owned::Event(event) => Some(event.clone()),
                Owned::Member(..) => None,
            })
            .collect();
        let full: crate::source::model::EventsPage =
            serde_json::from_str(PAGE).expect("parses whole");
        assert_eq!(events, full.events);
        assert!(matches!(&want[5], Owned::Member(k, _) if k == "later"));
        // Any split of the bytes gives the same pieces.
        for step in 1..12 {
            assert_eq!(split(PAGE.as_bytes(), step).expect("splits"), want);
        }
    }

    #[test]
    fn bad_pages_are_errors() {
        for bad in [
            "",
            "[]",
            r#"{"events": [1]}"#,
            r#"{"total": 1"#,
            "{} {}",
            r#"{"a": tru}"#,
            r#"{"events": [{"stream": 3}]}"#,
            r#"{"total": 2, "events": [{"stream": "stdout"}, {"stream": "stdout", "message": 1}]}"#,
        ] {
            assert!(split(bad.as_bytes(), 3).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = split(&bytes, 7);
        }
    }
}
