//! `POST /v2/tasks` (SSE of the whole flow) and `DELETE /v2/tasks/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use rbee_api::TaskId;
use rbee_api::queen::{TaskCancelled, TaskRequest};
use rbee_http::ApiJson;

use crate::error::QueenError;
use crate::state::AppState;

pub async fn start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TaskRequest>,
) -> Result<Response, QueenError> {
    let (_, rx) = crate::tasks::launch(&state, req)?;
    Ok(rbee_http::sse::stream(rx))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskCancelled>, QueenError> {
    // A name that is not a valid task id names no running task either.
    let id: TaskId = id
        .parse()
        .map_err(|e: rbee_api::ids::InvalidId| QueenError::InvalidRequest(e.to_string()))?;
    state.tasks.cancel(&id).await?;
    Ok(Json(TaskCancelled {
        task_id: id,
        cancelled: true,
    }))
}
