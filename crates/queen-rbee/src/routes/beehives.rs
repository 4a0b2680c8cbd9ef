//! The node registry: add (after an SSH test), list, remove, install (over SSH), and stopping
//! a node's hive. Adding and installing stream what the queen does ([`crate::setup`]).

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use rbee_api::queen::{
    Beehive, BeehiveList, HiveStopped, NodeConfig, NodeRemoved, NodeRequest, NodeSettingsRequest,
};
use rbee_http::ApiJson;

use crate::error::QueenError;
use crate::setup;
use crate::state::AppState;

pub async fn add(
    State(state): State<AppState>,
    ApiJson(config): ApiJson<NodeConfig>,
) -> Result<Response, QueenError> {
    setup::validate(&config)?;
    let events =
        setup::stream(move |narrator| async move { setup::add(&state, config, &narrator).await });
    Ok(rbee_http::sse::stream(events))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<BeehiveList>, QueenError> {
    let records = state.registry.list()?;
    Ok(Json(BeehiveList {
        beehives: records.iter().map(|r| r.beehive()).collect(),
    }))
}

pub async fn remove(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeRequest>,
) -> Result<Json<NodeRemoved>, QueenError> {
    if !state.registry.remove(&req.node_name)? {
        return Err(QueenError::NodeNotFound(req.node_name));
    }
    Ok(Json(NodeRemoved {
        node_name: req.node_name,
        removed: true,
    }))
}

/// Stops a node's hive (the queen's own machine too) and its workers.
pub async fn stop(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeRequest>,
) -> Result<Json<HiveStopped>, QueenError> {
    let node = &req.node_name;
    if !node.is_localhost() && state.registry.get(node)?.is_none() {
        return Err(QueenError::NodeNotFound(req.node_name));
    }
    Ok(Json(state.hives.stop_one(node).await?))
}

/// Replaces a node's hive settings; they apply when its hive next starts.
pub async fn settings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeSettingsRequest>,
) -> Result<Json<Beehive>, QueenError> {
    req.hive_settings.validate()?;
    let mut record = state
        .registry
        .get(&req.node_name)?
        .ok_or_else(|| QueenError::NodeNotFound(req.node_name.clone()))?;
    record.config.hive_settings = req.hive_settings;
    state.registry.upsert(&record)?;
    Ok(Json(record.beehive()))
}

pub async fn install(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeRequest>,
) -> Result<Response, QueenError> {
    let record = state
        .registry
        .get(&req.node_name)?
        .ok_or_else(|| QueenError::NodeNotFound(req.node_name.clone()))?;
    let repo = setup::repository(&record.config)?;
    let events = setup::stream(move |narrator| async move {
        setup::install(&state, record, repo, &narrator).await
    });
    Ok(rbee_http::sse::stream(events))
}
