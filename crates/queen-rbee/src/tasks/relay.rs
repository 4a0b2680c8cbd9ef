//! Relaying a worker's token stream to the task's client, timing the tokens; cancelling the
//! generation on the worker when the task is cancelled.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rbee_api::queen::{TaskEvent, TaskRequest};
use rbee_api::sse::{SseEvent, SseFrame};
use rbee_api::worker::{EndEvent, InferenceEvent, InferenceRequest};
use rbee_api::{ErrorCode, ErrorEnvelope, NodeName, TaskId, WorkerId};
use rbee_http::client::{StreamBreak, frames_until_silent};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Events;
use crate::clients::{CallError, WorkerClient};
use crate::error::QueenError;
use crate::running::CANCEL_WAIT;

/// A token stream silent this long (workers send a keep-alive every second) means the
/// worker's node or the network to it is gone.
const WORKER_SILENCE: Duration = Duration::from_secs(5);
/// Attempts, a second apart, to cancel a job on a worker that went silent.
const CANCEL_ATTEMPTS: u32 = 60;

/// Streams `req`'s answer from `worker` as the task's events; the worker's end (none when a
/// cancel's end did not come) is returned, for the task to send once it is done with the worker.
pub(super) async fn tokens(
    worker: &WorkerClient,
    worker_id: &WorkerId,
    node: &NodeName,
    req: &TaskRequest,
    task_id: &TaskId,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<Option<EndEvent>, QueenError> {
    let resp = worker
        .infer(&inference_request(req, task_id))
        .await
        .map_err(|e| {
            let code = match e {
                CallError::Refused(envelope) => return QueenError::Remote(envelope),
                CallError::NoAnswer { .. } => ErrorCode::ConnectionTimeout,
                CallError::Unreachable { .. } => ErrorCode::WorkerCrashed,
            };
            QueenError::Remote(
                ErrorEnvelope::new(
                    code,
                    format!("the worker on {node} did not take the request: {e}"),
                )
                .with_details(json!({"node": node})),
            )
        })?;
    let mut stream = Box::pin(frames_until_silent(resp, Some(WORKER_SILENCE)));
    let mut clock = TokenClock::new(events, worker_id);
    let mut ended = None;
    loop {
        let frame = tokio::select! {
            // The answer is whole once its end came; a cancel or a break after it changes nothing.
            () = cancel.cancelled(), if ended.is_none() => {
                let _ = worker.cancel(task_id).await;
                let end = end_after_cancel(&mut stream).await;
                if events.stopping.is_cancelled() {
                    return Err(QueenError::Remote(stopped_mid_answer(clock.tokens)));
                }
                return Ok(end);
            }
            frame = stream.next() => frame,
        };
        match frame {
            None | Some(Err(_)) if ended.is_some() => return Ok(ended),
            None => {
                return Err(QueenError::Remote(crashed_mid_answer(
                    clock.tokens,
                    "its stream closed without an `end` event",
                )));
            }
            Some(Err(StreamBreak::Silent(limit))) => {
                free_slot_when_back(worker, task_id);
                return Err(QueenError::NodeLost {
                    node: node.clone(),
                    reason: format!(
                        "the worker's stream went silent after {} tokens (no data for {} s)",
                        clock.tokens,
                        limit.as_secs()
                    ),
                });
            }
            Some(Err(broken @ (StreamBreak::Broken(_) | StreamBreak::Ended))) => {
                return Err(QueenError::Remote(crashed_mid_answer(
                    clock.tokens,
                    &broken.to_string(),
                )));
            }
            Some(Ok(frame)) => match InferenceEvent::from_frame(&frame) {
                Some(Ok(InferenceEvent::Token(t))) => {
                    clock.tick();
                    events.send(TaskEvent::Token(t)).await;
                }
                Some(Ok(InferenceEvent::Narration(n))) => {
                    events.send(TaskEvent::Narration(n)).await;
                }
                Some(Ok(InferenceEvent::End(end))) => ended = Some(end),
                // The worker's error ends the task as a failure (the task's `error` event).
                Some(Ok(InferenceEvent::Error(e))) => return Err(QueenError::Remote(e)),
                Some(Err(_)) | None => {}
            },
        }
    }
}

/// The worker's stream broke off before its end: the worker (or its hive) died.
fn crashed_mid_answer(tokens: usize, how: &str) -> ErrorEnvelope {
    ErrorEnvelope::new(
        ErrorCode::WorkerCrashed,
        format!("the worker stopped mid-answer after {tokens} tokens ({how})"),
    )
    .with_details(json!({"tokens_out": tokens}))
}

/// The queen itself is shutting down, which stops its hives and their workers.
fn stopped_mid_answer(tokens: usize) -> ErrorEnvelope {
    ErrorEnvelope::new(
        ErrorCode::WorkerStopped,
        format!("queen-rbee is shutting down; the answer was cut after {tokens} tokens"),
    )
    .with_details(json!({"tokens_out": tokens}))
}

pub(super) fn inference_request(req: &TaskRequest, task_id: &TaskId) -> InferenceRequest {
    InferenceRequest {
        job_id: Some(task_id.clone()),
        prompt: req.prompt.clone(),
        messages: req.messages.clone(),
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        stop: req.stop.clone(),
        frequency_penalty: req.frequency_penalty,
        presence_penalty: req.presence_penalty,
        logit_bias: req.logit_bias.clone(),
        logprobs: req.logprobs,
        format: req.format.clone(),
        context_length: req.context_length,
        tools: req.tools.clone(),
        tool_choice: req.tool_choice.clone(),
        chat_template: req.chat_template.clone(),
        stream: Some(true),
    }
}

/// After a cancel, the worker ends the stream with `end` (stop reason `cancelled`): read it,
/// for a while, to relay it.
async fn end_after_cancel(
    stream: &mut (impl Stream<Item = Result<SseFrame, StreamBreak>> + Unpin),
) -> Option<EndEvent> {
    let end = async {
        while let Some(Ok(frame)) = stream.next().await {
            if let Some(Ok(InferenceEvent::End(end))) = InferenceEvent::from_frame(&frame) {
                return Some(end);
            }
        }
        None
    };
    tokio::time::timeout(CANCEL_WAIT, end).await.ok().flatten()
}

/// Frees the worker's slot once it can be reached again (a cut link that comes back), so the
/// next request does not find it busy.
fn free_slot_when_back(worker: &WorkerClient, task_id: &TaskId) {
    let (worker, job) = (worker.clone(), task_id.clone());
    tokio::spawn(async move {
        for _ in 0..CANCEL_ATTEMPTS {
            if !matches!(
                worker.cancel(&job).await,
                Err(CallError::Unreachable { .. } | CallError::NoAnswer { .. })
            ) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Times the tokens relayed: the first from the task's start, each next from the last.
struct TokenClock<'a> {
    events: &'a Events,
    worker: &'a WorkerId,
    last: Option<Instant>,
    tokens: usize,
}

impl<'a> TokenClock<'a> {
    fn new(events: &'a Events, worker: &'a WorkerId) -> Self {
        Self {
            events,
            worker,
            last: None,
            tokens: 0,
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let metrics = &self.events.metrics;
        match self.last.replace(now) {
            None => metrics
                .time_to_first_token
                .observe(now.duration_since(self.events.started).as_secs_f64()),
            Some(last) => metrics
                .token_latency
                .observe(now.duration_since(last).as_secs_f64()),
        }
        metrics.tokens.inc();
        metrics.worker_tokens.inc(self.worker.as_str());
        self.tokens += 1;
    }
}
