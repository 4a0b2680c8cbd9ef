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
use rbee_api::{NodeName, WorkerId, now_unix_ms};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::state::AppState;

/// How long a snapshot waits for a node's hive.
const HIVE_WAIT: Duration = Duration::from_secs(2);

/// A snapshot and when it began to be taken.
type Taken = Option<(Instant, Arc<LabSnapshot>)>;

/// The snapshots of the lab, sent to every client watching (see [`watch`]).
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
    /// `None` once the queen stops.
    pub async fn next(&mut self) -> Option<Arc<LabSnapshot>> {
        loop {
            self.rx.changed().await.ok()?;
            // Cleared while this client watches: the queen is stopping.
            let (began, snapshot) = self.rx.borrow_and_update().clone()?;
            if self.since.is_some_and(|since| began < since) {
                continue;
            }
            self.since = None;
            return Some(snapshot);
        }
    }
}

/// Watches the lab, starting the poller if none runs.
pub fn watch(state: &AppState) -> LabWatch {
    let feed = &state.lab;
    let mut polling = feed.polling.lock().unwrap_or_else(PoisonError::into_inner);
    let rx = feed.snapshots.subscribe();
    if !*polling {
        *polling = true;
        tokio::spawn(poll(state.clone()));
    }
    // The poller's first snapshot comes from this too.
    feed.arrived.notify_one();
    LabWatch {
        rx,
        since: Some(Instant::now()),
    }
}

impl LabFeed {
    /// Stops the poller, and tells it so, when nobody watches (or the queen stops). Decided
    /// under the lock a new client takes, so a client never waits on a poller that left.
    fn stop_if_unwatched(&self, stopping: bool) -> bool {
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
    let period = Duration::from_millis(LabSnapshot::EVERY_MS);
    // The first snapshot is the arriving client's (see `watch`), not a tick's.
    let mut every = tokio::time::interval_at(Instant::now() + period, period);
    // A slow snapshot delays the next rather than bunching them.
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = HashMap::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = feed.arrived.notified() => every.reset(),
            () = state.shutdown.cancelled() => {}
        }
        if feed.stop_if_unwatched(state.shutdown.is_cancelled()) {
            return;
        }
        let began = Instant::now();
        let counted = state.metrics.worker_tokens.values();
        let read = read(&state, &mut reported).await;
        if let Some(listed) = &read.every_worker {
            // Workers counted before the lab was read and not in it are gone for good.
            let gone: Vec<String> = (counted.into_iter())
                .map(|(id, _)| id)
                .filter(|id| !listed.iter().any(|w| w.as_str() == id))
                .collect();
            (state.metrics.worker_tokens).retain(|id| !gone.iter().any(|g| g == id));
        }
        let snapshot = read.snapshot;
        feed.snapshots
            .send_replace(Some((began, Arc::new(snapshot))));
    }
}

/// What one node's hive said, if it runs.
struct HiveAnswer {
    workers: Vec<rbee_api::hive::WorkerInfo>,
    resources: Option<Resources>,
}

/// The lab as read once.
struct Read {
    snapshot: LabSnapshot,
    /// Every worker of the lab, when every node's hive answered or is known not to run.
    every_worker: Option<Vec<WorkerId>>,
}

/// Reads the lab. `reported` keeps each running hive's last resources report.
async fn read(state: &AppState, reported: &mut HashMap<NodeName, Resources>) -> Read {
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
                if let Some(r) = answer.resources {
                    reported.insert(node.clone(), r);
                }
                let resources = reported.get(&node).cloned();
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
    let every_worker =
        every_node_answered.then(|| workers.iter().map(|w| w.worker.worker.id.clone()).collect());
    let load = state.lanes.load();
    let snapshot = LabSnapshot {
        unix_ms: now_unix_ms(),
        nodes,
        workers,
        tokens_total: metrics.tokens.get(),
        tasks_total: metrics.tasks.total(),
        queued_tasks: load.queued,
        busy_slots: load.busy,
    };
    Read {
        snapshot,
        every_worker,
    }
}

/// Why a node's hive gave no answer.
enum Silent {
    /// It refused the connection or answered with an error: no hive listens there.
    NotRunning,
    /// No answer in [`HIVE_WAIT`]: the node or the network may be down.
    TooSlow,
}
