//! A task: one inference request carried through the whole stack (SPEC section 5).
//!
//! The queen makes sure the node's hive runs, reuses an idle worker with the model or has
//! the hive download the model and spawn one (relaying download and loading progress), then
//! relays the worker's token stream. Every step is narrated. Cancelling the task (DELETE, or
//! the client going away) cancels the generation on the worker.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rbee_api::hive::{DownloadEvent, DownloadState, SpawnRequest, WorkerInfo};
use rbee_api::model_ref::ModelRef;
use rbee_api::queen::{LOCALHOST, TaskEvent};
use rbee_api::worker::{InferenceEvent, InferenceRequest, LoadingEvent, WorkerState};
use rbee_api::{ErrorCode, ErrorEnvelope, Narration};
use rbee_http::client::{StreamBreak, frames, frames_until_silent};
use rbee_http::metrics::Metrics;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clients::{CallError, HiveClient, WorkerClient};
use crate::error::QueenError;
use crate::state::AppState;

const ACTOR: &str = "queen-rbee";
/// Consecutive connection errors after which a loading worker is given up on.
const MAX_CONNECTION_ERRORS: u32 = 10;
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// A token stream silent this long (workers send a keep-alive every second) means the
/// worker's node or the network to it is gone.
const WORKER_SILENCE: Duration = Duration::from_secs(5);
/// Attempts, a second apart, to cancel a job on a worker that went silent.
const CANCEL_ATTEMPTS: u32 = 60;

/// Running tasks, for `DELETE /v2/tasks/{id}`.
#[derive(Default)]
pub struct Tasks {
    running: Mutex<HashMap<String, (CancellationToken, watch::Receiver<bool>)>>,
}

impl Tasks {
    fn running(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (CancellationToken, watch::Receiver<bool>)>>
    {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a task; the sender reports completion.
    pub fn register(
        &self,
        id: &str,
        cancel: CancellationToken,
    ) -> Result<watch::Sender<bool>, QueenError> {
        let mut running = self.running();
        if running.contains_key(id) {
            return Err(QueenError::InvalidRequest(format!(
                "a task `{id}` is already running"
            )));
        }
        let (tx, rx) = watch::channel(false);
        running.insert(id.to_owned(), (cancel, rx));
        Ok(tx)
    }

    pub fn finish(&self, id: &str) {
        self.running().remove(id);
    }

    /// Cancels a task and waits until it has stopped on the worker.
    pub async fn cancel(&self, id: &str) -> Result<(), QueenError> {
        let (cancel, mut done) = self
            .running()
            .get(id)
            .cloned()
            .ok_or_else(|| QueenError::TaskNotFound(id.to_owned()))?;
        cancel.cancel();
        let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|d| *d)).await;
        Ok(())
    }
}

/// Sends events of one task; a closed channel (client gone) cancels the task. Times the
/// tokens it relays.
struct Emitter {
    tx: mpsc::Sender<TaskEvent>,
    metrics: Metrics,
    started: Instant,
    last_token: Mutex<Option<Instant>>,
}

impl Emitter {
    async fn send(&self, event: TaskEvent) {
        if matches!(event, TaskEvent::Token(_)) {
            let now = Instant::now();
            let last = self
                .last_token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .replace(now);
            let (name, since) = match last {
                None => ("rbee_queen_time_to_first_token_seconds", self.started),
                Some(last) => ("rbee_queen_token_latency_seconds", last),
            };
            self.metrics
                .observe(name, &[], now.duration_since(since).as_secs_f64());
            self.metrics.inc("rbee_queen_tokens_total", &[]);
        }
        let _ = self.tx.send(event).await;
    }

    async fn narrate(&self, action: &str, human: impl Into<String>) {
        self.send(TaskEvent::Narration(Narration::new(ACTOR, action, human)))
            .await;
    }
}

/// Checks a task and starts it in the background; its id and events. Dropping the
/// receiver (the client went away) cancels the task, and so the generation on the worker.
pub fn launch(
    state: &AppState,
    req: rbee_api::queen::TaskRequest,
) -> Result<(String, mpsc::Receiver<TaskEvent>), QueenError> {
    if let Some(node) = &req.node
        && node != LOCALHOST
        && state.registry.get(node)?.is_none()
    {
        return Err(QueenError::NodeNotFound(node.clone()));
    }
    ModelRef::parse(&req.model).map_err(QueenError::InvalidRequest)?;
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
    {
        let (tx, cancel) = (tx.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tx.closed() => cancel.cancel(),
                () = cancel.cancelled() => {}
            }
        });
    }
    let state = state.clone();
    let id = task_id.clone();
    tokio::spawn(async move {
        run(state.clone(), req, id.clone(), tx, cancel.clone()).await;
        state.tasks.finish(&id);
        cancel.cancel();
        let _ = done.send(true);
    });
    Ok((task_id, rx))
}

