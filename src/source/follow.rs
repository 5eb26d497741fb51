//! Following a log through an API that has no offset: poll the last N
//! events and use the page's `total` to place them. A page fetched with
//! `limit=L` holds events `total - L .. total` of the log (all of them for
//! `limit=0`), so the new ones are those at or past the count already
//! delivered. Nothing is recognised by its text: identical neighbours
//! (blank lines, progress bars, repeated warnings at one millisecond) are
//! ordinary. When the window does not reach back to what was delivered, it
//! is widened to exactly what is missing, so a burst never loses a line.
//! Events come out in order, each exactly once.

use super::model::{EventsPage, LogEvent, LogEventRef};
use super::valohai::{ApiClient, ApiError, PageItem};

/// The usual poll window (what the official CLI uses).
pub const DEFAULT_WINDOW: u64 = 100;
/// Largest window kept between polls: a first page of a million lines
/// must not make every later poll ask for two million. A burst larger
/// than this is fetched by widening, once.
const MAX_STEADY_WINDOW: u64 = 10_000;
/// Extra room asked for on a widened fetch, for lines that arrive while
/// it is on its way.
const SLACK: u64 = 1_000;

/// What the follower wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Poll again later with this `limit`.
    Wait(u64),
    /// The window was too small: fetch again now with this `limit`.
    FetchNow(u64),
}

/// Where a follower starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// From the first event.
    Beginning,
    /// From the last N events (as `tail -n N`; 0 = only new ones).
    Tail(u64),
}

/// How a page's events are to be taken, decided from its `total` alone
/// (so that a page can be read as a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Skip this many leading events of the page, deliver the rest.
    Take {
        /// Leading events already delivered (or left out by a tail start).
        skip: u64,
    },
    /// The page does not reach back far enough: drop it and fetch again
    /// at once with this `limit`.
    Refetch(u64),
}

/// The follower's memory of one log: how many events were delivered.
#[derive(Debug, Clone)]
pub struct LogFollower {
    start: Option<Start>,
    /// Index of the next event to deliver.
    seen: u64,
    window: u64,
    /// When more than this many events are missing, skip ahead to the
    /// newest this many (a console pane keeps no more anyway).
    max_gap: Option<u64>,
    /// Events skipped over because of `max_gap`.
    skipped: u64,
    /// The `total` of the page being taken: once it is, everything
    /// before it has been delivered, whatever the page held.
    page_total: u64,
}

impl Default for LogFollower {
    fn default() -> Self {
        Self::new()
    }
}

impl LogFollower {
    /// A follower that delivers the whole log from its first event.
    pub fn new() -> Self {
        LogFollower {
            start: Some(Start::Beginning),
            seen: 0,
            window: DEFAULT_WINDOW,
            max_gap: None,
            skipped: 0,
            page_total: 0,
        }
    }

    /// A follower that starts with the last `n` events (`kubectl logs
    /// --tail`), then delivers every new one.
    pub fn tail(n: u64) -> Self {
        LogFollower {
            start: Some(Start::Tail(n)),
            ..Self::new()
        }
    }

    /// Bounds the events fetched at once: when more than `n` are missing,
    /// the older ones are skipped (and counted, see [`Self::skipped`]). For
    /// a view that keeps only `n` lines; a follower that must not lose a
    /// line has no bound.
    pub fn with_max_gap(mut self, n: u64) -> Self {
        self.max_gap = Some(n.max(1));
        self
    }

    /// The `limit` for the first fetch: everything, or the tail's size.
    pub fn first_limit(&self) -> u64 {
        match self.start {
            Some(Start::Tail(n)) => n.max(1),
            _ => 0,
        }
    }

    /// Events delivered (or skipped by a tail start) so far: the index of
    /// the next one.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Events passed over because of [`Self::with_max_gap`].
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Decides, from a page's `total`, what to take of a page fetched
    /// with `limit` (which then holds `min(limit, total)` events, or all
    /// of them for `limit=0`).
    pub fn plan(&mut self, limit: u64, total: u64) -> Plan {
        let got = if limit == 0 { total } else { limit.min(total) };
        self.plan_page(got, total)
    }

