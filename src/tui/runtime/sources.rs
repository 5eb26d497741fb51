//! Tasks that poll the sources: the executions lists (with their SSH
//! announcements and lingers) and the followed logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::source::follow::{LogFollower, Next};
use crate::source::scanner::{scan_linger, Endpoint, Linger, Scanner};
use crate::source::valohai::ExecutionFilter;
use crate::source::{ApiClient, Stream};
use crate::tui::action::Msg;

use super::{LINGER_TAIL, LIST_POLL, LOG_POLL, MAX_BACKOFF, MAX_TAIL_SCANS};

/// Polls one source's executions list, with their SSH announcements
/// and lingers, backing off while it fails.
pub(super) async fn poll_list(
    source: usize,
    client: ApiClient,
    tx: mpsc::Sender<Msg>,
    endpoints: Arc<Mutex<HashMap<String, Endpoint>>>,
    owners: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut backoff = LIST_POLL;
    // What was last said of each linger, so that a poll says only news.
    let mut lingers: HashMap<String, Linger> = HashMap::new();
    loop {
        let filter = ExecutionFilter {
            limit: Some(200),
            ..Default::default()
        };
        match client.executions(&filter).await {
            Ok(list) => {
                backoff = LIST_POLL;
                {
                    let mut map = owners.lock().unwrap_or_else(PoisonError::into_inner);
                    for e in &list {
                        map.insert(e.id.clone(), source);
                    }
                }
                // Announcements of running executions (and of finished ones
                // not scanned yet: a lingering agent still answers).
                let mut scans = Vec::new();
                // Running ones with an agent: the end of their log says
                // whether the command has ended and the agent lingers.
                let mut tails = Vec::new();
                for e in &list {
                    let known = endpoints
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains_key(&e.id);
                    if !e.status().is_finished() || !known {
                        scans.push(e.id.clone());
                    }
                    if known && !e.status().is_finished() {
                        tails.push(e.id.clone());
                    }
                }
                if tx.send(Msg::Executions(source, Ok(list))).await.is_err() {
                    return;
                }
                for id in scans.into_iter().take(50) {
                    if let Ok(status) = client.status_events(&id).await {
                        let mut scanner = Scanner::new();
                        for ev in &status.status_events {
                            scanner.feed(&ev.message);
                        }
                        if let Some(ep) = scanner.latest().cloned() {
                            publish(&endpoints, &tx, &id, ep).await;
                        }
                    }
                }
                for id in tails.into_iter().take(MAX_TAIL_SCANS) {
                    let Ok(page) = client.events(&id, LINGER_TAIL).await else {
                        continue;
                    };
                    let Some(linger) = page
                        .events
                        .iter()
                        .rev()
                        .find_map(|e| scan_linger(&e.message))
                    else {
                        continue;
                    };
                    if lingers.get(&id) != Some(&linger) {
                        lingers.insert(id.clone(), linger);
                        let _ = tx
                            .send(Msg::Linger {
                                exec_id: id,
                                linger,
                            })
                            .await;
                    }
                }
            }
            Err(e) => {
                let retry = e.is_retryable();
                if tx
                    .send(Msg::Executions(source, Err(e.to_string())))
                    .await
                    .is_err()
                {
                    return;
                }
                backoff = if retry {
                    (backoff * 2).min(MAX_BACKOFF)
                } else {
                    MAX_BACKOFF
                };
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Records an execution's SSH announcement; reports it only when it changed.
async fn publish(
    endpoints: &Mutex<HashMap<String, Endpoint>>,
    tx: &mpsc::Sender<Msg>,
    id: &str,
    ep: Endpoint,
) {
    let changed = {
        let mut map = endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = map.get(id) != Some(&ep);
        map.insert(id.to_string(), ep.clone());
        changed
    };
    if changed {
        let _ = tx
            .send(Msg::Endpoint {
                exec_id: id.to_string(),
                endpoint: ep,
            })
            .await;
    }
}

/// Feeds a log pane: the log's tail first (as much as the pane keeps),
/// shown at once, then every new line. A burst larger than the pane
/// skips ahead (a notice says how much): memory follows the scrollback,
/// not the log.
pub(super) async fn follow_log(
    client: ApiClient,
    keep: u64,
    exec_id: String,
    tx: mpsc::Sender<Msg>,
    endpoints: Arc<Mutex<HashMap<String, Endpoint>>>,
) {
    let keep = keep.max(1);
    let mut follower = LogFollower::tail(keep).with_max_gap(keep);
    let mut skipped = 0;
    let mut scanner = Scanner::new();
    let mut limit = follower.first_limit();
    let mut backoff = LOG_POLL;
    loop {
        match client.events(&exec_id, limit).await {
            Ok(page) => {
                backoff = LOG_POLL;
                let (mut fresh, next) = follower.accept(limit, &page);
                if follower.skipped() > skipped {
                    // Said in the log itself, where the lines are missing.
                    fresh.insert(
                        0,
                        crate::source::LogEvent {
                            time: crate::source::model::now_iso(),
                            stream: Stream::Status,
                            message: format!(
                                "porthole: {} lines skipped here (more than this pane keeps arrived at once; `porthole logs` has them all)",
                                follower.skipped() - skipped
                            ),
                        },
                    );
                    skipped = follower.skipped();
                }
                let mut linger = None;
                for e in &fresh {
                    if let Some(ep) = scanner.feed(&e.message) {
                        publish(&endpoints, &tx, &exec_id, ep).await;
                    }
                    linger = scan_linger(&e.message).or(linger);
                }
                if let Some(linger) = linger {
                    let exec_id = exec_id.clone();
                    let _ = tx.send(Msg::Linger { exec_id, linger }).await;
                }
                if !fresh.is_empty()
                    && tx
                        .send(Msg::Log {
                            exec_id: exec_id.clone(),
                            events: fresh,
                        })
                        .await
                        .is_err()
                {
                    return;
                }
                match next {
                    Next::FetchNow(l) => {
                        limit = l;
                        continue;
                    }
                    Next::Wait(l) => limit = l,
                }
            }
            Err(e) => {
                if tx
                    .send(Msg::LogError {
                        exec_id: exec_id.clone(),
                        error: e.to_string(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
