//! `POST /v1/inference` (SSE token stream) and `DELETE /v1/inference/{job_id}`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use rbee_api::worker::{CancelResponse, InferenceEvent, InferenceRequest};
use rbee_http::ApiJson;
use tokio::sync::mpsc;

use crate::error::WorkerError;
use crate::state::AppState;

/// How long a DELETE waits for the job to release its slot.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

pub async fn start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<InferenceRequest>,
) -> Result<Response, WorkerError> {
    let engine = state.ready_engine()?;
    let job = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.prepare(&req))
            .await
            .map_err(|e| WorkerError::Internal(format!("tokenizer task failed: {e}")))??
    };
    let (lease, cancel) = state.start_job(&job.job_id)?;
    let (tx, rx) = mpsc::channel::<InferenceEvent>(256);

    // A client that goes away closes the channel; treat that as a cancel.
    let watcher = {
        let (tx, cancel) = (tx.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tx.closed() => cancel.cancel(),
                () = cancel.cancelled() => {}
            }
        })
    };
    tokio::task::spawn_blocking(move || {
        let end = engine.generate(&job, &cancel, |event| {
            let _ = tx.blocking_send(event);
        });
        tracing::info!(
            job = %end.job_id,
            tokens_out = end.tokens_out,
            stop_reason = end.stop_reason.as_str(),
            decode_tps = format!("{:.1}", end.decode_tokens_per_sec),
            "inference finished"
        );
        // Free the slot before the client sees `end`, so its next request finds it free.
        drop(lease);
        watcher.abort();
        let _ = tx.blocking_send(InferenceEvent::End(end));
    });
    Ok(rbee_http::sse::stream(rx))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<CancelResponse>, WorkerError> {
    let stopped = state.cancel_job(&job_id, CANCEL_WAIT).await?;
    Ok(Json(CancelResponse {
        job_id,
        cancelled: stopped,
    }))
}
