//! The in-memory worker registry: lost on restart by design, since the
//! workers die with their hive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rbee_api::WorkerId;
use rbee_api::hive::WorkerInfo;
use tokio::process::ChildStdin;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// How the hive controls one worker process.
#[derive(Debug, Clone)]
pub struct Control {
    /// Asks the process owner to SIGKILL the worker.
    pub kill: Arc<Notify>,
    /// Becomes true once the process has exited.
    pub exited: watch::Receiver<bool>,
    /// Stops the health and idle monitor.
    pub supervision: CancellationToken,
    /// The worker's stdin: while the hive holds it the worker lives (`--watch-stdin`).
    pub _lifeline: Arc<Mutex<Option<ChildStdin>>>,
}

#[derive(Debug)]
struct Entry {
    info: WorkerInfo,
    control: Control,
}

#[derive(Debug, Default)]
pub struct Registry {
    workers: Mutex<BTreeMap<WorkerId, Entry>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkerId, Entry>> {
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn insert(&self, info: WorkerInfo, control: Control) {
        self.map().insert(info.id.clone(), Entry { info, control });
    }

    pub fn get(&self, id: &WorkerId) -> Option<(WorkerInfo, Control)> {
        self.map()
            .get(id)
            .map(|e| (e.info.clone(), e.control.clone()))
    }

    pub fn list(&self) -> Vec<WorkerInfo> {
        self.map().values().map(|e| e.info.clone()).collect()
    }

    pub fn ids(&self) -> Vec<WorkerId> {
        self.map().keys().cloned().collect()
    }

    pub fn ports_in_use(&self) -> Vec<u16> {
        self.map()
            .values()
            .filter_map(|e| e.info.url.rsplit(':').next()?.parse().ok())
            .collect()
    }

    /// Changes a worker's entry; false if it is gone.
    pub fn update(&self, id: &WorkerId, f: impl FnOnce(&mut WorkerInfo)) -> bool {
        match self.map().get_mut(id) {
            Some(e) => {
                f(&mut e.info);
                true
            }
            None => false,
        }
    }

    pub fn remove(&self, id: &WorkerId) -> Option<WorkerInfo> {
        self.map().remove(id).map(|e| {
            e.control.supervision.cancel();
            e.info
        })
    }

    pub fn clear(&self) {
        let mut map = self.map();
        for e in map.values() {
            e.control.supervision.cancel();
        }
        map.clear();
    }
}
