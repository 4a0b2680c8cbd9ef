//! The lab's live state for the web dashboard: one poller for all the clients watching, run
//! while at least one is.
//!
//! Every [`LabSnapshot::EVERY_MS`] the poller asks each node's hive for its workers and its
//! resources (never starting a hive): a node whose hive does not answer for its workers is
//! not running; a running hive slow to report its resources (its `nvidia-smi` can take
//! seconds) keeps its last report. A client arriving gets a snapshot taken after it came,
//! then every one after.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rbee_api::hive::Resources;
use rbee_api::queen::{LabNode, LabSnapshot, LabWorker, NodeWorker};
use rbee_api::{NodeName, now_unix_ms};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::state::AppState;

/// How long a snapshot waits for a node's hive.
const HIVE_WAIT: Duration = Duration::from_secs(2);

/// A snapshot and when it began to be taken.
type Taken = Option<(Instant, Arc<LabSnapshot>)>;

pub struct LabFeed {
    snapshots: watch::Sender<Taken>,
    /// Whether a poller runs; changed together with the receivers counted.
    polling: Mutex<bool>,
    /// A client arrived: take a snapshot now rather than at the next tick.
    arrived: Notify,
}

impl Default for LabFeed {
    fn default() -> Self {
        Self {
            snapshots: watch::Sender::new(None),
            polling: Mutex::new(false),
            arrived: Notify::new(),
        }
    }
}

/// One client's view of the feed.
pub struct LabWatch {
    rx: watch::Receiver<Taken>,
    since: Option<Instant>,
}

impl LabWatch {
    /// The next snapshot: for a client just arrived, the first one begun after it came.
    pub async fn next(&mut self) -> Option<Arc<LabSnapshot>> {
        loop {
            self.rx.changed().await.ok()?;
            let Some((began, snapshot)) = self.rx.borrow_and_update().clone() else {
                continue;
            };
            if self.since.is_some_and(|since| began < since) {
                continue;
            }
            self.since = None;
            return Some(snapshot);
        }
    }
}

impl LabFeed {
    /// Watches the lab, starting the poller if none runs.
    pub fn watch(&self, state: &AppState) -> LabWatch {
        let mut polling = self.polling.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = self.snapshots.subscribe();
        if !*polling {
            *polling = true;
            tokio::spawn(poll(state.clone()));
        }
        self.arrived.notify_one();
        LabWatch {
            rx,
            since: Some(Instant::now()),
        }
    }

    /// Whether the poller should stop: nobody watches (or the queen stops). Decided under
    /// the lock a new client takes, so a client never waits on a poller that left.
    fn nobody_watches(&self, stopping: bool) -> bool {
        let mut polling = self.polling.lock().unwrap_or_else(PoisonError::into_inner);
        if stopping || self.snapshots.receiver_count() == 0 {
            *polling = false;
            self.snapshots.send_replace(None);
            return true;
        }
        false
    }
}

async fn poll(state: AppState) {
    let feed = &state.lab;
    let mut every = tokio::time::interval(Duration::from_millis(LabSnapshot::EVERY_MS));
    // A slow snapshot delays the next rather than bunching them.
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = HashMap::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = feed.arrived.notified() => every.reset(),
            () = state.shutdown.cancelled() => {}
        }
        if feed.nobody_watches(state.shutdown.is_cancelled()) {
            return;
        }
        let began = Instant::now();
        let snapshot = snapshot(&state, &mut reported).await;
        feed.snapshots
            .send_replace(Some((began, Arc::new(snapshot))));
    }
}

/// What one node's hive said, if it runs.
struct HiveAnswer {
    workers: Vec<rbee_api::hive::WorkerInfo>,
    resources: Option<Resources>,
}

/// The lab now. `reported` keeps each running hive's last resources report.
async fn snapshot(state: &AppState, reported: &mut HashMap<NodeName, Resources>) -> LabSnapshot {
    let registered = &state.registry.list().unwrap_or_default();
    let mut names = vec![NodeName::localhost()];
    names.extend(registered.iter().map(|r| r.config.node_name.clone()));
    let answers = futures::future::join_all(names.iter().map(|node| async move {
        let hive = state.hives.client(node).await.ok()?;
        let (workers, resources) = tokio::join!(
            tokio::time::timeout(HIVE_WAIT, hive.workers()),
            tokio::time::timeout(HIVE_WAIT, hive.resources()),
        );
        Some(match workers {
            Ok(Ok(list)) => Ok(HiveAnswer {
                workers: list.workers,
                resources: resources.ok().and_then(Result::ok),
            }),
            Ok(Err(_)) => Err(Silent::NotRunning),
            Err(_) => Err(Silent::TooSlow),
        })
    }))
    .await;
    let metrics = &state.metrics;
    let mut workers = Vec::new();
    let mut nodes = Vec::new();
    let mut every_node_answered = true;
    for (node, answer) in names.into_iter().zip(answers) {
        let record = registered.iter().find(|r| r.config.node_name == node);
        let last_error = match record {
            Some(r) => r.state.last_error.clone(),
            None => state.hives.local_error(),
        };
        let (hive_running, resources) = match answer {
            Some(Ok(answer)) => {
                let resources = match answer.resources {
                    Some(r) => Some(reported.entry(node.clone()).insert_entry(r).get().clone()),
                    None => reported.get(&node).cloned(),
                };
                workers.extend(answer.workers.into_iter().map(|worker| LabWorker {
                    tokens_total: metrics.worker_tokens.get(worker.id.as_str()),
                    worker: NodeWorker::shown(node.clone(), worker),
                }));
                (true, resources)
            }
            Some(Err(Silent::TooSlow)) => {
                every_node_answered = false;
                reported.remove(&node);
                (false, None)
            }
            Some(Err(Silent::NotRunning)) | None => {
                reported.remove(&node);
                (false, None)
            }
        };
        nodes.push(LabNode {
            node_name: node,
            registered: record.map(|r| r.state.clone()),
            hive_running,
            resources,
            last_error,
        });
    }
    if every_node_answered {
        // Every worker there is was listed: the others' counters will not count again.
        metrics
            .worker_tokens
            .retain(|id| workers.iter().any(|w| w.worker.worker.id.as_str() == id));
    }
    let load = state.lanes.load();
    LabSnapshot {
        unix_ms: now_unix_ms(),
        nodes,
        workers,
        tokens_total: metrics.tokens.get(),
        tasks_total: metrics.tasks.total(),
        queued_tasks: load.queued,
        busy_slots: load.busy,
    }
}

/// Why a node's hive gave no answer.
enum Silent {
    /// It refused the connection or answered with an error: no hive listens there.
    NotRunning,
    /// No answer in [`HIVE_WAIT`]: the node or the network may be down.
    TooSlow,
}
