//! Stopping a whole process tree: a session's shell and everything it
//! started (the agent), or a local execution (the control plane).
//!
//! For a local execution, the agent runs in a process group of its own, but the command it wraps
//! runs in yet another group (so that the agent can signal it separately),
//! and anything the command starts may move to further groups or sessions.
//! Signalling the agent's group is therefore not enough: the tree is
//! collected from /proc by parent pid, and every group seen in it is
//! remembered so that children orphaned mid-stop (re-parented to init)
//! are still found through their group.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The fields of /proc/PID/stat that matter here.
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
    let state = fields.next()?;
    // Zombies are already dead; only their parent can make them go away.
    if state == "Z" || state == "X" {
        return None;
    }
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

/// A process tree being stopped: its root and every group seen so far.
#[derive(Debug, Clone)]
pub struct Tree {
    root: i32,
    groups: HashSet<i32>,
}

impl Tree {
    /// The tree rooted at `root` (which leads its own process group).
    pub fn new(root: i32) -> Self {
        Tree {
            root,
            groups: HashSet::from([root]),
        }
    }

    /// The living members now: the root, its descendants, and members of
    /// any group seen in the tree before. Never this process or init.
    pub fn members(&mut self) -> HashSet<i32> {
        self.collect(&all_processes())
    }

    fn collect(&mut self, procs: &[ProcStat]) -> HashSet<i32> {
        let own = std::process::id() as i32;
        let mut tree: HashSet<i32> = procs
            .iter()
            .filter(|p| p.pid == self.root || self.groups.contains(&p.pgrp))
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
                break;
            }
        }
        tree.retain(|&pid| pid > 1 && pid != own);
        for p in procs {
            if tree.contains(&p.pid) && p.pgrp > 1 {
                self.groups.insert(p.pgrp);
            }
        }
        tree
    }

    /// Sends `signal` to every living member; returns how many there were.
    pub fn signal(&mut self, signal: Signal) -> usize {
        let members = self.members();
        for &pid in &members {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        members.len()
    }
}

/// Stops the tree rooted at `root`: SIGTERM to every member, repeated so
/// that processes that start during the stop and an agent that would
/// otherwise linger after its command ended get it too, then SIGKILL to
/// whatever is left after `grace`. Returns once nothing of the tree is
/// alive (or after a last bounded wait if something refuses to die, such
/// as a process stuck in the kernel).
pub async fn stop_tree(root: i32, grace: Duration) {
    if root <= 1 {
        return;
    }
    let mut tree = Tree::new(root);
    let started = Instant::now();
    // Resend SIGTERM at this pace: the agent forwards the first one to its
    // command and, if it lingers afterwards, ends on the next one.
    let resend = Duration::from_millis(500);
    let mut last_term: Option<Instant> = None;
    while started.elapsed() < grace {
        if last_term.is_none_or(|t| t.elapsed() >= resend) {
            if tree.signal(Signal::SIGTERM) == 0 {
                return;
            }
            last_term = Some(Instant::now());
        } else if tree.members().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if tree.signal(Signal::SIGKILL) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILLs the tree rooted at `root` right away, without waiting; for
/// drops and other places that cannot await.
pub fn kill_tree_now(root: i32) {
    if root <= 1 {
        return;
    }
    let mut tree = Tree::new(root);
    // Twice: the first pass may miss a child forked while it ran.
    for _ in 0..2 {
        tree.signal(Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse_and_zombies_are_skipped() {
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
        assert_eq!(parse_stat("4243 (dead) Z 100 4242 4242 0"), None);
    }

    #[test]
    fn the_tree_follows_other_groups_and_orphans_of_seen_groups() {
        let mut tree = Tree::new(10);
        let procs = [
            ProcStat {
                pid: 10,
                ppid: 1,
                pgrp: 10,
            },
            ProcStat {
                pid: 11,
                ppid: 10,
                pgrp: 11,
            },
            ProcStat {
                pid: 12,
                ppid: 11,
                pgrp: 11,
            },
            ProcStat {
                pid: 20,
                ppid: 1,
                pgrp: 20,
            },
        ];
        assert_eq!(tree.collect(&procs), HashSet::from([10, 11, 12]));
        // 11 died; its child 12 was re-parented to init but keeps group 11.
        let later = [
            ProcStat {
                pid: 10,
                ppid: 1,
                pgrp: 10,
            },
            ProcStat {
                pid: 12,
                ppid: 1,
                pgrp: 11,
            },
            ProcStat {
                pid: 20,
                ppid: 1,
                pgrp: 20,
            },
        ];
        assert_eq!(tree.collect(&later), HashSet::from([10, 12]));
    }
}
