//! Process groups started by SSH channels, and killing them with every
//! descendant when their channel or connection goes away: a debug session
//! must not leave a `python train.py` copy running in the container.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use russh::ChannelId;

type Table = Arc<Mutex<HashMap<(u64, ChannelId), i32>>>;

/// Every process group started by any channel of any connection, so that
/// the agent can also clean up when it exits itself.
#[derive(Debug, Clone, Default)]
pub struct Registry(Table);

impl Registry {
    /// The view of one connection (numbered by the caller).
    pub fn connection(&self, conn: u64) -> Groups {
        Groups {
            table: self.0.clone(),
            conn,
        }
    }

    /// Kills every tracked process tree.
    pub fn kill_everything(&self) {
        kill_matching(&self.0, |_| true);
    }
}

/// The process groups of one connection's channels.
#[derive(Debug, Clone)]
pub struct Groups {
    table: Table,
    conn: u64,
}

impl Groups {
    /// Remembers that `channel` runs the process group led by `pgid`.
    pub fn register(&self, channel: ChannelId, pgid: i32) {
        lock(&self.table).insert((self.conn, channel), pgid);
    }

    /// Kills the process tree of `channel`, if it still has one.
    pub fn kill(&self, channel: ChannelId) {
        let key = (self.conn, channel);
        kill_matching(&self.table, |k| *k == key);
    }

    /// Kills every process tree of the connection.
    pub fn kill_all(&self) {
        let conn = self.conn;
        kill_matching(&self.table, |(c, _)| *c == conn);
    }
}

fn lock(table: &Table) -> std::sync::MutexGuard<'_, HashMap<(u64, ChannelId), i32>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

fn kill_matching(table: &Table, pick: impl Fn(&(u64, ChannelId)) -> bool) {
    let mut victims = Vec::new();
    lock(table).retain(|k, pgid| {
        let hit = pick(k);
        if hit {
            victims.push(*pgid);
        }
        !hit
    });
    for pgid in victims {
        kill_tree(pgid);
    }
}

/// One line of /proc/PID/stat that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    pid: i32,
    ppid: i32,
    pgrp: i32,
}

/// Parses /proc/PID/stat; the command name may hold spaces and parentheses,
/// so the fields are read after the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let pid = text.split_whitespace().next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { pid, ppid, pgrp })
}

fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .collect()
}

/// The group led by `pgid` plus every descendant of its members, including
/// those that moved to a group or session of their own.
fn tree_of(pgid: i32, procs: &[ProcStat]) -> HashSet<i32> {
    let mut tree: HashSet<i32> = procs
        .iter()
        .filter(|p| p.pgrp == pgid || p.pid == pgid)
        .map(|p| p.pid)
        .collect();
    loop {
        let before = tree.len();
        for p in procs {
            if tree.contains(&p.ppid) {
                tree.insert(p.pid);
            }
        }
        if tree.len() == before {
            return tree;
        }
    }
}

/// SIGKILLs the group led by `pgid` and all descendants of its members.
/// The tree is collected before any signal is sent: once a parent dies its
/// children are reparented and can no longer be found through it.
pub fn kill_tree(pgid: i32) {
    signal_tree(pgid, Signal::SIGKILL);
}

/// Sends `signal` to the group led by `pgid` and to every descendant of its
/// members; returns how many processes were signalled.
pub fn signal_tree(pgid: i32, signal: Signal) -> usize {
    if pgid <= 1 {
        return 0;
    }
    let own = std::process::id() as i32;
    let tree = tree_of(pgid, &all_processes());
    let _ = killpg(Pid::from_raw(pgid), signal);
    tree.into_iter()
        .filter(|pid| *pid != own && *pid > 1)
        .filter(|pid| kill(Pid::from_raw(*pid), signal).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let s = parse_stat("4242 (my (weird) prog) S 100 4242 4242 0 -1 4194560").expect("parses");
        assert_eq!(
            s,
            ProcStat {
                pid: 4242,
                ppid: 100,
                pgrp: 4242
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_tree_follows_children_that_left_the_group() {
        let procs = [
            ProcStat {
                pid: 10,
                ppid: 1,
                pgrp: 10,
            },
            ProcStat {
                pid: 11,
                ppid: 10,
                pgrp: 10,
            },
            ProcStat {
                pid: 12,
                ppid: 11,
                pgrp: 12,
            },
            ProcStat {
                pid: 13,
                ppid: 12,
                pgrp: 12,
            },
            ProcStat {
                pid: 20,
                ppid: 1,
                pgrp: 20,
            },
        ];
        let tree = tree_of(10, &procs);
        assert_eq!(tree, HashSet::from([10, 11, 12, 13]));
    }
}
