//! `GET /v1/health`.

use axum::Json;
use rbee_api::API_VERSION;
use rbee_api::worker::HealthResponse;

pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "alive".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: API_VERSION.into(),
    })
}
