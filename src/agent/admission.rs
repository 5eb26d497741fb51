//! Who may hold a connection before authenticating: the start-up cap
//! (`--max-startups`, sshd's `MaxStartups`) and the login grace time's
//! bookkeeping.
//!
//! sshd refuses *new* connections past its cap, at random between `start`
//! and `full`. Under a flood that locks the owner out most of the time,
//! since the owner's connection is one new connection among thousands.
//! Here the connection closed is chosen from the source address holding
//! the most unauthenticated connections, the oldest of them: a flood from
//! one address (or a few) evicts itself, and the owner, with one pending
//! connection from its own address, is not touched. When the newcomer's
//! address is that heaviest source, the newcomer is the one refused, at
//! once, so it never holds memory or a file descriptor.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use rand::RngExt as _;

use super::kill::KillSwitch;

/// `start:rate:full`, as sshd's `MaxStartups`: from `start` unauthenticated
/// connections on, a connection is dropped with a probability rising
/// linearly from `rate` percent to 100 percent at `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxStartups {
    /// Pending connections held without any drop.
    pub start: usize,
    /// Drop probability (percent) at `start`.
    pub rate: u32,
    /// Pending connections never exceed this.
    pub full: usize,
}

impl Default for MaxStartups {
    /// sshd's default, `10:30:100`.
    fn default() -> Self {
        MaxStartups {
            start: 10,
            rate: 30,
            full: 100,
        }
    }
}

impl fmt::Display for MaxStartups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

impl FromStr for MaxStartups {
    type Err = String;

    /// `N` (a hard cap, as sshd reads it) or `start:rate:full`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str, what: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("{what} in {s:?} is not a whole number"))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let limits = match parts.as_slice() {
            [n] => {
                let n = number(n, "the cap")?;
                MaxStartups {
                    start: n,
                    rate: 100,
                    full: n,
                }
            }
            [start, rate, full] => MaxStartups {
                start: number(start, "start")?,
                rate: u32::try_from(number(rate, "rate")?).unwrap_or(u32::MAX),
                full: number(full, "full")?,
            },
            _ => return Err(format!("{s:?} is neither N nor start:rate:full")),
        };
        if limits.full == 0 {
            return Err("full must be at least 1: 0 would refuse every connection".into());
        }
        if limits.start > limits.full {
            return Err(format!(
                "start ({}) is larger than full ({})",
                limits.start, limits.full
            ));
        }
        if limits.rate > 100 {
            return Err(format!("rate ({}) is a percentage: 0 to 100", limits.rate));
        }
        Ok(limits)
    }
}

impl MaxStartups {
    /// These limits, with `full` lowered to half of `open_files` (the
    /// process's file limit): unauthenticated connections must never take
    /// the file descriptors that the owner's session needs.
    pub fn fitted_to(self, open_files: u64) -> MaxStartups {
        let half = usize::try_from(open_files / 2).unwrap_or(usize::MAX).max(1);
        if self.full <= half {
            return self;
        }
        MaxStartups {
            start: self.start.min(half),
            rate: self.rate,
            full: half,
        }
    }

    /// The drop probability, in percent, with `pending` connections held.
    fn drop_percent(&self, pending: usize) -> u32 {
        if pending < self.start {
            0
        } else if pending >= self.full {
            100
        } else {
            let span = (self.full - self.start) as u64;
            let over = (pending - self.start) as u64;
            let rate = u64::from(self.rate);
            u32::try_from(rate + (100 - rate) * over / span).unwrap_or(100)
        }
    }
}

struct Pending {
    source: IpAddr,
    kill: KillSwitch,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// Unauthenticated connections by arrival order (ids only grow).
    pending: BTreeMap<u64, Pending>,
}

impl Table {
    /// The connection to drop: the oldest pending one of the source that
    /// holds the most. `None` means the newcomer from `newcomer` itself,
    /// when its source already holds as many as any other: refusing it
    /// costs nothing and leaves the other sources alone.
    fn victim(&self, newcomer: Option<IpAddr>) -> Option<u64> {
        let mut counts: HashMap<IpAddr, usize> = HashMap::new();
        for p in self.pending.values() {
            *counts.entry(p.source).or_default() += 1;
        }
        let heaviest = counts.values().copied().max().unwrap_or(0);
        if let Some(source) = newcomer {
            if counts.get(&source).copied().unwrap_or(0) >= heaviest {
                return None;
            }
        }
        self.pending
            .iter()
            .find(|(_, p)| counts.get(&p.source) == Some(&heaviest))
            .map(|(id, _)| *id)
    }
}

/// What [`Admission::admit`] decided about a new connection.
pub enum Admit {
    /// Serve it; the ticket leaves the pending table when it is dropped or
    /// the connection authenticates.
    Accepted(Ticket),
    /// Close it at once: its source already holds the most pending
    /// connections and the cap says one must go.
    Refused,
}

/// The table of unauthenticated connections, shared by the accept loop and
/// every connection's handler.
#[derive(Clone)]
pub struct Admission {
    limits: MaxStartups,
    table: Arc<Mutex<Table>>,
}

