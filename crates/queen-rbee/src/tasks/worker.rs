//! Finding the worker for a task: an idle one with the model, one already loading it, or a
//! new one spawned after the model is in the node's catalog.

use rbee_api::hive::{SpawnRequest, WorkerInfo};
use rbee_api::queen::TaskRequest;
use rbee_api::worker::WorkerState;
use rbee_api::{ErrorCode, ErrorEnvelope};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Events, download, loading};
use crate::clients::{HiveClient, WorkerClient};
use crate::error::QueenError;
use crate::state::AppState;

/// A worker of `hive` that serves `req`'s model, loaded and ready.
pub(super) async fn acquire(
    state: &AppState,
    hive: &HiveClient,
    req: &TaskRequest,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<WorkerClient, QueenError> {
    let model = &req.model;
    let workers = hive.workers().await.map_err(|e| e.from_hive(hive))?.workers;
    let mine: Vec<&WorkerInfo> = workers
        .iter()
        .filter(|w| &w.model_ref == model && w.backend == req.backend && w.device == req.device)
        .collect();
    let client = |w: &WorkerInfo| WorkerClient::new(&w.url, &w.api_key, state.hives.http());
    if let Some(idle) = mine.iter().find(|w| w.state == WorkerState::Idle) {
        events
            .say(
                "worker_reuse",
                format!("Reusing idle worker {} at {}", idle.id, idle.url),
            )
            .await;
        return Ok(client(idle));
    }
    if let Some(busy) = mine.iter().find(|w| w.state == WorkerState::Busy) {
        return Err(all_slots_busy(busy, hive));
    }
    if let Some(loading) = mine.iter().find(|w| w.state == WorkerState::Loading) {
        events
            .say(
                "worker_wait",
                format!("Worker {} is already loading {model}", loading.id),
            )
            .await;
        let worker = client(loading);
        loading::wait(state, &hive.node, &loading.id, &worker, events, cancel).await?;
        return Ok(worker);
    }
    spawn(state, hive, req, events, cancel).await
}

/// The refusal when the model's worker on `hive` has no free slot.
fn all_slots_busy(busy: &WorkerInfo, hive: &HiveClient) -> QueenError {
    QueenError::Remote(
        ErrorEnvelope::new(
            ErrorCode::AllSlotsBusy,
            format!(
                "worker {} on {} is busy with another request",
                busy.id, hive.node
            ),
        )
        .with_details(json!({
            "worker_id": busy.id,
            "slots_total": busy.slots_total,
            "slots_busy": busy.slots_total - busy.slots_available,
        })),
    )
}

/// Downloads the model if the node lacks it, spawns a worker and waits until it is ready.
async fn spawn(
    state: &AppState,
    hive: &HiveClient,
    req: &TaskRequest,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<WorkerClient, QueenError> {
    let model = &req.model;
    download::provision(hive, model, events, cancel).await?;
    events
        .say(
            "spawn",
            format!(
                "Spawning a worker for {model} on {} ({}:{})",
                hive.node, req.backend, req.device
            ),
        )
        .await;
    let spawned = hive
        .spawn(&SpawnRequest {
            model_ref: model.clone(),
            backend: req.backend,
            device: req.device,
            slots: None,
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
    Ok(worker)
}
