//! The model catalog and downloads.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use rbee_api::hive::{DownloadEvent, DownloadRequest, DownloadStarted, ModelsList};
use rbee_http::ApiJson;
use serde::Deserialize;

use crate::error::HiveError;
use crate::model_ref::ModelRef;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Result<Json<ModelsList>, HiveError> {
    Ok(Json(ModelsList {
        models: state.catalog.list()?,
    }))
}

pub async fn download(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DownloadRequest>,
) -> Result<Json<DownloadStarted>, HiveError> {
    let model_ref = ModelRef::parse(&req.model_ref).map_err(HiveError::InvalidRequest)?;
    Ok(Json(state.downloads.start(&model_ref)?))
}

#[derive(Deserialize)]
pub struct ProgressQuery {
    id: String,
}

/// Replays the download's events so far, then follows it to `complete` or `failed`.
pub async fn progress(
    State(state): State<AppState>,
    Query(q): Query<ProgressQuery>,
) -> Result<Response, HiveError> {
    let id = ModelRef::parse(&q.id)
        .map(|r| r.canonical())
        .unwrap_or(q.id);
    let events = state
        .downloads
        .subscribe(&id)
        .ok_or(HiveError::DownloadNotFound(id))?;
    let shutdown = state.shutdown.clone();
    Ok(rbee_http::sse::replay(
        events,
        DownloadEvent::is_final,
        async move { shutdown.cancelled().await },
    ))
}
