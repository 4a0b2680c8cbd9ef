//! `GET /health`.

use axum::Json;
use rbee_api::queen::QueenHealth;

pub async fn health() -> Json<QueenHealth> {
    Json(QueenHealth {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}