impl Admission {
    /// A table enforcing `limits`.
    pub fn new(limits: MaxStartups) -> Self {
        Admission {
            limits,
            table: Arc::default(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table holds plain data; a panic elsewhere cannot break it.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limits it enforces.
    pub fn limits(&self) -> MaxStartups {
        self.limits
    }

    /// How many connections have not authenticated yet.
    pub fn pending(&self) -> usize {
        self.table().pending.len()
    }

    /// How many connections were admitted since the start (a counter that
    /// only grows).
    pub fn admitted(&self) -> u64 {
        self.table().next_id
    }

    /// Registers a connection from `source`, dropping one pending
    /// connection first if the cap says so.
    pub fn admit(&self, source: IpAddr) -> Admit {
        let mut table = self.table();
        let percent = self.limits.drop_percent(table.pending.len());
        if percent > 0 && rand::rng().random_range(0..100) < percent {
            match table.victim(Some(source)) {
                None => return Admit::Refused,
                Some(id) => {
                    if let Some(old) = table.pending.remove(&id) {
                        old.kill.kill();
                    }
                }
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let kill = KillSwitch::default();
        table.pending.insert(
            id,
            Pending {
                source,
                kill: kill.clone(),
            },
        );
        Admit::Accepted(Ticket {
            id,
            kill,
            admission: self.clone(),
        })
    }

    /// Closes one pending connection (the oldest of the heaviest source),
    /// to free its file descriptor when `accept` runs out of them. Returns
    /// whether there was one.
    pub fn evict_one(&self) -> bool {
        let mut table = self.table();
        let Some(id) = table.victim(None) else {
            return false;
        };
        if let Some(old) = table.pending.remove(&id) {
            old.kill.kill();
        }
        true
    }
}

/// One connection's place in the pending table.
pub struct Ticket {
    id: u64,
    kill: KillSwitch,
    admission: Admission,
}

impl Ticket {
    /// The switch that closes this connection's stream.
    pub fn kill_switch(&self) -> KillSwitch {
        self.kill.clone()
    }

    /// The connection authenticated: it no longer counts against the cap
    /// and cannot be evicted.
    pub fn authenticated(&self) {
        self.kill.set_authenticated();
        self.admission.table().pending.remove(&self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.table().pending.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn parses_sshd_forms_and_refuses_nonsense() {
        assert_eq!(
            "10:30:100".parse::<MaxStartups>(),
            Ok(MaxStartups::default())
        );
        assert_eq!(
            "5".parse::<MaxStartups>(),
            Ok(MaxStartups {
                start: 5,
                rate: 100,
                full: 5
            })
        );
        for bad in ["", "0", "a:b:c", "10:30", "20:30:10", "1:101:2", "1:2:3:4"] {
            assert!(bad.parse::<MaxStartups>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_cap_leaves_half_the_file_table_free() {
        let m = MaxStartups::default();
        assert_eq!(m.fitted_to(1024), m);
        assert_eq!(
            m.fitted_to(64),
            MaxStartups {
                start: 10,
                rate: 30,
                full: 32
            }
        );
        assert_eq!(m.fitted_to(10).start, 5);
        assert_eq!(m.fitted_to(0).full, 1);
    }

    #[test]
    fn drop_probability_rises_from_rate_to_full() {
        let m = MaxStartups::default();
        assert_eq!(m.drop_percent(9), 0);
        assert_eq!(m.drop_percent(10), 30);
        assert_eq!(m.drop_percent(55), 65);
        assert_eq!(m.drop_percent(100), 100);
        assert_eq!(m.drop_percent(5000), 100);
    }

    #[test]
    fn a_flooding_source_evicts_itself_and_spares_the_owner() {
        let admission = Admission::new("3".parse().expect("limits"));
        let owner = match admission.admit(ip("127.0.0.1")) {
            Admit::Accepted(t) => t,
            Admit::Refused => panic!("the first connection was refused"),
        };
        let mut flood = Vec::new();
        for _ in 0..50 {
            if let Admit::Accepted(t) = admission.admit(ip("127.0.0.2")) {
                flood.push(t);
            }
        }
        assert_eq!(admission.pending(), 3, "the cap holds");
        assert!(
            !owner.kill.is_killed(),
            "the owner's connection was evicted"
        );
        // Once the flooder holds two of three places, its new connections
        // are refused outright rather than evicting anyone.
        let killed = flood.iter().filter(|t| t.kill.is_killed()).count();
        assert!(
            killed <= 1,
            "{killed} accepted flood connections were evicted"
        );
        assert!(matches!(admission.admit(ip("127.0.0.2")), Admit::Refused));
        // The owner's second connection still gets a place: an older flood
        // connection makes room.
        assert!(matches!(
            admission.admit(ip("127.0.0.1")),
            Admit::Accepted(_)
        ));
        assert!(!owner.kill.is_killed());
    }

    #[test]
    fn ties_between_sources_evict_the_oldest() {
        let admission = Admission::new("2".parse().expect("limits"));
        let Admit::Accepted(first) = admission.admit(ip("10.0.0.1")) else {
            panic!("refused")
        };
        let Admit::Accepted(_second) = admission.admit(ip("10.0.0.2")) else {
            panic!("refused")
        };
        let Admit::Accepted(_third) = admission.admit(ip("10.0.0.3")) else {
            panic!("refused a newcomer from a new address")
        };
        assert!(first.kill.is_killed());
        assert_eq!(admission.pending(), 2);
    }

    #[test]
    fn authenticated_connections_leave_the_table() {
        let admission = Admission::new("1".parse().expect("limits"));
        let Admit::Accepted(t) = admission.admit(ip("127.0.0.1")) else {
            panic!("refused")
        };
        t.authenticated();
        assert_eq!(admission.pending(), 0);
        let Admit::Accepted(_other) = admission.admit(ip("127.0.0.1")) else {
            panic!("an authenticated connection counted against the cap")
        };
        assert!(!t.kill.is_killed());
        assert!(!admission.evict_one() || !t.kill.is_killed());
        drop(t);
    }
}
