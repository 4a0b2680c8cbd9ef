//! `POST /v1/admin/shutdown`: stop every worker, then the hive.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn shutdown(State(state): State<AppState>) -> Json<Value> {
    state.logs.hive("shutdown requested over HTTP");
    state.shutdown.cancel();
    Json(json!({"status": "shutting_down"}))
}
