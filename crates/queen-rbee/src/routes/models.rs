//! The models of every node: their catalogs, pulling a model onto a node with progress,
//! removing one, and what a model's GGUF header says.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use futures::StreamExt;
use rbee_api::NodeName;
use rbee_api::hive::{DownloadEvent, DownloadState, ModelSettingsRequest};
use rbee_api::queen::{
    ModelShowQuery, ModelsQuery, NodeModelEntry, NodeModelInfo, NodeModelPulled, NodeModelRemoved,
    NodeModelRequest, NodeModelSettingsRequest, NodeModels, NodeModelsList, PullEvent,
};
use rbee_http::ApiJson;
use tokio::sync::mpsc;

use crate::clients::CallError;
use crate::error::QueenError;
use crate::narration::Narrator;
use crate::state::AppState;

/// How long one node's catalog may take to come back.
const CATALOG_DEADLINE: Duration = Duration::from_secs(30);
/// How long a running hive's catalog may take when hives are not started: a node that does
/// not answer in this time is shown as not answering rather than holding the list up.
const RUNNING_DEADLINE: Duration = Duration::from_secs(5);

/// The nodes a request is about: the one it names (which must exist), else all.
fn nodes(state: &AppState, node: Option<NodeName>) -> Result<Vec<NodeName>, QueenError> {
    let all = state.node_names()?;
    match node {
        Some(n) if all.contains(&n) => Ok(vec![n]),
        Some(n) => Err(QueenError::NodeNotFound(n)),
        None => Ok(all),
    }
}

/// One node's catalog; its hive is started if it does not run and `start` allows (the
/// deadline is on the answer, never on a start, so a hive being started is always recorded).
async fn catalog(state: &AppState, node: NodeName, start: bool) -> NodeModels {
    let unread = |node: NodeName, error: Option<String>| NodeModels {
        node,
        models: Vec::new(),
        disk_free_bytes: None,
        error,
        hive_running: false,
    };
    let hive = if start {
        state.hives.ensure(&node, &Narrator::log_only()).await
    } else {
        state.hives.client(&node).await
    };
    let hive = match hive {
        Ok(hive) => hive,
        // The queen's own hive was not started (a registered node's is tried below).
        Err(QueenError::Remote(_)) if !start && node.is_localhost() => return unread(node, None),
        Err(e) => return unread(node, Some(e.to_string())),
    };
    let deadline = if start {
        CATALOG_DEADLINE
    } else {
        RUNNING_DEADLINE
    };
    match tokio::time::timeout(deadline, hive.models()).await {
        Ok(Ok(list)) => NodeModels {
            node,
            models: list.models,
            disk_free_bytes: list.disk_free_bytes,
            error: None,
            hive_running: true,
        },
        // Nothing listens on its hive port: its hive does not run.
        Ok(Err(CallError::Unreachable { .. })) if !start => unread(node, None),
        Ok(Err(e)) => unread(node, Some(e.from_hive(&hive).to_string())),
        Err(_) => unread(
            node,
            Some(format!(
                "its hive did not list its models within {} s",
                deadline.as_secs()
            )),
        ),
    }
}

/// `GET /v2/models/list[?node=][&start=false]`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ModelsQuery>,
) -> Result<Json<NodeModelsList>, QueenError> {
    let nodes = nodes(&state, q.node)?;
    let catalogs = (nodes.into_iter()).map(|n| catalog(&state, n, q.start));
    Ok(Json(NodeModelsList {
        nodes: futures::future::join_all(catalogs).await,
    }))
}

