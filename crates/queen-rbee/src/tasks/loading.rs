//! Waiting for a worker to load its model, relaying its loading progress.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rbee_api::queen::TaskEvent;
use rbee_api::sse::SseEvent;
use rbee_api::worker::LoadingEvent;
use rbee_api::{ErrorCode, ErrorEnvelope, NodeName, WorkerId};
use tokio_util::sync::CancellationToken;

use super::{Events, cancelled};
use crate::clients::{CallError, WorkerClient};
use crate::error::QueenError;
use crate::state::AppState;

/// Consecutive connection errors after which a loading worker is given up on.
const MAX_CONNECTION_ERRORS: u32 = 10;

/// How one reading of the progress stream ended.
enum Reading {
    Done(Result<(), QueenError>),
    /// The stream broke (the worker died or restarted): read it again.
    Broken,
}

/// Relays `worker`'s loading progress until it is ready (or failed, or too slow).
pub(super) async fn wait(
    state: &AppState,
    node: &NodeName,
    worker_id: &WorkerId,
    worker: &WorkerClient,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<(), QueenError> {
    let deadline = Instant::now() + state.loading_timeout;
    let mut errors = 0;
    let mut last_state = "starting".to_owned();
    loop {
        if Instant::now() >= deadline {
            return Err(QueenError::LoadingTimeout {
                node: node.clone(),
                worker_id: worker_id.clone(),
                timeout: state.loading_timeout,
                state: last_state,
            });
        }
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let progress = match worker.loading_progress().await {
            Ok(resp) => resp,
            Err(e @ (CallError::Unreachable { .. } | CallError::NoAnswer { .. })) => {
                errors += 1;
                if errors >= MAX_CONNECTION_ERRORS {
                    return Err(QueenError::Remote(ErrorEnvelope::new(
                        ErrorCode::WorkerCrashed,
                        format!(
                            "worker {worker_id} on {node} stopped answering while starting ({e}); read its logs with `rbee logs --node {node}`"
                        ),
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(errors))).await;
                continue;
            }
            Err(CallError::Refused(envelope)) => return Err(QueenError::Remote(envelope)),
        };
        errors = 0;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let reading = tokio::time::timeout(remaining, read(progress, events, &mut last_state));
        tokio::select! {
            () = cancel.cancelled() => return Err(cancelled()),
            outcome = reading => match outcome {
                Ok(Reading::Done(done)) => {
                    if done.is_ok() {
                        events.say("worker_ready", format!("Worker {worker_id} is ready")).await;
                    }
                    return done;
                }
                Ok(Reading::Broken) => errors += 1,
                // The deadline passed: the loop reports it.
                Err(_) => continue,
            }
        }
    }
}

/// Reads one loading-progress stream, relaying each step; `last_state` follows the stages.
async fn read(progress: reqwest::Response, events: &Events, last_state: &mut String) -> Reading {
    let mut stream = Box::pin(rbee_http::client::frames(progress));
    while let Some(frame) = stream.next().await {
        let Ok(frame) = frame else {
            return Reading::Broken;
        };
        let Some(Ok(event)) = LoadingEvent::from_frame(&frame) else {
            continue;
        };
        event.stage().clone_into(last_state);
        match event {
            LoadingEvent::Ready => {
                events.send(TaskEvent::Loading(LoadingEvent::Ready)).await;
                return Reading::Done(Ok(()));
            }
            LoadingEvent::Failed { error } => {
                return Reading::Done(Err(QueenError::Remote(error)));
            }
            progress => events.send(TaskEvent::Loading(progress)).await,
        }
    }
    Reading::Broken
}
