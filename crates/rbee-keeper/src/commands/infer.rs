//! `rbee infer`: one completion, streamed.

use std::time::Duration;

use futures::StreamExt;
use rbee_api::queen::{TaskEvent, TaskRequest};
use rbee_api::routes::queen as paths;
use rbee_api::sse::SseEvent;
use rbee_api::worker::{ChatMessage, EndEvent};
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
            Some(vec![ChatMessage {
                role: "user".into(),
                content: args.prompt.clone(),
            }]),
        )
    };
    TaskRequest {
        task_id: Some(task_id.clone()),
        node: target.node.clone(),
        model: target.model.clone(),
        prompt,
        messages,
        max_tokens: Some(args.max_tokens),
        temperature: Some(args.temperature),
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        stop: (!args.stop.is_empty()).then(|| args.stop.clone()),
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
            None => return Ok(Outcome::Done),
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
            TaskEvent::End(end) => summary(&end, &text),
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
        ErrorCode::WorkerCrashed | ErrorCode::ConnectionTimeout if tokens > 0 => {
            Err(crashed(text, tokens, &error.message))
        }
        ErrorCode::InvalidApiKey => Err(KeeperError::Auth(None)),
        _ => Err(fail(format!("{} ({})", error.message, error.code))),
    }
}

/// The answer broke off: keep what arrived in a temp file and say where.
fn crashed(text: &str, tokens: usize, reason: &str) -> KeeperError {
    println!();
    let path = std::env::temp_dir().join(format!(
        "rbee-partial-{}.txt",
        uuid::Uuid::new_v4().simple()
    ));
    match std::fs::write(&path, text) {
        Ok(()) => fail(format!(
            "Error: {reason}. The partial answer ({tokens} tokens) is saved in {}",
            path.display()
        )),
        Err(e) => fail(format!(
            "Error: {reason}. The partial answer ({tokens} tokens) could not be saved: {e}"
        )),
    }
}
