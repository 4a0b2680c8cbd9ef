//! A task: one inference request carried through the whole stack.
//!
//! The queen places the task if it names no node ([`crate::placement`]), makes sure the
//! node's hive runs, finds a worker for the model — an idle one, one already loading it, or
//! a new one after the model is downloaded — and relays the worker's token stream. Every step
//! is narrated. Cancelling the task (DELETE, or the client going away) cancels the
//! generation on the worker.
//!
//! - [`worker`]: finding or starting the worker.
//! - [`download`]: getting the model into the node's catalog, relaying progress.
//! - [`loading`]: waiting for a worker to load its model, relaying progress.
//! - [`relay`]: the worker's token stream, to the client.

mod download;
mod loading;
mod relay;
mod worker;

use std::sync::Arc;
use std::time::Instant;

use rbee_api::queen::{TaskAssigned, TaskEvent, TaskRequest, TaskStarted};
use rbee_api::{BackendChoice, ErrorCode, ErrorEnvelope, JobId, TaskId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::QueenError;
use crate::metrics::{Outcome, QueenMetrics};
use crate::narration::Narrator;
use crate::state::AppState;

/// The event stream of one task, as its client reads it.
#[derive(Clone)]
struct Events {
    tx: mpsc::Sender<TaskEvent>,
    narrator: Narrator,
    metrics: Arc<QueenMetrics>,
    /// When the task began (for its time to first token).
    started: Instant,
    /// The queen's own shutdown: a task cancelled by it did not end by its client's wish.
    stopping: CancellationToken,
}

impl Events {
    async fn send(&self, event: TaskEvent) {
        // A client that went away cancels the task (see `launch`); its events are dropped.
        let _ = self.tx.send(event).await;
    }

    async fn say(&self, action: &str, human: impl Into<String>) {
        self.narrator.say(action, human).await;
    }
}

/// Checks a task and starts it in the background; its id and events. Dropping the
/// receiver (the client went away) cancels the task, and so the generation on the worker.
pub fn launch(
    state: &AppState,
    req: TaskRequest,
) -> Result<(TaskId, mpsc::Receiver<TaskEvent>), QueenError> {
    if let Some(node) = &req.node
        && !node.is_localhost()
        && state.registry.get(node)?.is_none()
    {
        return Err(QueenError::NodeNotFound(node.clone()));
    }
    let task_id = req
        .task_id
        .clone()
        .unwrap_or_else(|| JobId::from_uuid(*uuid::Uuid::new_v4().as_bytes()));
    // Checked before anything is started for it; the worker checks the rest (the context).
    relay::inference_request(&req, &task_id)
        .check()
        .map_err(QueenError::InvalidRequest)?;
    let cancel = state.shutdown.child_token();
    let registration = state.tasks.register(&task_id, cancel.clone())?;
    let (tx, rx) = mpsc::channel(256);
    let events = Events {
        tx: tx.clone(),
        narrator: Narrator::task(tx),
        metrics: state.metrics.clone(),
        started: Instant::now(),
        stopping: state.shutdown.clone(),
    };
    {
        let (tx, cancel) = (events.tx.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tx.closed() => cancel.cancel(),
                () = cancel.cancelled() => {}
            }
        });
    }
    let state = state.clone();
    let id = task_id.clone();
    tokio::spawn(async move {
        run(&state, &req, &id, &events, &cancel).await;
        cancel.cancel();
        drop(registration);
    });
    Ok((task_id, rx))
}

/// Runs the task to its end; a failure becomes its `error` event.
async fn run(
    state: &AppState,
    req: &TaskRequest,
    task_id: &TaskId,
    events: &Events,
    cancel: &CancellationToken,
) {
    events
        .send(TaskEvent::Started(TaskStarted {
            task_id: task_id.clone(),
        }))
        .await;
    let outcome = match execute(state, req, task_id, events, cancel).await {
        Ok(()) if cancel.is_cancelled() => Outcome::Cancelled,
        Ok(()) => Outcome::Completed,
        Err(e) => {
            tracing::warn!(task = %task_id, "task failed: {e}");
            let envelope = e.envelope();
            events.send(TaskEvent::Error(envelope.clone())).await;
            Outcome::Failed(envelope.error.code)
        }
    };
    state.metrics.task_ended(outcome);
}

