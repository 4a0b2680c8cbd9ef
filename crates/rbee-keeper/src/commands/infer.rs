//! `rbee infer`: one completion, streamed. [`answer`] streams one answer of any
//! conversation; `rbee chat` uses it for each turn.

use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rbee_api::queen::{TaskAssigned, TaskEvent, TaskRequest};
use rbee_api::routes::queen as paths;
use rbee_api::sse::SseEvent;
use rbee_api::worker::{ChatMessage, EndEvent, StopReason};
use rbee_api::{Backend, ErrorBody, ErrorCode, JobId, ModelRef, NodeName, WorkerId};
use reqwest::Method;
use serde::Serialize;

use crate::cli::{Generation, InferArgs, Placement};
use crate::config::Config;
use crate::error::{KeeperError, Result, fail};
use crate::output::{self, Bars};
use crate::queen::Queen;

/// Waits before retrying when the worker is busy.
const BUSY_RETRIES_S: [u64; 3] = [1, 2, 4];

/// How one answer ended.
pub enum Ended {
    Answered(Box<Answer>),
    /// The user pressed Ctrl+C: the task was cancelled; what had arrived.
    Interrupted {
        text: String,
    },
}

enum Outcome {
    Ended(Ended),
    Busy(String),
}

/// What `--json` prints: the whole answer, once it is complete.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub text: String,
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
        req: &TaskRequest,
        assigned: Option<TaskAssigned>,
        total: Duration,
    ) -> Self {
        Self {
            text,
            model: req.model.clone(),
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

/// The model and node of a conversation, from the flags (and the configuration's default
/// model).
pub struct Target {
    pub node: Option<NodeName>,
    pub model: ModelRef,
}

impl Target {
    pub fn of(placement: &Placement, config: &Config) -> Result<Self> {
        let node = placement.node.as_deref().map(str::parse).transpose();
        let model = match &placement.model {
            Some(m) => parse_model(m)?,
            None => config.default_model()?,
        };
        Ok(Self {
            node: node.map_err(|e: rbee_api::ids::InvalidId| fail(e.to_string()))?,
            model,
        })
    }
}

pub fn parse_model(text: &str) -> Result<ModelRef> {
    text.parse()
        .map_err(|e: rbee_api::model_ref::InvalidModelRef| fail(e.to_string()))
}

/// The prompt from `--prompt`, or standard input when it is absent or `-`.
pub fn prompt_of(args: &InferArgs) -> Result<String> {
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

/// A task for `target` with `prompt` (raw text) or `messages`, generated as `g` says.
pub fn task(
    target: &Target,
    prompt: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    g: &Generation,
) -> TaskRequest {
    TaskRequest {
        node: target.node.clone(),
        prompt,
        messages,
        max_tokens: g.max_tokens,
        temperature: Some(g.temperature),
        top_p: g.top_p,
        top_k: g.top_k,
        seed: g.seed,
        stop: (!g.stop.is_empty()).then(|| g.stop.clone()),
        context_length: g.context_length,
        keep_alive: g.keep_alive.map(|d| d.as_secs()),
        chat_template: g.chat_template.clone(),
        backend: g.backend,
        device: g.device,
        ..TaskRequest::for_model(target.model.clone())
    }
}

pub async fn run(queen: &Queen, args: &InferArgs, target: &Target, prompt: String) -> Result<()> {
    let req = if args.raw {
        task(target, Some(prompt), None, &args.generation)
    } else {
        let system = (args.placement.system.iter()).map(|s| ChatMessage::new("system", s.clone()));
        let messages = system.chain([ChatMessage::new("user", prompt)]).collect();
        task(target, None, Some(messages), &args.generation)
    };
    match answer(queen, &req, args.json).await? {
        Ended::Answered(answer) if args.json => output::json(&answer),
        Ended::Answered(_) => Ok(()),
        Ended::Interrupted { .. } => Err(KeeperError::Interrupted),
    }
}

/// Streams the answer to `req` (tokens to stdout unless `quiet`, then a summary line), sent
/// again with a new task id while the worker is busy.
pub async fn answer(queen: &Queen, req: &TaskRequest, quiet: bool) -> Result<Ended> {
    let mut attempt = 0;
    loop {
        match once(queen, req, quiet).await? {
            Outcome::Ended(ended) => return Ok(ended),
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

async fn once(queen: &Queen, req: &TaskRequest, quiet: bool) -> Result<Outcome> {
    let task_id = JobId::from_uuid(*uuid::Uuid::new_v4().as_bytes());
    let req = TaskRequest {
        task_id: Some(task_id.clone()),
        ..req.clone()
    };
    let sent = Instant::now();
    let resp = queen
        .send(queen.request(Method::POST, paths::TASKS).json(&req))
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
                if tokens > 0 && !quiet {
                    println!();
                }
                eprintln!("Canceled.");
                return Ok(Outcome::Ended(Ended::Interrupted { text }));
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
                let answer = Answer::of(text, end, &req, assigned, sent.elapsed());
                return Ok(Outcome::Ended(Ended::Answered(Box::new(answer))));
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
                if !quiet {
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
                if !quiet {
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
