//! `rbee infer`: one completion, streamed.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use futures::StreamExt;
use rbee_api::queen::{TaskAssigned, TaskEvent, TaskRequest};
use rbee_api::routes::queen as paths;
use rbee_api::sse::SseEvent;
use rbee_api::worker::{ChatMessage, EndEvent, StopReason};
use rbee_api::{Backend, ErrorBody, ErrorCode, JobId, ModelRef, NodeName, TaskId, WorkerId};
use reqwest::Method;
use serde::Serialize;

use crate::cli::InferArgs;
use crate::config::Config;
use crate::error::{KeeperError, Result, fail};
use crate::output::{self, Bars};
use crate::queen::Queen;

/// Waits before retrying when the worker is busy.
const BUSY_RETRIES_S: [u64; 3] = [1, 2, 4];

enum Outcome {
    Done(Box<Answer>),
    Busy(String),
}

/// What `--json` prints: the whole answer, once it is complete.
#[derive(Debug, Serialize)]
struct Answer {
    text: String,
    model: ModelRef,
    node: Option<NodeName>,
    worker_id: Option<WorkerId>,
    backend: Option<Backend>,
    stop_reason: StopReason,
    usage: Usage,
    timings: Timings,
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: usize,
    /// Prompt tokens a slot's cache already held, so were not computed again.
    prompt_tokens_reused: usize,
    completion_tokens: usize,
}

#[derive(Debug, Serialize)]
struct Timings {
    /// From sending the request to its end, including placement, download and loading.
    total_ms: u64,
    prompt_ms: u64,
    generation_ms: u64,
    prompt_tokens_per_sec: f64,
    decode_tokens_per_sec: f64,
}

impl Answer {
    fn of(
        text: String,
        end: EndEvent,
        target: &Target,
        assigned: Option<TaskAssigned>,
        total: Duration,
    ) -> Self {
        Self {
            text,
            model: target.model.clone(),
            node: assigned.as_ref().map(|a| a.node.clone()),
            worker_id: assigned.as_ref().map(|a| a.worker_id.clone()),
            backend: assigned.as_ref().map(|a| a.backend),
            stop_reason: end.stop_reason,
            usage: Usage {
                prompt_tokens: end.tokens_in,
                prompt_tokens_reused: end.tokens_reused,
                completion_tokens: end.tokens_out,
            },
            timings: Timings {
                total_ms: total.as_millis() as u64,
                prompt_ms: end.prompt_ms,
                generation_ms: end.duration_ms.saturating_sub(end.prompt_ms),
                prompt_tokens_per_sec: end.prompt_tokens_per_sec,
                decode_tokens_per_sec: end.decode_tokens_per_sec,
            },
        }
    }
}

/// What to run on where, read from the flags (and the configuration's default model), and
/// the prompt (from the flag or standard input).
pub struct Target {
    node: Option<NodeName>,
    model: ModelRef,
    prompt: String,
}

/// The prompt from `--prompt`, or standard input when it is absent or `-`.
fn prompt_of(args: &InferArgs) -> Result<String> {
    match args.prompt.as_deref() {
        Some(p) if p != "-" => return Ok(p.to_owned()),
        _ => {}
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(fail(
            "no prompt: give --prompt \"...\", or pipe one in (echo \"...\" | rbee infer)",
        ));
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("cannot read the prompt from standard input: {e}")))?;
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.trim().is_empty() {
        return Err(fail("the prompt read from standard input is empty"));
    }
    Ok(text)
}

impl Target {
    pub fn of(args: &InferArgs, config: &Config) -> Result<Self> {
        let node = args.node.as_deref().map(str::parse).transpose();
        let model = match &args.model {
            Some(m) => m
                .parse()
                .map_err(|e: rbee_api::model_ref::InvalidModelRef| fail(e.to_string()))?,
            None => config.default_model()?,
        };
        Ok(Self {
            node: node.map_err(|e: rbee_api::ids::InvalidId| fail(e.to_string()))?,
            model,
            prompt: prompt_of(args)?,
        })
    }
}

pub async fn run(queen: &Queen, args: &InferArgs, target: &Target) -> Result<()> {
    let mut attempt = 0;
    loop {
        match once(queen, args, target).await? {
            Outcome::Done(answer) => {
                if args.json {
                    output::json(&answer)?;
                }
                return Ok(());
            }
            Outcome::Busy(message) => {
                let Some(wait) = BUSY_RETRIES_S.get(attempt) else {
                    return Err(fail(format!(
                        "{message}; still busy after {} retries. Wait for the running request to finish, or use another node with --node",
                        BUSY_RETRIES_S.len()
                    )));
                };
                eprintln!(
                    "Worker busy; retrying in {wait} s ({}/{})",
                    attempt + 1,
                    BUSY_RETRIES_S.len()
                );
                tokio::time::sleep(Duration::from_secs(*wait)).await;
                attempt += 1;
            }
        }
    }
}

fn request(args: &InferArgs, target: &Target, task_id: &TaskId) -> TaskRequest {
    let (prompt, messages) = if args.raw {
        (Some(target.prompt.clone()), None)
    } else {
        let system = args
            .system
            .iter()
            .map(|s| ChatMessage::new("system", s.clone()));
        let user = ChatMessage::new("user", target.prompt.clone());
        (None, Some(system.chain([user]).collect()))
    };
    TaskRequest {
        task_id: Some(task_id.clone()),
        node: target.node.clone(),
        model: target.model.clone(),
        prompt,
        messages,
        max_tokens: args.max_tokens,
        temperature: Some(args.temperature),
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        stop: (!args.stop.is_empty()).then(|| args.stop.clone()),
        frequency_penalty: None,
        presence_penalty: None,
        logit_bias: None,
        logprobs: None,
        format: None,
        context_length: None,
        tools: None,
        tool_choice: None,
        keep_alive: None,
        backend: args.backend,
        device: args.device,
    }
}