/// Runs the task to its end, sending its events; errors become `error` events.
pub async fn run(
    state: AppState,
    req: rbee_api::queen::TaskRequest,
    task_id: String,
    tx: mpsc::Sender<TaskEvent>,
    cancel: CancellationToken,
) {
    let out = Emitter {
        tx,
        metrics: state.metrics.clone(),
        started: Instant::now(),
        last_token: Mutex::new(None),
    };
    out.send(TaskEvent::Started {
        task_id: task_id.clone(),
    })
    .await;
    let outcome = match execute(&state, &req, &task_id, &out, &cancel).await {
        Ok(()) if cancel.is_cancelled() => "cancelled".to_owned(),
        Ok(()) => "completed".to_owned(),
        Err(e) => {
            tracing::warn!(task = %task_id, "task failed: {e}");
            let envelope = e.envelope();
            out.send(TaskEvent::Error(envelope.clone())).await;
            envelope.error.code.as_str().to_lowercase()
        }
    };
    state
        .metrics
        .inc("rbee_queen_tasks_total", &[("outcome", &outcome)]);
}

async fn execute(
    state: &AppState,
    req: &rbee_api::queen::TaskRequest,
    task_id: &str,
    out: &Emitter,
    cancel: &CancellationToken,
) -> Result<(), QueenError> {
    let model = ModelRef::parse(&req.model)
        .map_err(QueenError::InvalidRequest)?
        .canonical();
    let (ntx, mut nrx) = mpsc::unbounded_channel::<String>();
    let narrate = move |line: String| {
        let _ = ntx.send(line);
    };
    let node = match &req.node {
        Some(node) => node.clone(),
        None => {
            let place = crate::placement::place(state, &model, req.backend, req.device, &narrate);
            let placed = relaying(out, &mut nrx, place).await?;
            state
                .metrics
                .inc("rbee_queen_placements_total", &[("rule", placed.rule)]);
            out.narrate(
                "placement",
                format!("placing on {}: {}", placed.node, placed.reason),
            )
            .await;
            placed.node
        }
    };
    out.narrate("task_start", format!("Task {task_id}: {model} on {node}"))
        .await;

    let hive = relaying(out, &mut nrx, state.hives.ensure(&node, &narrate)).await?;

    let workers = hive
        .workers()
        .await
        .map_err(|e| call_error(&hive, e))?
        .workers;
    let mine: Vec<&WorkerInfo> = workers
        .iter()
        .filter(|w| w.model_ref == model && w.backend == req.backend && w.device == req.device)
        .collect();
    let worker = if let Some(idle) = mine.iter().find(|w| w.state == WorkerState::Idle) {
        out.narrate(
            "worker_reuse",
            format!("Reusing idle worker {} at {}", idle.id, idle.url),
        )
        .await;
        WorkerClient::new(&idle.url, &idle.api_key, state.hives.http())
    } else if let Some(busy) = mine.iter().find(|w| matches!(w.state, WorkerState::Busy)) {
        return Err(QueenError::Remote(
            ErrorEnvelope::new(
                ErrorCode::AllSlotsBusy,
                format!("worker {} on {} is busy with another request", busy.id, node),
            )
            .with_details(serde_json::json!({"worker_id": busy.id, "slots_total": busy.slots_total, "slots_busy": busy.slots_total - busy.slots_available})),
        ));
    } else if let Some(loading) = mine.iter().find(|w| w.state == WorkerState::Loading) {
        out.narrate(
            "worker_wait",
            format!("Worker {} is already loading {model}", loading.id),
        )
        .await;
        let client = WorkerClient::new(&loading.url, &loading.api_key, state.hives.http());
        wait_loaded(state, &node, &loading.id, &client, out, cancel).await?;
        client
    } else {
        provision(&hive, &model, out, cancel).await?;
        out.narrate(
            "spawn",
            format!(
                "Spawning a worker for {model} on {} ({}:{})",
                node, req.backend, req.device
            ),
        )
        .await;
        let spawned = hive
            .spawn(&SpawnRequest {
                model_ref: model.clone(),
                backend: req.backend,
                device: req.device,
                slots: None,
            })
            .await
            .map_err(|e| call_error(&hive, e))?;
        out.narrate(
            "spawned",
            format!("Worker {} starting at {}", spawned.worker_id, spawned.url),
        )
        .await;
        let client = WorkerClient::new(&spawned.url, &spawned.api_key, state.hives.http());
        wait_loaded(state, &node, &spawned.worker_id, &client, out, cancel).await?;
        client
    };
    let result = infer(&worker, &node, req, task_id, out, cancel).await;
    if let Err(e @ QueenError::NodeLost { .. }) = &result {
        state.hives.mark_unreachable(&node, &e.to_string());
    }
    result
}