    /// [`Self::plan`] for a page known to hold the last `got` events.
    fn plan_page(&mut self, got: u64, total: u64) -> Plan {
        let got = got.min(total);
        let first = total - got;
        match self.start.take() {
            Some(Start::Tail(n)) => {
                // Only the last n, whatever came before.
                self.seen = total.saturating_sub(n).max(first);
            }
            Some(Start::Beginning) if first > 0 => {
                self.start = Some(Start::Beginning);
                return Plan::Refetch(self.widen(total));
            }
            Some(Start::Beginning) | None => {}
        }
        if total < self.seen {
            // A log that got shorter was replaced: take it from the start
            // of this page rather than wait for it to grow past us.
            self.seen = first;
        }
        if let Some(max) = self.max_gap {
            if total - self.seen > max {
                let to = total - max;
                self.skipped += to - self.seen;
                self.seen = to;
            }
        }
        if first > self.seen {
            return Plan::Refetch(self.widen(total));
        }
        self.page_total = total;
        Plan::Take {
            skip: self.seen - first,
        }
    }

    /// The limit that reaches back to the next undelivered event.
    fn widen(&mut self, total: u64) -> u64 {
        if self.seen == 0 {
            return 0;
        }
        let missing = total - self.seen;
        let mut limit = missing.saturating_add(SLACK);
        if let Some(max) = self.max_gap {
            limit = limit.min(max);
        }
        self.window = limit;
        limit
    }

    /// Records that the page planned last was taken (`n` new events
    /// delivered from it), and says what to do next.
    pub fn delivered(&mut self, n: u64) -> Next {
        self.seen = self.page_total.max(self.seen);
        // Keep a window big enough for what just arrived, so the next
        // burst of the same size needs one fetch.
        let mut wanted = n.saturating_mul(2).clamp(DEFAULT_WINDOW, MAX_STEADY_WINDOW);
        if let Some(max) = self.max_gap {
            wanted = wanted.min(max);
        }
        self.window = wanted;
        Next::Wait(self.window)
    }

    /// Takes a whole page fetched with `limit`; returns the new events in
    /// order and what to do next.
    pub fn accept(&mut self, _limit: u64, page: &EventsPage) -> (Vec<LogEvent>, Next) {
        // The page itself says how many it holds: trust that over the
        // limit asked for (a server may cap its windows).
        match self.plan_page(page.events.len() as u64, page.total) {
            Plan::Refetch(l) => (Vec::new(), Next::FetchNow(l)),
            Plan::Take { skip } => {
                let fresh: Vec<LogEvent> =
                    page.events.iter().skip(skip as usize).cloned().collect();
                let next = self.delivered(fresh.len() as u64);
                (fresh, next)
            }
        }
    }
}

