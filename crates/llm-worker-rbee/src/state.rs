//! Shared state of a running worker: loading log, the engine and its scheduler once loaded,
//! slots and jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rbee_api::worker::{LoadingEvent, WorkerState as Phase};
use rbee_api::{Backend, JobId, ModelRef, WorkerId};
use rbee_http::sse::EventLog;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::error::WorkerError;
use crate::metrics::WorkerMetrics;
use crate::scheduler::Scheduler;

pub type AppState = Arc<WorkerState>;

/// Who this worker is, as told on its command line.
#[derive(Debug, Clone)]
pub struct Identity {
    pub worker_id: WorkerId,
    pub model_ref: ModelRef,
    pub backend: Backend,
    pub device: u32,
    pub public_url: String,
}

struct RunningJob {
    cancel: CancellationToken,
    done: watch::Receiver<bool>,
}

/// Held by a generating request: frees its slot and job entry when dropped.
pub struct JobLease {
    state: AppState,
    job_id: JobId,
    done: watch::Sender<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for JobLease {
    fn drop(&mut self) {
        self.state.jobs().remove(&self.job_id);
        let _ = self.done.send(true);
    }
}

pub struct WorkerState {
    pub identity: Identity,
    /// Every loading event so far, for `GET /v1/loading/progress`.
    pub loading: EventLog<LoadingEvent>,
    engine: OnceLock<Arc<Engine>>,
    scheduler: OnceLock<Scheduler>,
    load_error: OnceLock<String>,
    slots_total: usize,
    slots: Arc<Semaphore>,
    jobs: Mutex<HashMap<JobId, RunningJob>>,
    /// Cancelled to stop the worker: the server drains and the process exits.
    pub shutdown: CancellationToken,
    pub metrics: Arc<WorkerMetrics>,
}

impl WorkerState {
    pub fn new(identity: Identity, slots: usize) -> AppState {
        Arc::new(Self {
            identity,
            loading: EventLog::default(),
            engine: OnceLock::new(),
            scheduler: OnceLock::new(),
            load_error: OnceLock::new(),
            slots_total: slots,
            slots: Arc::new(Semaphore::new(slots)),
            jobs: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            metrics: Arc::default(),
        })
    }

    /// Serves `engine` from now on: its scheduler starts with this worker's slots.
    pub fn set_engine(&self, engine: Engine) {
        let engine = Arc::new(engine);
        let scheduler = Scheduler::start(engine.clone(), self.slots_total, self.metrics.clone());
        let _ = self.scheduler.set(scheduler);
        let _ = self.engine.set(engine);
        self.loading.push(LoadingEvent::Ready);
    }

    /// The scheduler that runs requests, once the model is loaded.
    pub fn scheduler(&self) -> Option<&Scheduler> {
        self.scheduler.get()
    }

    pub fn set_load_error(&self, error: rbee_api::ErrorEnvelope) {
        let _ = self.load_error.set(error.error.message.clone());
        self.loading.push(LoadingEvent::Failed { error });
    }

    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.get()
    }

    /// The engine, or why there is none yet.
    pub fn ready_engine(&self) -> Result<Arc<Engine>, WorkerError> {
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        match self.load_error.get() {
            Some(err) => Err(WorkerError::LoadFailed(err.clone())),
            None => Err(WorkerError::Loading),
        }
    }

    pub fn load_error(&self) -> Option<&str> {
        self.load_error.get().map(String::as_str)
    }

    pub fn slots_total(&self) -> usize {
        self.slots_total
    }

    pub fn slots_available(&self) -> usize {
        self.slots.available_permits()
    }

    pub fn phase(&self) -> Phase {
        if self.load_error.get().is_some() {
            Phase::Failed
        } else if self.engine.get().is_none() {
            Phase::Loading
        } else if self.slots_available() == 0 {
            Phase::Busy
        } else {
            Phase::Idle
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, RunningJob>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a free slot for `job_id`, or fails with `ALL_SLOTS_BUSY`.
    pub fn start_job(
        self: &Arc<Self>,
        job_id: &JobId,
    ) -> Result<(JobLease, CancellationToken), WorkerError> {
        let permit =
            self.slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| WorkerError::AllSlotsBusy {
                    total: self.slots_total,
                    busy: self.slots_total - self.slots.available_permits(),
                })?;
        let mut jobs = self.jobs();
        if jobs.contains_key(job_id) {
            return Err(WorkerError::JobExists(job_id.clone()));
        }
        let cancel = self.shutdown.child_token();
        let (done, done_rx) = watch::channel(false);
        jobs.insert(
            job_id.clone(),
            RunningJob {
                cancel: cancel.clone(),
                done: done_rx,
            },
        );
        Ok((
            JobLease {
                state: self.clone(),
                job_id: job_id.clone(),
                done,
                _permit: permit,
            },
            cancel,
        ))
    }

    /// Cancels `job_id` and waits (up to `wait`) until its slot is free again.
    pub async fn cancel_job(&self, job_id: &JobId, wait: Duration) -> Result<bool, WorkerError> {
        let (cancel, mut done) = {
            let jobs = self.jobs();
            let job = jobs
                .get(job_id)
                .ok_or_else(|| WorkerError::JobNotFound(job_id.to_string()))?;
            (job.cancel.clone(), job.done.clone())
        };
        cancel.cancel();
        let finished = tokio::time::timeout(wait, done.wait_for(|d| *d)).await;
        Ok(matches!(finished, Ok(Ok(_))))
    }
}
