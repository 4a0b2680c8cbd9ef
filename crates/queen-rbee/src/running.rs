//! The tasks running now, so `DELETE /v2/tasks/{id}` can cancel one and wait until it has
//! stopped on its worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbee_api::TaskId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::QueenError;

/// How long a cancel waits for the task to stop on its worker.
pub const CANCEL_WAIT: Duration = Duration::from_secs(5);

type Entry = (CancellationToken, watch::Receiver<bool>);
type Table = Arc<Mutex<HashMap<TaskId, Entry>>>;

#[derive(Default)]
pub struct RunningTasks {
    running: Table,
}

/// Held by a running task: reports it finished (and forgets it) when dropped.
pub struct Registration {
    running: Table,
    id: TaskId,
    done: watch::Sender<bool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.id);
        let _ = self.done.send(true);
    }
}

fn lock(table: &Table) -> std::sync::MutexGuard<'_, HashMap<TaskId, Entry>> {
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RunningTasks {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Entry>> {
        lock(&self.running)
    }

    /// Registers a task under `id`, cancelled through `cancel`; refused when a task of that
    /// id runs already.
    pub fn register(
        &self,
        id: &TaskId,
        cancel: CancellationToken,
    ) -> Result<Registration, QueenError> {
        let mut running = self.running();
        if running.contains_key(id) {
            return Err(QueenError::InvalidRequest(format!(
                "a task `{id}` is already running"
            )));
        }
        let (done, finished) = watch::channel(false);
        running.insert(id.clone(), (cancel, finished));
        Ok(Registration {
            running: self.running.clone(),
            id: id.clone(),
            done,
        })
    }

    /// Cancels a task and waits until it has stopped on the worker.
    pub async fn cancel(&self, id: &TaskId) -> Result<(), QueenError> {
        let (cancel, mut done) = self
            .running()
            .get(id)
            .cloned()
            .ok_or_else(|| QueenError::TaskNotFound(id.clone()))?;
        cancel.cancel();
        let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|d| *d)).await;
        Ok(())
    }
}