/// Fetches one page of `id`'s log with `limit`, reading it as it
/// arrives, and hands the new events to `sink` in order: a page of any
/// size costs one event of memory. Returns what to do next.
pub async fn fetch(
    client: &ApiClient,
    id: &str,
    follower: &mut LogFollower,
    limit: u64,
    mut sink: impl FnMut(LogEventRef<'_>),
) -> Result<Next, ApiError> {
    let mut plan = None;
    let mut skip = 0;
    let mut delivered = 0;
    client
        .events_each(id, limit, |item| match item {
            PageItem::Total(total) => {
                let p = follower.plan(limit, total);
                plan = Some(p);
                match p {
                    Plan::Take { skip: s } => {
                        skip = s;
                        true
                    }
                    // Drop the rest of this page: a wider one comes next.
                    Plan::Refetch(_) => false,
                }
            }
            PageItem::Event(e) => {
                if skip > 0 {
                    skip -= 1;
                } else {
                    delivered += 1;
                    sink(e);
                }
                true
            }
        })
        .await?;
    Ok(match plan {
        Some(Plan::Refetch(l)) => Next::FetchNow(l),
        Some(Plan::Take { .. }) => follower.delivered(delivered),
        None => Next::Wait(follower.window),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::model::Stream;
    use proptest::prelude::*;

    fn ev(n: usize) -> LogEvent {
        LogEvent {
            time: format!("t{:08}", n / 3),
            stream: Stream::Stdout,
            message: format!("line {n}"),
        }
    }

    /// A server over a log, answering like Valohai: the last `limit`
    /// events (all for 0) and the total.
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

    /// The case from the issue: 75 blank lines at one time, then `end`.
    #[test]
    fn identical_events_all_come_out() {
        let blank = LogEvent {
            time: "2024-01-01T00:00:00.000000".into(),
            stream: Stream::Stdout,
            message: String::new(),
        };
        let mut log = vec![blank; 75];
        log.push(LogEvent {
            message: "end".into(),
            ..ev(0)
        });
        let mut f = LogFollower::new();
        let mut out = Vec::new();
        let mut limit = f.first_limit();
        for end in [3, 40, 41, 75, 76] {
            limit = drain(&mut f, &log[..end], limit, &mut out);
        }
        assert_eq!(out, log);
    }

    #[test]
    fn a_tail_start_gives_the_last_n_then_everything_new() {
        let all: Vec<LogEvent> = (0..1_000).map(ev).collect();
        let mut f = LogFollower::tail(10);
        let mut out = Vec::new();
        let first = f.first_limit();
        let limit = drain(&mut f, &all[..500], first, &mut out);
        assert_eq!(out, all[490..500]);
        drain(&mut f, &all, limit, &mut out);
        assert_eq!(out, all[490..]);
    }

    #[test]
    fn a_long_first_page_does_not_make_every_poll_long() {
        let all: Vec<LogEvent> = (0..50_000).map(ev).collect();
        let mut f = LogFollower::new();
        let mut out = Vec::new();
        let limit = drain(&mut f, &all, 0, &mut out);
        assert_eq!(limit, MAX_STEADY_WINDOW);
        assert_eq!(out.len(), 50_000);
    }

    #[test]
    fn a_bounded_follower_skips_ahead_and_counts() {
        let all: Vec<LogEvent> = (0..10_000).map(ev).collect();
        let mut f = LogFollower::tail(100).with_max_gap(100);
        let mut out = Vec::new();
        let first = f.first_limit();
        let limit = drain(&mut f, &all[..50], first, &mut out);
        let limit = drain(&mut f, &all[..60], limit, &mut out);
        assert!(limit <= 100, "{limit}");
        drain(&mut f, &all, limit, &mut out);
        assert_eq!(out.len(), 160);
        assert_eq!(out[60..], all[9_900..]);
        assert_eq!(f.skipped(), 9_840);
    }

    proptest! {
        /// Any log (drawn from very few distinct events, so identical
        /// neighbours abound), growing by any bursts (many larger than
        /// the window), comes out whole and in order.
        #[test]
        fn every_event_comes_out_once_in_order(
            kinds in proptest::collection::vec(0u8..3, 0..3_000),
            bursts in proptest::collection::vec(0usize..700, 1..30),
            tail in proptest::option::of(0u64..200),
        ) {
            let log: Vec<LogEvent> = kinds
                .iter()
                .map(|k| LogEvent {
                    time: "2024-01-01T00:00:00.000000".into(),
                    stream: Stream::Stdout,
                    message: if *k == 0 { String::new() } else { format!("{k}") },
                })
                .collect();
            let mut f = tail.map_or_else(LogFollower::new, LogFollower::tail);
            let mut limit = f.first_limit();
            let mut out = Vec::new();
            let mut end = 0;
            let mut first_end = None;
            for b in bursts {
                end = (end + b).min(log.len());
                first_end.get_or_insert(end);
                limit = drain(&mut f, &log[..end], limit, &mut out);
            }
            limit = drain(&mut f, &log, limit, &mut out);
            drain(&mut f, &log, limit, &mut out);
            let from = match (tail, first_end) {
                (Some(n), Some(e)) => e.saturating_sub(n as usize),
                _ => 0,
            };
            prop_assert_eq!(&out[..], &log[from..]);
        }
    }
}
