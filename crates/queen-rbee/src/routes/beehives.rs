//! The node registry: add (after an SSH test), list, remove, install (over SSH).

use std::process::Stdio;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use rbee_api::hive::Detected;
use rbee_api::queen::{Beehive, BeehiveList, LOCALHOST, NodeRequest, NodeStatus};
use rbee_api::{ErrorCode, ErrorEnvelope, Narration};
use rbee_http::ApiJson;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::error::QueenError;
use crate::hives::new_key;
use crate::registry::NodeRecord;
use crate::ssh::quote;
use crate::state::AppState;

const ACTOR: &str = "queen-rbee";

fn validate(b: &Beehive) -> Result<(), QueenError> {
    let name_ok = !b.node_name.is_empty()
        && b.node_name != LOCALHOST
        && b.node_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(QueenError::InvalidRequest(format!(
            "`{}` is not a usable node name (letters, digits, - _ .; not `localhost`)",
            b.node_name
        )));
    }
    if b.ssh_host.is_empty() || b.ssh_user.is_empty() || b.install_path.is_empty() {
        return Err(QueenError::InvalidRequest(
            "ssh_host, ssh_user and install_path are required".into(),
        ));
    }
    Ok(())
}

/// Backends and devices of a node with rbee installed; `None` when it is not installed yet.
async fn detect(state: &AppState, node: &Beehive) -> Option<Detected> {
    let bin = state
        .remote_binary_path
        .clone()
        .unwrap_or_else(|| format!("{}/target/release", node.install_path.trim_end_matches('/')));
    let out = state
        .hives
        .ssh()
        .run(node, &format!("{}/rbee-hive detect", quote(&bin)))
        .await
        .ok()?;
    serde_json::from_str(&out).ok()
}

pub async fn add(
    State(state): State<AppState>,
    ApiJson(mut node): ApiJson<Beehive>,
) -> Result<Json<Beehive>, QueenError> {
    validate(&node)?;
    tracing::info!("[{ACTOR}] Testing SSH connection to {}", node.ssh_host);
    let answer = state
        .hives
        .ssh()
        .run(&node, "echo connection test")
        .await
        .map_err(|e| QueenError::SshFailed {
            node: node.node_name.clone(),
            reason: e.message,
        })?;
    if answer.trim() != "connection test" {
        return Err(QueenError::SshFailed {
            node: node.node_name.clone(),
            reason: format!("unexpected answer to the connection test: {answer:?}"),
        });
    }
    if let Some(found) = detect(&state, &node).await {
        node.backends = found.backends;
        node.devices = found.devices;
    }
    node.status = NodeStatus::Reachable;
    node.last_connected_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs());
    node.last_error = None;
    let hive_api_key = state
        .registry
        .get(&node.node_name)?
        .map_or_else(new_key, |existing| existing.hive_api_key);
    state.registry.upsert(&NodeRecord {
        beehive: node.clone(),
        hive_api_key,
    })?;
    Ok(Json(node))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<BeehiveList>, QueenError> {
    Ok(Json(BeehiveList {
        beehives: state
            .registry
            .list()?
            .into_iter()
            .map(|r| r.beehive)
            .collect(),
    }))
}

pub async fn remove(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeRequest>,
) -> Result<Json<Value>, QueenError> {
    if !state.registry.remove(&req.node_name)? {
        return Err(QueenError::NodeNotFound(req.node_name));
    }
    Ok(Json(json!({"node_name": req.node_name, "removed": true})))
}

/// Clones the repository at its branch into the install path and builds the node's
/// binaries in release mode, streaming every line as narration.
pub async fn install(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NodeRequest>,
) -> Result<Response, QueenError> {
    let record = state
        .registry
        .get(&req.node_name)?
        .ok_or_else(|| QueenError::NodeNotFound(req.node_name.clone()))?;
    let node = record.beehive.clone();
    let repo = node.git_repo_url.clone().ok_or_else(|| {
        QueenError::InvalidRequest(format!(
            "node {} has no git_repo_url to install from",
            node.node_name
        ))
    })?;
    let (path, branch) = (quote(&node.install_path), quote(&node.git_branch));
    let script = format!(
        "set -e; PATH=\"$HOME/.cargo/bin:$PATH\"; \
         if [ -d {path}/.git ]; then cd {path}; git fetch --quiet origin {branch}; git checkout --quiet -B {branch} FETCH_HEAD; \
         else git clone --quiet --branch {branch} {repo} {path}; cd {path}; fi; \
         echo \"checked out $(git rev-parse --short HEAD) of {branch}\"; \
         cargo build --release --locked -p rbee-hive -p llm-worker-rbee 2>&1; \
         echo 'build finished'",
        repo = quote(&repo),
    );
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        let say = |human: String| Event::Narration(Narration::new(ACTOR, "install", human));
        let _ = tx
            .send(say(format!(
                "Installing rbee on {} from {repo} ({})",
                node.node_name, node.git_branch
            )))
            .await;
        let mut cmd = state.hives.ssh().command(&node, &script);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = tx
                    .send(Event::Error(ErrorEnvelope::new(
                        ErrorCode::SshFailed,
                        format!("cannot run ssh: {e}"),
                    )))
                    .await;
                return;
            }
        };
        let mut last = String::new();
        if let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) {
            let mut out = BufReader::new(out).lines();
            let mut err = BufReader::new(err).lines();
            let (mut out_open, mut err_open) = (true, true);
            while out_open || err_open {
                let line = tokio::select! {
                    l = out.next_line(), if out_open => l.ok().flatten().or_else(|| { out_open = false; None }),
                    l = err.next_line(), if err_open => l.ok().flatten().or_else(|| { err_open = false; None }),
                };
                if let Some(line) = line.filter(|l| !l.trim().is_empty()) {
                    last.clone_from(&line);
                    let _ = tx.send(say(line)).await;
                }
            }
        }
        let ok = child.wait().await.is_ok_and(|s| s.success());
        if !ok {
            let _ = tx
                .send(Event::Error(ErrorEnvelope::new(
                    ErrorCode::SshFailed,
                    format!("installing on {} failed: {last}", node.node_name),
                )))
                .await;
            return;
        }
        let mut updated = record;
        if let Some(found) = detect(&state, &node).await {
            updated.beehive.backends = found.backends;
            updated.beehive.devices = found.devices;
        }
        let _ = state.registry.upsert(&updated);
        let _ = tx
            .send(say(format!("rbee is installed on {}", node.node_name)))
            .await;
        let _ = tx.send(Event::Done).await;
    });
    Ok(rbee_http::sse::stream(rx))
}

/// Events of the install stream.
enum Event {
    Narration(Narration),
    Error(ErrorEnvelope),
    Done,
}

impl rbee_api::sse::SseMessage for Event {
    fn event(&self) -> &'static str {
        match self {
            Self::Narration(_) => rbee_api::sse::EVENT_NARRATION,
            Self::Error(_) => rbee_api::sse::EVENT_ERROR,
            Self::Done => "end",
        }
    }

    fn data(&self) -> String {
        match self {
            Self::Narration(n) => serde_json::to_string(n).unwrap_or_default(),
            Self::Error(e) => serde_json::to_string(e).unwrap_or_default(),
            Self::Done => "{\"ok\":true}".to_owned(),
        }
    }
}
