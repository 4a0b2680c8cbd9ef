//! The model catalog and downloads.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use rbee_api::hive::{
    DownloadEvent, DownloadRequest, DownloadStarted, ModelsList, PreflightPassed, PreflightRequest,
    Resources,
};
use rbee_http::ApiJson;
use serde::Deserialize;

use crate::error::HiveError;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Result<Json<ModelsList>, HiveError> {
    Ok(Json(ModelsList {
        models: state.catalog.list()?,
    }))
}

/// What this node can give a new worker now (the queen's placement reads it).
pub async fn resources(State(state): State<AppState>) -> Json<Resources> {
    Json(Resources {
        ram_available_mb: state.preflight.available_mb(),
        detected: crate::detect::detect(),
    })
}

/// The preflight a spawn would run, for a model already in the catalog.
pub async fn preflight(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PreflightRequest>,
) -> Result<Json<PreflightPassed>, HiveError> {
    let model = state.catalog.find(&req.model_ref)?.ok_or_else(|| {
        HiveError::ModelNotFound(format!("{} is not in this node's catalog", req.model_ref))
    })?;
    state
        .preflight
        .check(&model, req.backend, req.device)
        .await?;
    Ok(Json(PreflightPassed {
        ok: true,
        model_ref: req.model_ref,
    }))
}

pub async fn download(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DownloadRequest>,
) -> Result<Json<DownloadStarted>, HiveError> {
    Ok(Json(state.downloads.start(&req.model_ref).await?))
}

#[derive(Deserialize)]
pub struct ProgressQuery {
    /// The `download_id` of [`DownloadStarted`].
    id: String,
}

/// Replays the download's events so far, then follows it to `complete` or `failed`.
pub async fn progress(
    State(state): State<AppState>,
    Query(q): Query<ProgressQuery>,
) -> Result<Response, HiveError> {
    let id = rbee_api::ModelRef::parse(&q.id)
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
