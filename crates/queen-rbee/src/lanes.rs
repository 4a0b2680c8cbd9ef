//! Where the tasks for one model wait their turn: one worker start per node, model, backend
//! and device at a time (the others wait for it, then use that worker), and a bounded queue in
//! front of each worker's slots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rbee_api::{Backend, ModelRef, NodeName, WorkerId};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// Tasks that may wait for one worker's slots by default.
pub const DEFAULT_QUEUE_LIMIT: usize = 64;

/// What one worker serves: tasks with the same lane share its workers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lane {
    pub node: NodeName,
    pub model: ModelRef,
    pub backend: Backend,
    pub device: u32,
}

struct WorkerQueue {
    node: NodeName,
    total: usize,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

pub struct Lanes {
    queue_limit: usize,
    starts: Mutex<HashMap<Lane, Arc<tokio::sync::Mutex<()>>>>,
    workers: Mutex<HashMap<WorkerId, Arc<WorkerQueue>>>,
}

/// Tasks waiting for slots and holding them, over every worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub queued: usize,
    pub busy: usize,
}

/// Held by a task while it uses one of a worker's slots.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// The worker's queue is full: the task is refused.
#[derive(Debug)]
pub struct QueueFull {
    pub waiting: usize,
}

/// Counts a task as waiting until it stops waiting (served, cancelled or gone).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Lanes {
    pub fn new(queue_limit: usize) -> Self {
        Self {
            queue_limit,
            starts: Mutex::default(),
            workers: Mutex::default(),
        }
    }

    /// Waits for the right to find or start `lane`'s worker; held until the worker is ready,
    /// so concurrent cold starts of one model start one worker.
    pub async fn start_gate(&self, lane: &Lane) -> OwnedMutexGuard<()> {
        let gate = self
            .starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(lane.clone())
            .or_default()
            .clone();
        gate.lock_owned().await
    }

    /// One of `worker`'s `slots`, at once or after the tasks queued before this one;
    /// `queued` hears this task's place in the queue when it has to wait.
    pub async fn slot(
        &self,
        node: &NodeName,
        worker: &WorkerId,
        slots: usize,
        queued: impl AsyncFnOnce(usize),
    ) -> Result<Slot, QueueFull> {
        let queue = self
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(worker.clone())
            .or_insert_with(|| {
                Arc::new(WorkerQueue {
                    node: node.clone(),
                    total: slots.max(1),
                    slots: Arc::new(Semaphore::new(slots.max(1))),
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone();
        if let Ok(permit) = queue.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let place = queue.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        let _waiting = Waiting(&queue.waiting);
        if place > self.queue_limit {
            return Err(QueueFull { waiting: place - 1 });
        }
        queued(place).await;
        let permit = queue
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| QueueFull { waiting: place })?;
        Ok(Slot { _permit: permit })
    }

    pub fn load(&self) -> Load {
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        workers.values().fold(Load::default(), |load, q| Load {
            queued: load.queued + q.waiting.load(Ordering::SeqCst),
            busy: load.busy + q.total - q.slots.available_permits(),
        })
    }

    /// Forgets the queues of `node`'s workers that are gone (stopped when idle, say): those not
    /// in `alive` that no task holds or waits for.
    pub fn prune(&self, node: &NodeName, alive: &[&WorkerId]) {
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, q| {
                let unused =
                    q.waiting.load(Ordering::SeqCst) == 0 && q.slots.available_permits() == q.total;
                &q.node != node || alive.contains(&id) || !unused
            });
    }

    /// Forgets a worker that stopped.
    pub fn forget(&self, worker: &WorkerId) {
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(lanes: &Lanes) -> usize {
        lanes.workers.lock().unwrap().len()
    }

    #[tokio::test]
    async fn a_gone_worker_s_queue_is_pruned_once_no_task_uses_it() {
        let lanes = Lanes::new(4);
        let node = NodeName::localhost();
        let other: NodeName = "attic".parse().unwrap();
        let (gone, alive, elsewhere) = (
            WorkerId::from_random([1; 6]),
            WorkerId::from_random([2; 6]),
            WorkerId::from_random([3; 6]),
        );
        let held = lanes.slot(&node, &gone, 1, async |_| {}).await.unwrap();
        let _alive = lanes.slot(&node, &alive, 1, async |_| {}).await.unwrap();
        let _elsewhere = lanes
            .slot(&other, &elsewhere, 1, async |_| {})
            .await
            .unwrap();
        // In use: kept even though the hive no longer lists it.
        lanes.prune(&node, &[&alive]);
        assert_eq!(queues(&lanes), 3);
        assert_eq!(lanes.load(), Load { queued: 0, busy: 3 });
        drop(held);
        lanes.prune(&node, &[&alive]);
        assert_eq!(
            queues(&lanes),
            2,
            "only the gone, unused worker of this node goes"
        );
    }
}
