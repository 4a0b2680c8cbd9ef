//! `GET /v2/lab/events`: the lab's state, pushed to the web dashboard (and any client) as a
//! [`LabSnapshot`] at once and then every [`LabSnapshot::EVERY_MS`]. A snapshot never starts
//! a hive: it asks each node's hive port (2 s at most), and a node whose hive does not answer
//! shows as not running. Each client's stream makes its own snapshots.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use rbee_api::queen::{LabNode, LabSnapshot, LabWorker, NodeWorker};
use rbee_api::{NodeName, now_unix_ms};
use tokio::sync::mpsc;

use crate::error::QueenError;
use crate::state::AppState;

/// How long a snapshot waits for a node's hive.
const HIVE_WAIT: Duration = Duration::from_secs(2);

pub async fn events(State(state): State<AppState>) -> Result<Response, QueenError> {
    let (tx, rx) = mpsc::channel::<LabSnapshot>(1);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(LabSnapshot::EVERY_MS));
        // A slow snapshot delays the next rather than bunching them.
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = tx.closed() => return,
            }
            let snapshot = tokio::select! {
                snapshot = snapshot(&state) => snapshot,
                () = tx.closed() => return,
            };
            if tx.send(snapshot).await.is_err() {
                return;
            }
        }
    });
    Ok(rbee_http::sse::stream(rx))
}

async fn snapshot(state: &AppState) -> LabSnapshot {
    let registered = &state.registry.list().unwrap_or_default();
    let mut names = vec![NodeName::localhost()];
    names.extend(registered.iter().map(|r| r.config.node_name.clone()));
    let nodes = futures::future::join_all(names.iter().map(|node| async move {
        let hive = state.hives.client(node).await.ok();
        let answer = match &hive {
            Some(hive) => tokio::time::timeout(HIVE_WAIT, async {
                let resources = hive.resources().await.ok()?;
                let workers = hive.workers().await.map(|l| l.workers).unwrap_or_default();
                Some((resources, workers))
            })
            .await
            .ok()
            .flatten(),
            None => None,
        };
        let record = registered.iter().find(|r| &r.config.node_name == node);
        let (resources, workers) = answer.unzip();
        let lab_node = LabNode {
            node_name: node.clone(),
            registered: record.map(|r| r.state.clone()),
            hive_running: resources.is_some(),
            resources,
        };
        (lab_node, workers.unwrap_or_default())
    }))
    .await;
    let metrics = &state.metrics;
    let load = state.lanes.load();
    let mut workers = Vec::new();
    let mut lab_nodes = Vec::new();
    for (node, on_node) in nodes {
        workers.extend(on_node.into_iter().map(|worker| LabWorker {
            tokens_total: metrics.worker_tokens.get(worker.id.as_str()),
            worker: NodeWorker::shown(node.node_name.clone(), worker),
        }));
        lab_nodes.push(node);
    }
    LabSnapshot {
        unix_ms: now_unix_ms(),
        nodes: lab_nodes,
        workers,
        tokens_total: metrics.tokens.get(),
        tasks_total: metrics.tasks.total(),
        queued_tasks: load.queued,
        busy_slots: load.busy,
    }
}
