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
    state.metrics.exposition().response()
}
