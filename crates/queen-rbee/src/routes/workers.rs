//! Workers across nodes: list, health, shutdown.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use rbee_api::NodeName;
use rbee_api::queen::{
    NodeHealth, NodeWorker, NodeWorkerStopped, NodeWorkersList, WorkerHealth, WorkerShutdownRequest,
};
use rbee_http::ApiJson;
use serde::Deserialize;

use crate::clients::{HiveClient, WorkerClient};
use crate::error::QueenError;
use crate::state::AppState;

/// The hives this queen can ask: localhost (if it runs) and every registered node.
async fn known_hives(state: &AppState) -> Result<Vec<HiveClient>, QueenError> {
    let mut hives = Vec::new();
    for node in state.node_names()? {
        if let Ok(client) = state.hives.client(&node).await {
            hives.push(client);
        }
    }
    Ok(hives)
}

pub async fn list(State(state): State<AppState>) -> Result<Json<NodeWorkersList>, QueenError> {
    let hives = known_hives(&state).await?;
    let answers = futures::future::join_all(hives.iter().map(|h| async move {
        match tokio::time::timeout(Duration::from_secs(5), h.workers()).await {
            Ok(Ok(list)) => list
                .workers
                .into_iter()
                .map(|worker| NodeWorker::shown(h.node.clone(), worker))
                .collect(),
            _ => Vec::new(),
        }
    }))
    .await;
    Ok(Json(NodeWorkersList {
        workers: answers.into_iter().flatten().collect(),
    }))
}

#[derive(Deserialize)]
pub struct HealthQuery {
    node: NodeName,
}

pub async fn health(
    State(state): State<AppState>,
    Query(q): Query<HealthQuery>,
) -> Result<Json<NodeHealth>, QueenError> {
    if !q.node.is_localhost() && state.registry.get(&q.node)?.is_none() {
        return Err(QueenError::NodeNotFound(q.node));
    }
    let hive = state.hives.client(&q.node).await?;
    let hive_version = hive
        .health(Duration::from_secs(3))
        .await
        .ok()
        .map(|h| h.version);
    let mut workers = Vec::new();
    if hive_version.is_some()
        && let Ok(list) = hive.workers().await
    {
        for w in list.workers {
            let client = WorkerClient::new(&w.url, &w.api_key, state.hives.http());
            let (healthy, state, detail) = match client.ready().await {
                Ok(r) => (true, r.state, None),
                Err(e) => (false, w.state, Some(e.to_string())),
            };
            workers.push(WorkerHealth {
                worker_id: w.id,
                url: w.url,
                model_ref: w.model_ref,
                healthy,
                state,
                detail,
            });
        }
    }
    Ok(Json(NodeHealth {
        node: q.node,
        hive_url: hive.url,
        hive_version,
        workers,
    }))
}

pub async fn shutdown(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<WorkerShutdownRequest>,
) -> Result<Json<NodeWorkerStopped>, QueenError> {
    for hive in known_hives(&state).await? {
        let Ok(list) = hive.workers().await else {
            continue;
        };
        if list.workers.iter().any(|w| w.id == req.worker_id) {
            let stopped = hive
                .stop_worker(&req.worker_id)
                .await
                .map_err(|e| e.from_hive(&hive))?;
            return Ok(Json(NodeWorkerStopped {
                node: hive.node,
                worker: stopped,
            }));
        }
    }
    Err(QueenError::WorkerNotFound(req.worker_id))
}
