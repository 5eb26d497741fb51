//! Following a log through an API that has no offset: poll the last N
//! events, find where they overlap what was already seen, and widen the
//! window (up to everything) when they do not, so a burst never loses a
//! line. Events come out in order, each exactly once.

use std::collections::VecDeque;

use super::model::{EventsPage, LogEvent};

/// The usual poll window (what the official CLI uses).
pub const DEFAULT_WINDOW: u64 = 100;
/// Past this window the whole log is fetched (`limit=0`).
const MAX_WINDOW: u64 = 100_000;
/// How many recent events are kept to recognise the overlap.
const TAIL: usize = 64;

/// What the follower wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Poll again later with this `limit`.
    Wait(u64),
    /// The window was too small: fetch again now with this `limit`.
    FetchNow(u64),
}

/// The follower's memory of one log.
#[derive(Debug, Clone)]
pub struct LogFollower {
    tail: VecDeque<LogEvent>,
    seen: u64,
    window: u64,
}

impl Default for LogFollower {
    fn default() -> Self {
        LogFollower {
            tail: VecDeque::new(),
            seen: 0,
            window: DEFAULT_WINDOW,
        }
    }
}

impl LogFollower {
    /// A follower that has seen nothing; the first fetch should be `limit=0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `limit` for the first fetch: everything.
    pub fn first_limit(&self) -> u64 {
        0
    }

    /// Events delivered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Takes a page fetched with `limit`; returns the new events in order
    /// and what to do next.
    pub fn accept(&mut self, limit: u64, page: &EventsPage) -> (Vec<LogEvent>, Next) {
        let got = &page.events;
        let complete =
            limit == 0 || (got.len() as u64) < limit || !page.truncated && page.total <= limit;
        let fresh: Vec<LogEvent> = if self.tail.is_empty() {
            if complete || self.seen == 0 && !page.truncated {
                got.clone()
            } else {
                // First look at a long log through a small window: get it all.
                return (Vec::new(), Next::FetchNow(0));
            }
        } else if let Some(i) = self.overlap(got) {
            got[i + 1..].to_vec()
        } else if complete {
            // The whole log is here but our tail is not in it: it is shorter
            // than what we saw (restarted log). Take what is beyond our count.
            got.iter().skip(self.seen as usize).cloned().collect()
        } else {
            let wider = if self.window.saturating_mul(4) > MAX_WINDOW {
                0
            } else {
                self.window * 4
            };
            self.window = if wider == 0 { MAX_WINDOW } else { wider };
            return (Vec::new(), Next::FetchNow(wider));
        };
        for e in &fresh {
            if self.tail.len() == TAIL {
                self.tail.pop_front();
            }
            self.tail.push_back(e.clone());
        }
        self.seen += fresh.len() as u64;
        // Keep a window big enough for what just arrived, so the next
        // burst of the same size needs one fetch.
        let wanted = (fresh.len() as u64 * 2).clamp(DEFAULT_WINDOW, MAX_WINDOW);
        self.window = wanted;
        (fresh, Next::Wait(self.window))
    }

    /// The index in `got` of our last seen event, checking that the events
    /// before it match our tail too (identical lines are common).
    fn overlap(&self, got: &[LogEvent]) -> Option<usize> {
        let last = self.tail.back()?;
        (0..got.len()).rev().find(|&i| {
            if &got[i] != last {
                return false;
            }
            let depth = i.min(self.tail.len() - 1);
            (1..=depth).all(|d| got[i - d] == self.tail[self.tail.len() - 1 - d])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::model::Stream;

    fn ev(n: usize) -> LogEvent {
        LogEvent {
            time: format!("t{:08}", n / 3),
            stream: Stream::Stdout,
            message: format!("line {n}"),
        }
    }

    /// A fake server over a log of `n` events, answering like Valohai.
    fn page(log: &[LogEvent], limit: u64) -> EventsPage {
        let take = if limit == 0 {
            log.len()
        } else {
            (limit as usize).min(log.len())
        };
        EventsPage {
            total: log.len() as u64,
            truncated: take < log.len(),
            events: log[log.len() - take..].to_vec(),
        }
    }

    fn drain(
        f: &mut LogFollower,
        log: &[LogEvent],
        mut limit: u64,
        out: &mut Vec<LogEvent>,
    ) -> u64 {
        for _ in 0..20 {
            let (fresh, next) = f.accept(limit, &page(log, limit));
            out.extend(fresh);
            match next {
                Next::FetchNow(l) => limit = l,
                Next::Wait(l) => return l,
            }
        }
        panic!("did not settle");
    }

    #[test]
    fn bursts_between_polls_lose_nothing() {
        let all: Vec<LogEvent> = (0..20_000).map(ev).collect();
        let mut f = LogFollower::new();
        let mut out = Vec::new();
        let first = f.first_limit();
        let mut limit = drain(&mut f, &all[..10], first, &mut out);
        for end in [11, 150, 151, 5_000, 5_001, 20_000] {
            limit = drain(&mut f, &all[..end], limit, &mut out);
        }
        assert_eq!(out, all);
    }

    #[test]
    fn identical_lines_are_not_mistaken_for_the_overlap() {
        let mut log: Vec<LogEvent> = (0..5).map(ev).collect();
        let same = LogEvent {
            time: "t".into(),
            stream: Stream::Stdout,
            message: "same".into(),
        };
        let mut f = LogFollower::new();
        let mut out = Vec::new();
        log.push(same.clone());
        let limit = drain(&mut f, &log, 0, &mut out);
        log.push(same.clone());
        log.push(same.clone());
        drain(&mut f, &log, limit, &mut out);
        assert_eq!(out, log);
    }
}
