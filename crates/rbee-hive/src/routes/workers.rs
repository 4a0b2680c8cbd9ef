//! Workers: list, spawn, shut down, and the two callbacks workers make.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use rbee_api::hive::{ShutdownWorkerRequest, SpawnRequest, SpawnResponse, WorkersList};
use rbee_api::worker::{WorkerFailedCallback, WorkerReadyCallback};
use rbee_http::ApiJson;
use serde_json::{Value, json};

use crate::error::HiveError;
use crate::model_ref::ModelRef;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Json<WorkersList> {
    state.pool.refresh().await;
    Json(WorkersList {
        workers: state.pool.list(),
    })
}

/// Catalog lookup, download if needed, preflight, spawn.
pub async fn spawn(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SpawnRequest>,
) -> Result<Json<SpawnResponse>, HiveError> {
    let model_ref = ModelRef::parse(&req.model_ref).map_err(HiveError::InvalidRequest)?;
    let slots = req.slots.unwrap_or(1);
    if !(1..=64).contains(&slots) {
        return Err(HiveError::InvalidRequest(format!(
            "`slots` must be 1 to 64, got {slots}"
        )));
    }
    let model = state.downloads.ensure(&model_ref).await?;
    if let Err(e) = state.preflight.check(&model, req.backend, req.device).await {
        let code = e.envelope().error.code.as_str().to_lowercase();
        state
            .metrics
            .inc("rbee_hive_preflight_refusals_total", &[("code", &code)]);
        return Err(e);
    }
    let spawned = state.pool.spawn(&model, req.backend, req.device, slots)?;
    state.metrics.inc("rbee_hive_workers_spawned_total", &[]);
    Ok(Json(spawned))
}

pub async fn shutdown(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ShutdownWorkerRequest>,
) -> Result<Json<Value>, HiveError> {
    if !state.pool.stop(&req.worker_id).await {
        return Err(HiveError::WorkerNotFound(req.worker_id));
    }
    Ok(Json(json!({"worker_id": req.worker_id, "stopped": true})))
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
}

pub async fn ready_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WorkerReadyCallback>,
) -> Result<Json<Value>, HiveError> {
    state.pool.ready(&body, bearer(&headers))?;
    Ok(Json(json!({"ok": true})))
}

pub async fn failed_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WorkerFailedCallback>,
) -> Result<Json<Value>, HiveError> {
    state.pool.failed(&body, bearer(&headers))?;
    Ok(Json(json!({"ok": true})))
}

/// `GET /metrics`, with the workers recounted by state.
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    state.pool.refresh().await;
    let mut by_state = [
        ("loading", 0.0),
        ("idle", 0.0),
        ("busy", 0.0),
        ("unhealthy", 0.0),
    ];
    for w in state.pool.list() {
        if let Some((_, n)) = by_state.iter_mut().find(|(s, _)| *s == w.state.as_str()) {
            *n += 1.0;
        }
    }
    state
        .metrics
        .set_by("rbee_hive_workers", "state", &by_state);
    state.metrics.response()
}
