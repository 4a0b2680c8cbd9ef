//! The model catalog and downloads.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use rbee_api::hive::{
    DeleteModelRequest, DownloadEvent, DownloadRequest, DownloadStarted, ModelDeleted, ModelEntry,
    ModelInfoQuery, ModelSettingsRequest, ModelsList, PreflightPassed, PreflightRequest, Provider,
    Resources,
};
use rbee_api::worker::ModelInfo;
use rbee_http::ApiJson;
use serde::Deserialize;

use crate::error::HiveError;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Result<Json<ModelsList>, HiveError> {
    Ok(Json(ModelsList {
        models: state.catalog.list()?,
        disk_free_bytes: state.downloads.disk_free_bytes(),
    }))
}

fn catalogued(
    state: &AppState,
    model_ref: &rbee_api::ModelRef,
) -> Result<rbee_api::hive::ModelEntry, HiveError> {
    state.catalog.find(model_ref)?.ok_or_else(|| {
        HiveError::ModelNotFound(format!("{model_ref} is not in this node's catalog"))
    })
}

/// What the worker binary reads from a catalogued model's GGUF header.
pub async fn info(
    State(state): State<AppState>,
    Query(q): Query<ModelInfoQuery>,
) -> Result<Json<ModelInfo>, HiveError> {
    let model = catalogued(&state, &q.model_ref)?;
    let path = std::path::Path::new(&model.local_path);
    let info = state
        .preflight
        .check_with_settings(path, &model.settings)
        .await?;
    Ok(Json(info))
}

/// Sets how a catalogued model's workers run it; refused while a worker runs the model (it
/// keeps what it loaded with).
pub async fn settings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ModelSettingsRequest>,
) -> Result<Json<ModelEntry>, HiveError> {
    let mut model = catalogued(&state, &req.model_ref)?;
    refuse_in_use(&state, &model)?;
    if req.settings.context_length == Some(0) {
        return Err(HiveError::InvalidRequest(
            "`context_length` must be at least 1".into(),
        ));
    }
    let path = std::path::Path::new(&model.local_path);
    let info = (state
        .preflight
        .check_with_settings(path, &req.settings)
        .await)
        .map_err(|e| match e {
            HiveError::InvalidModel(reason) => HiveError::InvalidRequest(reason),
            other => other,
        })?;
    if let Some(n) = req.settings.context_length
        && n as usize > info.context_length
    {
        return Err(HiveError::InvalidRequest(format!(
            "`context_length` {n} is larger than the model's context of {} tokens; it can only lower it",
            info.context_length
        )));
    }
    model.settings = req.settings;
    state.catalog.upsert(&model)?;
    state.logs.hive(format!(
        "{}: its workers now use {}",
        model.reference, model.settings
    ));
    Ok(Json(model))
}

/// Refuses to change `model` while a worker runs it.
fn refuse_in_use(state: &AppState, model: &ModelEntry) -> Result<(), HiveError> {
    match (state.pool.list().into_iter()).find(|w| w.model_ref == model.reference) {
        Some(w) => Err(HiveError::InvalidRequest(format!(
            "{} is in use by worker {}; stop it first (`rbee workers shutdown --id {}`)",
            model.reference, w.id, w.id
        ))),
        None => Ok(()),
    }
}

/// Takes a model out of the catalog, deleting its file when the hive downloaded it. A
/// model a worker is running is refused: stop the worker first.
pub async fn delete(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DeleteModelRequest>,
) -> Result<Json<ModelDeleted>, HiveError> {
    let model = catalogued(&state, &req.model_ref)?;
    refuse_in_use(&state, &model)?;
    let file_removed = model.provider != Provider::File;
    if file_removed {
        for file in rbee_api::split::model_files(std::path::Path::new(&model.local_path)) {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(HiveError::io(
                        format!("cannot delete {}", file.display()),
                        e,
                    ));
                }
            }
        }
    }
    state.catalog.remove(&model.reference)?;
    state.logs.hive(format!(
        "deleted {} from the catalog{}",
        model.reference,
        if file_removed { " and its file" } else { "" }
    ));
    Ok(Json(ModelDeleted {
        model_ref: model.reference,
        file_removed,
    }))
}

/// What this node can give a new worker now (the queen's placement reads it).
pub async fn resources(State(state): State<AppState>) -> Json<Resources> {
    Json(Resources {
        ram_available_mb: state.preflight.available_mb(),
        detected: crate::detect::detect_off_runtime().await,
        worker_backends: state.preflight.worker_backends(),
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
