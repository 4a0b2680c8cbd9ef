//! `POST /v1/admin/shutdown`: stop every worker, then the hive.

use axum::Json;
use axum::extract::State;
use rbee_api::ShuttingDown;

use crate::state::AppState;

pub async fn shutdown(State(state): State<AppState>) -> Json<ShuttingDown> {
    state.logs.hive("shutdown requested over HTTP");
    state.shutdown.cancel();
    Json(ShuttingDown::NOW)
}
