//! `GET /health` and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use rbee_api::queen::QueenHealth;

use crate::state::AppState;

pub async fn health() -> Json<QueenHealth> {
    Json(QueenHealth {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// `GET /metrics`, with the registered nodes recounted by status.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let records = state.registry.list().unwrap_or_default();
    state
        .metrics
        .nodes
        .recount(records.iter().map(|r| r.state.status));
    let load = state.lanes.load();
    state.metrics.queued_tasks.set(load.queued as u64);
    state.metrics.busy_slots.set(load.busy as u64);
    state.metrics.exposition().response()
}