/// `GET /v2/models/show?model=[&node=]`: the catalog row and header of the model on the
/// node named, else on the first node whose catalog has it.
pub async fn show(
    State(state): State<AppState>,
    Query(q): Query<ModelShowQuery>,
) -> Result<Json<NodeModelInfo>, QueenError> {
    let named = q.node.is_some();
    let catalogs = futures::future::join_all(
        nodes(&state, q.node)?
            .into_iter()
            .map(|n| catalog(&state, n, true)),
    );
    for found in catalogs.await {
        if let Some(error) = found.error {
            // A node named on purpose that cannot answer is an error, not "not found".
            if named {
                return Err(QueenError::Remote(rbee_api::ErrorEnvelope::new(
                    rbee_api::ErrorCode::ConnectionTimeout,
                    format!("{}: {error}", found.node),
                )));
            }
            continue;
        }
        let Some(entry) = found.models.into_iter().find(|m| m.reference == q.model) else {
            continue;
        };
        let hive = state.hives.client(&found.node).await?;
        let info = hive
            .model_info(&entry.reference)
            .await
            .map_err(|e| e.from_hive(&hive))?;
        return Ok(Json(NodeModelInfo {
            node: found.node,
            entry,
            info,
        }));
    }
    Err(QueenError::Remote(rbee_api::ErrorEnvelope::new(
        rbee_api::ErrorCode::ModelNotFound,
        format!(
            "{} is in no node's catalog; pull it with `rbee models pull {} --node <node>`",
            q.model, q.model
        ),
    )))
}

/// `POST /v2/models/remove`: the hive refuses while a worker runs the model.
pub async fn remove(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeModelRequest>,
) -> Result<Json<NodeModelRemoved>, QueenError> {
    nodes(&state, Some(req.node.clone()))?;
    let hive = state.hives.ensure(&req.node, &Narrator::log_only()).await?;
    let removed = hive
        .delete_model(&req.model)
        .await
        .map_err(|e| e.from_hive(&hive))?;
    Ok(Json(NodeModelRemoved {
        node: req.node,
        removed,
    }))
}

/// `POST /v2/models/settings`: the hive checks a chat template compiles, and refuses while
/// a worker runs the model.
pub async fn settings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeModelSettingsRequest>,
) -> Result<Json<NodeModelEntry>, QueenError> {
    nodes(&state, Some(req.node.clone()))?;
    let hive = state.hives.ensure(&req.node, &Narrator::log_only()).await?;
    let body = ModelSettingsRequest {
        model_ref: req.model,
        settings: req.settings,
    };
    let model = (hive.set_model_settings(&body).await).map_err(|e| e.from_hive(&hive))?;
    Ok(Json(NodeModelEntry {
        node: req.node,
        model,
    }))
}

/// `POST /v2/models/pull`: downloads the model onto the node (starting its hive), streaming
/// the download's progress, then the catalog entry. A client that goes away leaves the
/// download running on the hive; pulling again follows it, or resumes it after a restart.
pub async fn pull(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeModelRequest>,
) -> Result<Response, QueenError> {
    nodes(&state, Some(req.node.clone()))?;
    let (tx, rx) = mpsc::channel::<PullEvent>(64);
    tokio::spawn(async move {
        let end = match pulled(&state, &req, &tx).await {
            Ok(done) => PullEvent::Done(done),
            Err(e) => PullEvent::Error(e.envelope()),
        };
        let _ = tx.send(end).await;
    });
    Ok(rbee_http::sse::stream(rx))
}

async fn pulled(
    state: &AppState,
    req: &NodeModelRequest,
    tx: &mpsc::Sender<PullEvent>,
) -> Result<NodeModelPulled, QueenError> {
    let narrator = Narrator::pull(tx.clone());
    let hive = state.hives.ensure(&req.node, &narrator).await?;
    let started = hive
        .download(&req.model)
        .await
        .map_err(|e| e.from_hive(&hive))?;
    let already_present = started.state == DownloadState::Present;
    if !already_present {
        narrator
            .say(
                "download_start",
                format!("Downloading {} on {}", req.model, req.node),
            )
            .await;
        let mut progress =
            Box::pin(crate::downloads::follow(&hive, &req.model, &started.download_id).await?);
        while let Some(event) = progress.next().await {
            let event = event?;
            let complete = matches!(event, DownloadEvent::Complete { .. });
            if tx.send(PullEvent::Download(event)).await.is_err() || complete {
                break;
            }
        }
    }
    let list = hive.models().await.map_err(|e| e.from_hive(&hive))?;
    let model = (list.models.into_iter())
        .find(|m| m.reference == req.model)
        .ok_or_else(|| {
            QueenError::Internal(format!(
                "{} finished downloading but is not in the catalog of {}",
                req.model, req.node
            ))
        })?;
    Ok(NodeModelPulled {
        node: req.node.clone(),
        model,
        already_present,
    })
}
