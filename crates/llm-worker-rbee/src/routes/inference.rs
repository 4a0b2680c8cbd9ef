//! `POST /v1/inference` (SSE token stream) and `DELETE /v1/inference/{job_id}`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use rbee_api::JobId;
use rbee_api::worker::{CancelResponse, InferenceEvent, InferenceRequest};
use rbee_http::ApiJson;
use tokio::sync::mpsc;

use crate::engine::Generated;
use crate::error::WorkerError;
use crate::scheduler::Request;
use crate::state::AppState;

/// How long a DELETE waits for the job to release its slot.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

pub async fn start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<InferenceRequest>,
) -> Result<Response, WorkerError> {
    let received = Instant::now();
    let result = stream(&state, req, received).await;
    if let Err(e) = &result {
        let code = e.envelope().error.code.as_str().to_lowercase();
        state.metrics.requests.inc(&code);
    }
    result
}

async fn stream(
    state: &AppState,
    req: InferenceRequest,
    received: Instant,
) -> Result<Response, WorkerError> {
    let engine = state.ready_engine()?;
    let job = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.prepare(&req)).await??
    };
    let (lease, cancel) = state.start_job(&job.job_id)?;
    let scheduler = state.scheduler().ok_or(WorkerError::Loading)?;
    let (tx, rx) = mpsc::unbounded_channel::<InferenceEvent>();

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
    let metrics = state.metrics.clone();
    let stopping = state.shutdown.clone();
    let emit = {
        let (tx, metrics) = (tx.clone(), metrics.clone());
        let mut last_token: Option<Instant> = None;
        move |event: InferenceEvent| {
            if matches!(event, InferenceEvent::Token(_)) {
                let now = Instant::now();
                match last_token {
                    None => metrics
                        .time_to_first_token
                        .observe((now - received).as_secs_f64()),
                    Some(last) => metrics.token_latency.observe((now - last).as_secs_f64()),
                }
                last_token = Some(now);
            }
            let _ = tx.send(event);
        }
    };
    let done = move |generated: Generated| {
        let end = &generated.end;
        metrics.tokens_generated.add(end.tokens_out as u64);
        metrics.prompt_tokens.add(end.tokens_in as u64);
        tracing::info!(
            job = %end.job_id,
            tokens_out = end.tokens_out,
            stop_reason = end.stop_reason.as_str(),
            decode_tps = format!("{:.1}", end.decode_tokens_per_sec),
            "inference finished"
        );
        let outcome = generated.outcome(stopping.is_cancelled());
        metrics.requests.inc(&match &outcome {
            Ok(end) => end.stop_reason.as_str().to_owned(),
            Err(e) => e.error.code.as_str().to_lowercase(),
        });
        let last = outcome.map_or_else(InferenceEvent::Error, InferenceEvent::End);
        // Free the slot before the client sees the last event, so its next request finds it
        // free.
        drop(lease);
        watcher.abort();
        let _ = tx.send(last);
    };
    scheduler.submit(Request {
        job,
        cancel,
        emit: Box::new(emit),
        done: Box::new(done),
    });
    Ok(rbee_http::sse::stream_unbounded(rx))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<CancelResponse>, WorkerError> {
    // A name that is not a valid job id names no running job either.
    let job_id: JobId = job_id
        .parse()
        .map_err(|_| WorkerError::JobNotFound(job_id))?;
    let stopped = state.cancel_job(&job_id, CANCEL_WAIT).await?;
    Ok(Json(CancelResponse {
        job_id,
        cancelled: stopped,
    }))
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let free = state.slots_available() as u64;
    let busy = state.slots_total() as u64 - free;
    // In the order of `Slot::ALL`.
    state.metrics.slots.set(&[busy, free]);
    state.metrics.exposition().response()
}