async fn once(queen: &Queen, args: &InferArgs, target: &Target) -> Result<Outcome> {
    let task_id = JobId::from_uuid(*uuid::Uuid::new_v4().as_bytes());
    let sent = std::time::Instant::now();
    let resp = queen
        .send(
            queen
                .request(Method::POST, paths::TASKS)
                .json(&request(args, target, &task_id)),
        )
        .await?;
    let mut frames = Box::pin(rbee_http::client::frames(resp));
    let mut bars = Bars::default();
    let mut text = String::new();
    let mut tokens = 0usize;
    let mut ended: Option<EndEvent> = None;
    let mut assigned: Option<TaskAssigned> = None;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let frame = tokio::select! {
            _ = &mut interrupt => {
                bars.clear();
                let cancel = queen.request(Method::DELETE, &paths::task(&task_id)).timeout(Duration::from_secs(5));
                let _ = cancel.send().await;
                if tokens > 0 && !args.json {
                    println!();
                }
                eprintln!("Canceled.");
                return Err(KeeperError::Interrupted);
            }
            frame = frames.next() => frame,
        };
        let frame = match frame {
            None => {
                bars.clear();
                let Some(end) = ended else {
                    return Err(crashed(
                        &text,
                        tokens,
                        "queen-rbee's stream closed before the answer's end",
                    ));
                };
                let answer = Answer::of(text, end, target, assigned, sent.elapsed());
                return Ok(Outcome::Done(Box::new(answer)));
            }
            Some(Ok(frame)) => frame,
            Some(Err(reason)) => {
                bars.clear();
                return Err(crashed(
                    &text,
                    tokens,
                    &format!("the connection to queen-rbee broke ({reason})"),
                ));
            }
        };
        let Some(Ok(event)) = TaskEvent::from_frame(&frame) else {
            continue;
        };
        match event {
            TaskEvent::Started(_) => {}
            TaskEvent::Assigned(a) => assigned = Some(a),
            TaskEvent::Narration(n) => output::narrate(&n),
            TaskEvent::Download(d) => bars.download(&d),
            TaskEvent::Loading(l) => bars.loading(&l),
            TaskEvent::Token(t) => {
                bars.clear();
                tokens += 1;
                text.push_str(&t.t);
                if !args.json {
                    output::token(&t.t);
                }
            }
            TaskEvent::End(end) if end.stop_reason == StopReason::Cancelled => {
                // This command did not cancel (Ctrl+C returns above): someone else did.
                return Err(crashed(
                    &text,
                    tokens,
                    &format!("task {task_id} was cancelled by another client"),
                ));
            }
            TaskEvent::End(end) => {
                if !args.json {
                    summary(&end, &text);
                }
                ended = Some(end);
            }
            TaskEvent::Error(e) => {
                bars.clear();
                return refused(e.error, &text, tokens);
            }
        }
    }
}

/// The closing line: how many tokens, how fast, and why generation stopped.
fn summary(end: &EndEvent, text: &str) {
    if !text.ends_with('\n') {
        println!();
    }
    eprintln!(
        "[{} tokens in {:.1} s, {:.1} tok/s, stop: {}]",
        end.tokens_out,
        end.duration_ms as f64 / 1000.0,
        end.decode_tokens_per_sec,
        end.stop_reason.as_str()
    );
}

/// What the keeper makes of an error event: a busy worker is retried elsewhere, a crash keeps
/// the partial answer, everything else is one readable line.
fn refused(error: ErrorBody, text: &str, tokens: usize) -> Result<Outcome> {
    match error.code {
        ErrorCode::AllSlotsBusy => Ok(Outcome::Busy(error.message)),
        ErrorCode::InvalidApiKey => Err(KeeperError::Auth(None)),
        // Any error after the first token (a worker or hive that died, a lost node, the
        // queen stopping) keeps the partial answer.
        _ if tokens > 0 => Err(crashed(text, tokens, &error.message)),
        _ => Err(fail(format!("{} ({})", error.message, error.code))),
    }
}

/// The answer broke off: keep what arrived in a file only this user can read, and say where.
fn crashed(text: &str, tokens: usize, reason: &str) -> KeeperError {
    if tokens == 0 {
        return fail(format!("Error: {reason}"));
    }
    println!();
    match save_partial(text) {
        Ok(path) => fail(format!(
            "Error: {reason}. The partial answer ({tokens} tokens) is saved in {}",
            path.display()
        )),
        Err(e) => fail(format!(
            "Error: {reason}. The partial answer ({tokens} tokens) could not be saved: {e}"
        )),
    }
}

/// Writes `text` to `<state dir>/partial/<uuid>.txt` (directory 0700, file 0600).
fn save_partial(text: &str) -> std::io::Result<std::path::PathBuf> {
    let dir = rbee_api::dirs::state_dir()
        .ok_or_else(|| std::io::Error::other("neither XDG_STATE_HOME nor HOME is set"))?
        .join("partial");
    let path = dir.join(format!("{}.txt", uuid::Uuid::new_v4().simple()));
    crate::config::write_private(&path, text.as_bytes())?;
    Ok(path)
}
