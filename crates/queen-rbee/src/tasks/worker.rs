//! Finding the worker for a task: an idle one with the model, one already loading it, or a
//! new one spawned after the model is in the node's catalog.

use rbee_api::hive::{SpawnRequest, WorkerInfo};
use rbee_api::queen::TaskRequest;
use rbee_api::worker::WorkerState;
use rbee_api::{Backend, ErrorCode, ErrorEnvelope, WorkerId};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Events, cancelled, download, loading};
use crate::clients::{HiveClient, WorkerClient};
use crate::error::QueenError;
use crate::lanes::{Lane, QueueFull, Slot};
use crate::state::AppState;

/// The worker that serves a task, and the slot the task holds on it until its end.
pub(super) struct Assigned {
    pub id: WorkerId,
    pub client: WorkerClient,
    pub _slot: Slot,
}

/// A ready worker for a task, and how many requests it serves at once.
struct Found {
    id: WorkerId,
    client: WorkerClient,
    slots: usize,
}

/// A worker of `hive` that serves `req`'s model, loaded and ready, and one of its slots: an
/// idle or busy worker (then the task queues for a slot), one already loading, or a new one.
/// One task at a time finds or starts the worker of a model on a node; the others wait.
pub(super) async fn acquire(
    state: &AppState,
    hive: &HiveClient,
    req: &TaskRequest,
    backend: Backend,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<Assigned, QueenError> {
    let lane = Lane {
        node: hive.node.clone(),
        model: req.model.clone(),
        backend,
        device: req.device,
    };
    let Found { id, client, slots } = {
        let gate = tokio::select! {
            gate = state.lanes.start_gate(&lane) => gate,
            () = cancel.cancelled() => return Err(cancelled()),
        };
        let found = find_or_start(state, hive, req, backend, events, cancel).await?;
        drop(gate);
        found
    };
    let queued = async |place: usize| {
        events
            .say(
                "queued",
                format!("Worker {id} is busy; waiting for a slot (place {place} in its queue)"),
            )
            .await;
    };
    let slot = tokio::select! {
        slot = state.lanes.slot(&hive.node, &id, slots, queued) => slot.map_err(|full| queue_full(&id, hive, full))?,
        () = cancel.cancelled() => return Err(cancelled()),
    };
    Ok(Assigned {
        id,
        client,
        _slot: slot,
    })
}

async fn find_or_start(
    state: &AppState,
    hive: &HiveClient,
    req: &TaskRequest,
    backend: Backend,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<Found, QueenError> {
    let model = &req.model;
    let workers = hive.workers().await.map_err(|e| e.from_hive(hive))?.workers;
    let alive: Vec<&WorkerId> = workers.iter().map(|w| &w.id).collect();
    state.lanes.prune(&hive.node, &alive);
    let mine: Vec<&WorkerInfo> = workers
        .iter()
        .filter(|w| &w.model_ref == model && w.backend == backend && w.device == req.device)
        .collect();
    let client = |w: &WorkerInfo| WorkerClient::new(&w.url, &w.api_key, state.hives.http());
    let serving = |s: WorkerState| mine.iter().find(|w| w.state == s);
    if let Some(ready) = serving(WorkerState::Idle).or_else(|| serving(WorkerState::Busy)) {
        events
            .say(
                "worker_reuse",
                format!(
                    "Reusing {} worker {} at {}",
                    ready.state.as_str(),
                    ready.id,
                    ready.url
                ),
            )
            .await;
        return Ok(Found {
            id: ready.id.clone(),
            client: client(ready),
            slots: ready.slots_total,
        });
    }
    if let Some(loading) = serving(WorkerState::Loading) {
        events
            .say(
                "worker_wait",
                format!("Worker {} is already loading {model}", loading.id),
            )
            .await;
        let worker = client(loading);
        loading::wait(state, &hive.node, &loading.id, &worker, events, cancel).await?;
        let slots = slots_of(&worker, hive, &loading.id).await?;
        return Ok(Found {
            id: loading.id.clone(),
            client: worker,
            slots,
        });
    }
    spawn(state, hive, req, backend, events, cancel).await
}

/// The refusal when the queue for `worker`'s slots is full.
fn queue_full(worker: &WorkerId, hive: &HiveClient, full: QueueFull) -> QueenError {
    QueenError::Remote(
        ErrorEnvelope::new(
            ErrorCode::AllSlotsBusy,
            format!(
                "worker {worker} on {} is busy and {} tasks already wait for it",
                hive.node, full.waiting
            ),
        )
        .with_details(json!({"worker_id": worker, "queued": full.waiting})),
    )
}

/// Downloads the model if the node lacks it, spawns a worker and waits until it is ready.
async fn spawn(
    state: &AppState,
    hive: &HiveClient,
    req: &TaskRequest,
    backend: Backend,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<Found, QueenError> {
    let model = &req.model;
    download::provision(hive, model, events, cancel).await?;
    events
        .say(
            "spawn",
            format!(
                "Spawning a worker for {model} on {} ({}:{})",
                hive.node, backend, req.device
            ),
        )
        .await;
    let spawned = hive
        .spawn(&SpawnRequest {
            model_ref: model.clone(),
            backend,
            device: req.device,
            slots: state.worker_slots,
        })
        .await
        .map_err(|e| e.from_hive(hive))?;
    events
        .say(
            "spawned",
            format!("Worker {} starting at {}", spawned.worker_id, spawned.url),
        )
        .await;
    let worker = WorkerClient::new(&spawned.url, &spawned.api_key, state.hives.http());
    loading::wait(
        state,
        &hive.node,
        &spawned.worker_id,
        &worker,
        events,
        cancel,
    )
    .await?;
    let slots = slots_of(&worker, hive, &spawned.worker_id).await?;
    Ok(Found {
        id: spawned.worker_id,
        client: worker,
        slots,
    })
}

/// How many requests a worker that just became ready serves at once, as it says itself.
async fn slots_of(
    worker: &WorkerClient,
    hive: &HiveClient,
    id: &WorkerId,
) -> Result<usize, QueenError> {
    let ready = worker.ready().await.map_err(|e| {
        QueenError::Remote(ErrorEnvelope::new(
            ErrorCode::WorkerCrashed,
            format!(
                "worker {id} on {} stopped answering once ready ({e}); read its logs with `rbee logs --node {}`",
                hive.node, hive.node
            ),
        ))
    })?;
    Ok(ready.slots_total.max(1))
}
