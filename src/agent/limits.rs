//! Process limits and log lines that an attacker can trigger at will.

use std::time::{Duration, Instant};

/// Raises the soft limit on open files to the hard limit, as a server
/// holding many connections should: the soft default (often 1024) is far
/// below what the container allows. Returns the soft limit before and
/// after, or why it could not be read or raised.
pub fn raise_nofile_limit() -> Result<(u64, u64), nix::Error> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    // An unlimited hard limit cannot be the soft one: the kernel caps open
    // files at fs.nr_open.
    let target = hard.min(nr_open());
    if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
        return Ok((soft, target));
    }
    Ok((soft, soft))
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// A log line that may be caused again and again (by an attacker, or a
/// full file table): said at most once per `every`, with how many times it
/// happened since it was last said.
pub struct Throttled {
    every: Duration,
    last: Option<Instant>,
    unsaid: u64,
}

impl Throttled {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        Throttled {
            every,
            last: None,
            unsaid: 0,
        }
    }

    /// Counts one occurrence at `now`; returns the count to report when a
    /// line is due, else `None`.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.unsaid += 1;
        match self.last {
            Some(last) if now.duration_since(last) < self.every => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unsaid))
            }
        }
    }
}

/// How long a log line about an attacker-caused event waits for the next.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_once_per_period_with_the_count() {
        let mut t = Throttled::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(1));
        for i in 1..=500u64 {
            assert_eq!(t.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.hit(t0 + Duration::from_secs(10)), Some(501));
        assert_eq!(t.hit(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn the_soft_file_limit_reaches_the_hard_one() {
        use nix::sys::resource::{getrlimit, Resource};
        raise_nofile_limit().expect("raise");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(soft, hard);
    }
}
