//! Process groups started by SSH channels, and killing them with every
//! descendant when their channel or connection goes away: a debug session
//! must not leave a `python train.py` copy running in the container.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

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

/// SIGKILLs the group led by `pgid` and every descendant of its members,
/// including those that moved to a group or session of their own.
pub fn kill_tree(pgid: i32) {
    crate::proctree::kill_tree_now(pgid);
}
