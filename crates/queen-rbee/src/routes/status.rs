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
    let mut by_status = [("unknown", 0.0), ("reachable", 0.0), ("unreachable", 0.0)];
    for record in state.registry.list().unwrap_or_default() {
        if let Some((_, n)) = by_status
            .iter_mut()
            .find(|(s, _)| *s == record.beehive.status.as_str())
        {
            *n += 1.0;
        }
    }
    state
        .metrics
        .set_by("rbee_queen_nodes", "status", &by_status);
    state.metrics.response()
}
