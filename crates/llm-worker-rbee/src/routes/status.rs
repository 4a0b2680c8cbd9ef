//! `GET /v1/health` and `GET /v1/ready`.

use axum::Json;
use axum::extract::State;
use rbee_api::API_VERSION;
use rbee_api::routes::worker::LOADING_PROGRESS;
use rbee_api::worker::{HealthResponse, ReadyResponse, WorkerState as Phase};

use crate::state::AppState;

pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "alive".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: API_VERSION.into(),
    })
}

pub async fn ready(State(state): State<AppState>) -> Json<ReadyResponse> {
    let phase = state.phase();
    let engine = state.engine();
    Json(ReadyResponse {
        ready: matches!(phase, Phase::Idle | Phase::Busy),
        state: phase,
        model_loaded: engine.is_some(),
        progress_url: (phase == Phase::Loading)
            .then(|| format!("{}{LOADING_PROGRESS}", state.identity.public_url)),
        slots_total: state.slots_total(),
        slots_available: state.slots_available(),
        error: state.load_error().map(str::to_owned),
        model: engine.map(|e| e.info.clone()),
    })
}