async fn execute(
    state: &AppState,
    req: &TaskRequest,
    task_id: &TaskId,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<(), QueenError> {
    let model = &req.model;
    let (node, placed_backend) = match &req.node {
        Some(node) => (node.clone(), None),
        None => {
            let nodes = state.node_names()?;
            let placed = crate::placement::place(
                &nodes,
                &state.hives,
                model,
                req.backend,
                req.device,
                &events.narrator,
            )
            .await?;
            state.metrics.placements.inc(placed.rule);
            events
                .say(
                    "placement",
                    format!("placing on {}: {}", placed.node, placed.reason),
                )
                .await;
            (placed.node, Some(placed.backend))
        }
    };
    events
        .say("task_start", format!("Task {task_id}: {model} on {node}"))
        .await;
    let hive = state.hives.ensure(&node, &events.narrator).await?;
    let backend = match req.backend {
        BackendChoice::Exactly(backend) => backend,
        BackendChoice::Auto => {
            let found = hive.resources().await.map_err(|e| e.from_hive(&hive))?;
            let usable = found.usable_backends();
            let backend = placed_backend.unwrap_or_else(|| BackendChoice::Auto.resolve(&usable));
            let unbuilt: Vec<String> = (found.detected.backends.iter())
                .filter(|b| b.is_gpu() && !usable.contains(b))
                .map(|b| b.to_string())
                .collect();
            let mut said = format!("Backend auto: {backend} (the best {node} has)");
            if !unbuilt.is_empty() && !backend.is_gpu() {
                said.push_str(&format!(
                    "; its {gpu} GPU needs a worker built with --features {gpu} (rbee setup install builds one where the toolkit is installed)",
                    gpu = unbuilt.join("/")
                ));
            }
            events.say("backend", said).await;
            backend
        }
    };
    let worker = worker::acquire(state, &hive, req, backend, events, cancel).await?;
    events
        .send(TaskEvent::Assigned(TaskAssigned {
            node: node.clone(),
            worker_id: worker.id.clone(),
            backend,
            device: req.device,
        }))
        .await;
    let result = relay::tokens(
        &worker.client,
        &worker.id,
        &node,
        req,
        task_id,
        events,
        cancel,
    )
    .await;
    match &result {
        Err(e @ QueenError::NodeLost { .. }) => {
            state.hives.mark_unreachable(&node, &e.to_string());
            state.lanes.forget(&worker.id);
        }
        Err(QueenError::Remote(e))
            if matches!(
                e.error.code,
                ErrorCode::WorkerCrashed | ErrorCode::WorkerStopped
            ) =>
        {
            state.lanes.forget(&worker.id);
        }
        _ => {}
    }
    let end = result?;
    if let Some(seconds) = req.keep_alive {
        let id = worker.id.clone();
        // The task's slot is free before the worker is told how long to stay.
        drop(worker);
        match hive.keep_alive(&id, seconds).await {
            Ok(k) if k.stopped => {
                let said = format!("Stopped {id}: keep-alive 0");
                events.say("keep_alive", said).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot set the keep-alive of {id}: {e}"),
        }
    }
    // The end goes out last, so a client that asks next sees the keep-alive applied.
    if let Some(end) = end {
        events.send(TaskEvent::End(end)).await;
    }
    Ok(())
}

fn cancelled() -> QueenError {
    QueenError::Remote(ErrorEnvelope::new(
        ErrorCode::Cancelled,
        "the task was cancelled",
    ))
}