/// Runs `work`, relaying to the task's stream what it narrates meanwhile.
async fn relaying<T>(
    out: &Emitter,
    lines: &mut mpsc::UnboundedReceiver<String>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            Some(line) = lines.recv() => out.narrate("hive", line).await,
        }
    };
    while let Ok(line) = lines.try_recv() {
        out.narrate("hive", line).await;
    }
    result
}

fn call_error(hive: &HiveClient, e: CallError) -> QueenError {
    match e {
        CallError::Refused(envelope) => QueenError::Remote(envelope),
        CallError::Unreachable(reason) => QueenError::ConnectionTimeout {
            node: hive.node.clone(),
            url: hive.url.clone(),
            attempts: 1,
            reason,
        },
    }
}

/// Makes sure the hive has the model, relaying download progress.
async fn provision(
    hive: &HiveClient,
    model: &str,
    out: &Emitter,
    cancel: &CancellationToken,
) -> Result<(), QueenError> {
    let started = hive
        .download(model)
        .await
        .map_err(|e| call_error(hive, e))?;
    if started.state == DownloadState::Present {
        out.narrate(
            "model_present",
            format!("{model} is in the catalog of {}", hive.node),
        )
        .await;
        return Ok(());
    }
    out.narrate(
        "download_start",
        format!("Downloading {model} on {}", hive.node),
    )
    .await;
    let progress = hive
        .download_progress(&started.download_id)
        .await
        .map_err(|e| call_error(hive, e))?;
    let mut stream = Box::pin(frames(progress));
    loop {
        let frame = tokio::select! {
            () = cancel.cancelled() => return Err(cancelled()),
            frame = stream.next() => frame,
        };
        let Some(frame) = frame else {
            return Err(QueenError::Internal(
                "the download stream ended without an outcome".into(),
            ));
        };
        let frame = frame.map_err(|e| {
            QueenError::Internal(format!("download progress from {}: {e}", hive.node))
        })?;
        let event: DownloadEvent = serde_json::from_str(&frame.data)
            .map_err(|e| QueenError::Internal(format!("unreadable download event: {e}")))?;
        match &event {
            DownloadEvent::Complete { .. } => {
                out.send(TaskEvent::Download(event)).await;
                out.narrate("download_done", format!("{model} downloaded"))
                    .await;
                return Ok(());
            }
            DownloadEvent::Failed { error } => return Err(QueenError::Remote(error.clone())),
            _ => out.send(TaskEvent::Download(event)).await,
        }
    }
}

fn cancelled() -> QueenError {
    QueenError::Remote(ErrorEnvelope::new(
        ErrorCode::Cancelled,
        "the task was cancelled",
    ))
}

