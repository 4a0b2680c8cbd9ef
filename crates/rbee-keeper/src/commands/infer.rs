//! `rbee infer`: one completion, streamed.

use std::time::Duration;

use futures::StreamExt;
use rbee_api::queen::{TaskEvent, TaskRequest};
use rbee_api::routes::queen as paths;
use rbee_api::sse::SseEvent;
use rbee_api::worker::{ChatMessage, EndEvent, StopReason};
use rbee_api::{ErrorBody, ErrorCode, JobId, ModelRef, NodeName, TaskId};
use reqwest::Method;

use crate::cli::InferArgs;
use crate::config::Config;
use crate::error::{KeeperError, Result, fail};
use crate::output::{self, Bars};
use crate::queen::Queen;

/// Waits before retrying when the worker is busy.
const BUSY_RETRIES_S: [u64; 3] = [1, 2, 4];

enum Outcome {
    Done,
    Busy(String),
}

/// What to run on where, read from the flags (and the configuration's default model).
pub struct Target {
    node: Option<NodeName>,
    model: ModelRef,
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
        })
    }
}

pub async fn run(queen: &Queen, args: &InferArgs, target: &Target) -> Result<()> {
    let mut attempt = 0;
    loop {
        match once(queen, args, target).await? {
            Outcome::Done => return Ok(()),
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
        (Some(args.prompt.clone()), None)
    } else {
        (
            None,
            Some(vec![ChatMessage::new("user", args.prompt.clone())]),
        )
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
    let mut ended = false;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let frame = tokio::select! {
            _ = &mut interrupt => {
                bars.clear();
                let cancel = queen.request(Method::DELETE, &paths::task(&task_id)).timeout(Duration::from_secs(5));
                let _ = cancel.send().await;
                if tokens > 0 {
                    println!();
                }
                eprintln!("Canceled.");
                return Err(KeeperError::Interrupted);
            }
            frame = frames.next() => frame,
        };
        let frame = match frame {
            None if ended => return Ok(Outcome::Done),
            None => {
                bars.clear();
                return Err(crashed(
                    &text,
                    tokens,
                    "queen-rbee's stream closed before the answer's end",
                ));
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
            TaskEvent::Narration(n) => output::narrate(&n),
            TaskEvent::Download(d) => bars.download(&d),
            TaskEvent::Loading(l) => bars.loading(&l),
            TaskEvent::Token(t) => {
                bars.clear();
                tokens += 1;
                text.push_str(&t.t);
                output::token(&t.t);
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
                ended = true;
                summary(&end, &text);
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
