//! Workers: list, spawn, shut down, and the callback of a worker whose model failed.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use rbee_api::Ack;
use rbee_api::hive::{
    KeepAliveRequest, KeptAlive, ShutdownWorkerRequest, SpawnRequest, SpawnResponse, WorkerStopped,
    WorkersList,
};
use rbee_api::worker::WorkerFailedCallback;
use rbee_http::ApiJson;

use crate::error::HiveError;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Json<WorkersList> {
    state.pool.refresh().await;
    Json(WorkersList {
        workers: state.pool.describe(),
    })
}

/// Catalog lookup, download if needed, preflight, spawn.
pub async fn spawn(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SpawnRequest>,
) -> Result<Json<SpawnResponse>, HiveError> {
    if let Some(slots) = req.slots
        && !(1..=64).contains(&slots)
    {
        return Err(HiveError::InvalidRequest(format!(
            "`slots` must be 1 to 64, got {slots}"
        )));
    }
    let model = state.downloads.ensure(&req.model_ref).await?;
    if let Err(e) = state.preflight.check(&model, req.backend, req.device).await {
        let code = e.envelope().error.code.as_str().to_lowercase();
        state.metrics.preflight_refusals.inc(&code);
        return Err(e);
    }
    let spawned = state
        .pool
        .spawn(&model, req.backend, req.device, req.slots)
        .await?;
    state.metrics.workers_spawned.inc();
    Ok(Json(spawned))
}

pub async fn shutdown(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ShutdownWorkerRequest>,
) -> Result<Json<WorkerStopped>, HiveError> {
    if !state.pool.stop(&req.worker_id).await {
        return Err(HiveError::WorkerNotFound(req.worker_id));
    }
    Ok(Json(WorkerStopped {
        worker_id: req.worker_id,
        stopped: true,
    }))
}

/// A client's keep-alive for one worker ([`crate::workers::pool`]).
pub async fn keep_alive(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<KeepAliveRequest>,
) -> Result<Json<KeptAlive>, HiveError> {
    let stopped = (state.pool.keep_alive(&req.worker_id, req.seconds).await)
        .ok_or_else(|| HiveError::WorkerNotFound(req.worker_id.clone()))?;
    Ok(Json(KeptAlive {
        worker_id: req.worker_id,
        stopped,
    }))
}

fn bearer(headers: &HeaderMap) -> &str {
    rbee_http::auth::bearer(headers).unwrap_or_default()
}

pub async fn failed_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WorkerFailedCallback>,
) -> Result<Json<Ack>, HiveError> {
    state.pool.failed(&body, bearer(&headers))?;
    Ok(Json(Ack::OK))
}

/// `GET /metrics`, with the workers recounted by state.
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    state.pool.refresh().await;
    state
        .metrics
        .workers
        .recount(state.pool.list().iter().map(|w| w.state));
    state.metrics.exposition().response()
}
