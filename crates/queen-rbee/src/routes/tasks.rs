//! `POST /v2/tasks` (SSE of the whole flow) and `DELETE /v2/tasks/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use rbee_api::queen::{LOCALHOST, TaskRequest};
use rbee_http::ApiJson;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::QueenError;
use crate::state::AppState;

pub async fn start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TaskRequest>,
) -> Result<Response, QueenError> {
    if req.node != LOCALHOST && state.registry.get(&req.node)?.is_none() {
        return Err(QueenError::NodeNotFound(req.node));
    }
    rbee_api::model_ref::ModelRef::parse(&req.model).map_err(QueenError::InvalidRequest)?;
    if req.prompt.is_none() == req.messages.is_none() {
        return Err(QueenError::InvalidRequest(
            "send either `prompt` or `messages`".into(),
        ));
    }
    let task_id = req
        .task_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let cancel = state.shutdown.child_token();
    let done = state.tasks.register(&task_id, cancel.clone())?;
    let (tx, rx) = mpsc::channel(256);
    // A client that goes away cancels the task, and so the generation on the worker.
    {
        let (tx, cancel) = (tx.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tx.closed() => cancel.cancel(),
                () = cancel.cancelled() => {}
            }
        });
    }
    tokio::spawn(async move {
        crate::tasks::run(state.clone(), req, task_id.clone(), tx, cancel.clone()).await;
        state.tasks.finish(&task_id);
        cancel.cancel();
        let _ = done.send(true);
    });
    Ok(rbee_http::sse::stream(rx))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, QueenError> {
    state.tasks.cancel(&id).await?;
    Ok(Json(json!({"task_id": id, "cancelled": true})))
}