/// Relays the worker's loading progress until it is ready.
async fn wait_loaded(
    state: &AppState,
    node: &str,
    worker_id: &str,
    worker: &WorkerClient,
    out: &Emitter,
    cancel: &CancellationToken,
) -> Result<(), QueenError> {
    let deadline = Instant::now() + state.loading_timeout;
    let mut errors = 0;
    let mut last_state = "starting".to_owned();
    loop {
        if Instant::now() >= deadline {
            return Err(QueenError::LoadingTimeout {
                node: node.to_owned(),
                worker_id: worker_id.to_owned(),
                timeout: state.loading_timeout,
                state: last_state,
            });
        }
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let progress = match worker.loading_progress().await {
            Ok(resp) => resp,
            Err(CallError::Unreachable(reason)) => {
                errors += 1;
                if errors >= MAX_CONNECTION_ERRORS {
                    return Err(QueenError::Remote(ErrorEnvelope::new(
                        ErrorCode::WorkerCrashed,
                        format!(
                            "worker {worker_id} on {node} stopped answering while starting ({reason}); read its logs with `rbee logs --node {node}`"
                        ),
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(errors))).await;
                continue;
            }
            Err(CallError::Refused(envelope)) => return Err(QueenError::Remote(envelope)),
        };
        errors = 0;
        let mut stream = Box::pin(frames(progress));
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = tokio::time::timeout(remaining, async {
            while let Some(frame) = stream.next().await {
                let Ok(frame) = frame else { return None };
                let Ok(event) = serde_json::from_str::<LoadingEvent>(&frame.data) else {
                    continue;
                };
                last_state = event.stage().to_owned();
                match event {
                    LoadingEvent::Ready => {
                        out.send(TaskEvent::Loading(LoadingEvent::Ready)).await;
                        return Some(Ok(()));
                    }
                    LoadingEvent::Failed { error } => return Some(Err(QueenError::Remote(error))),
                    progress => out.send(TaskEvent::Loading(progress)).await,
                }
            }
            None
        });
        tokio::select! {
            () = cancel.cancelled() => return Err(cancelled()),
            result = outcome => match result {
                Ok(Some(done)) => {
                    if done.is_ok() {
                        out.narrate("worker_ready", format!("Worker {worker_id} is ready")).await;
                    }
                    return done;
                }
                // The stream broke (worker died or restarted): try again, counting errors.
                Ok(None) => errors += 1,
                Err(_) => continue,
            }
        }
    }
}

/// Relays the worker's token stream; cancels on the worker when the task is cancelled.
async fn infer(
    worker: &WorkerClient,
    node: &str,
    req: &rbee_api::queen::TaskRequest,
    task_id: &str,
    out: &Emitter,
    cancel: &CancellationToken,
) -> Result<(), QueenError> {
    let body = InferenceRequest {
        job_id: Some(task_id.to_owned()),
        prompt: req.prompt.clone(),
        messages: req.messages.clone(),
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        stop: req.stop.clone(),
        stream: Some(true),
    };
    let resp = worker.infer(&body).await.map_err(|e| match e {
        CallError::Refused(envelope) => QueenError::Remote(envelope),
        CallError::Unreachable(reason) => {
            QueenError::Remote(ErrorEnvelope::new(ErrorCode::WorkerCrashed, reason))
        }
    })?;
    let mut stream = Box::pin(frames_until_silent(resp, Some(WORKER_SILENCE)));
    let mut tokens = 0usize;
    loop {
        let frame = tokio::select! {
            () = cancel.cancelled() => {
                let _ = worker.cancel(task_id).await;
                // The worker ends the stream with `end` (stop_reason cancelled); relay it.
                let rest = tokio::time::timeout(CANCEL_WAIT, async {
                    while let Some(Ok(frame)) = stream.next().await {
                        if let Some(Ok(InferenceEvent::End(end))) = InferenceEvent::parse(&frame.event, &frame.data) {
                            return Some(end);
                        }
                    }
                    None
                }).await;
                if let Ok(Some(end)) = rest {
                    out.send(TaskEvent::End(end)).await;
                }
                return Ok(());
            }
            frame = stream.next() => frame,
        };
        match frame {
            None => return Ok(()),
            Some(Err(StreamBreak::Silent(limit))) => {
                // Free the worker's slot once it can be reached again (a cut link that
                // comes back), so the next request does not find it busy.
                let worker = worker.clone();
                let job = task_id.to_owned();
                tokio::spawn(async move {
                    for _ in 0..CANCEL_ATTEMPTS {
                        if !matches!(worker.cancel(&job).await, Err(CallError::Unreachable(_))) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
                return Err(QueenError::NodeLost {
                    node: node.to_owned(),
                    reason: format!(
                        "the worker's stream went silent after {tokens} tokens (no data for {} s)",
                        limit.as_secs()
                    ),
                });
            }
            Some(Err(StreamBreak::Broken(reason))) => {
                return Err(QueenError::Remote(
                    ErrorEnvelope::new(
                        ErrorCode::WorkerCrashed,
                        format!("the worker stopped mid-answer after {tokens} tokens ({reason})"),
                    )
                    .with_details(serde_json::json!({"tokens_out": tokens})),
                ));
            }
            Some(Ok(frame)) => match InferenceEvent::parse(&frame.event, &frame.data) {
                Some(Ok(InferenceEvent::Token(t))) => {
                    tokens += 1;
                    out.send(TaskEvent::Token(t)).await;
                }
                Some(Ok(InferenceEvent::Narration(n))) => out.send(TaskEvent::Narration(n)).await,
                Some(Ok(InferenceEvent::End(end))) => out.send(TaskEvent::End(end)).await,
                Some(Ok(InferenceEvent::Error(e))) => out.send(TaskEvent::Error(e)).await,
                _ => {}
            },
        }
    }
}
