//! Starting workers and talking to them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rbee_api::sse::{SseDecoder, SseFrame};
use rbee_api::worker::{EndEvent, InferenceEvent};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

pub const KEY: &str = "test-worker-key";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The default model, fetched by `scripts/fetch-model.sh`.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RBEE_TEST_MODEL") {
        return p.into();
    }
    let cache = std::env::var_os("RBEE_MODEL_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("rbee/models"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/rbee/models")
        });
    let path = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-model.sh first",
        path.display()
    );
    path
}

pub fn worker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_llm-worker-rbee")
}

/// Captured stderr of a child, and a way to wait for a line.
#[derive(Clone, Default)]
pub struct Log {
    lines: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
    closed: Arc<Mutex<bool>>,
}

impl Log {
    pub fn capture(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Self {
        let log = Self::default();
        let l = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                l.lines.lock().unwrap().push(line);
                l.changed.notify_waiters();
            }
            *l.closed.lock().unwrap() = true;
            l.changed.notify_waiters();
        });
        log
    }

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until the stream has ended (the process closed it).
    pub async fn closed(&self) {
        loop {
            let notified = self.changed.notified();
            if *self.closed.lock().unwrap() {
                return;
            }
            tokio::time::timeout(START_TIMEOUT, notified)
                .await
                .expect("stream closes");
        }
    }

    /// Waits for a line containing `needle`; `None` if the stream ended first.
    pub async fn wait_for(&self, needle: &str) -> Option<String> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let notified = self.changed.notified();
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return Some(line.clone());
            }
            if *self.closed.lock().unwrap() {
                return None;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for `{needle}` in:\n{}", self.text());
            }
        }
    }
}

pub struct Worker {
    pub child: Child,
    pub url: String,
    pub log: Log,
    pub http: reqwest::Client,
}

impl Worker {
    /// Starts a worker for `model` on a free loopback port and waits until it listens.
    pub async fn start_with(model: &Path, extra: &[&str]) -> Self {
        let mut child = spawn(model, extra);
        let log = Log::capture(child.stderr.take().unwrap());
        let line = match log.wait_for("Listening on http://").await {
            Some(line) => line,
            None => panic!("worker exited before listening:\n{}", log.text()),
        };
        let url = line
            .split("Listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned();
        Self {
            child,
            url,
            log,
            http: reqwest::Client::new(),
        }
    }

    /// Starts a worker on the default model and waits until the model is loaded.
    pub async fn ready(extra: &[&str]) -> Self {
        let w = Self::start_with(&model_path(), extra).await;
        let events = w.get_sse("/v1/loading/progress").await;
        assert_eq!(
            events.last().map(|f| f.event.as_str()),
            Some("ready"),
            "{events:?}"
        );
        w
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(KEY)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(KEY)
    }

    pub async fn get_sse(&self, path: &str) -> Vec<SseFrame> {
        read_sse(self.get(path).send().await.unwrap()).await
    }

    /// Runs one inference and returns its parsed events (everything before `[DONE]`).
    pub async fn infer(&self, body: Value) -> Completion {
        let resp = self.post("/v1/inference").json(&body).send().await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        Completion::from_frames(read_sse(resp).await)
    }

    pub async fn ready_state(&self) -> Value {
        self.get("/v1/ready")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the worker reports `state` on /v1/ready (polling an observable state).
    pub async fn wait_for_state(&self, state: &str) {
        self.wait_until(&format!("state {state}"), |r| r["state"] == state)
            .await;
    }

    /// Polls /v1/ready until `check` holds.
    pub async fn wait_until(&self, what: &str, check: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.ready_state().await;
            if check(&ready) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached {what}: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn spawn(model: &Path, extra: &[&str]) -> Child {
    Command::new(worker_bin())
        .arg("--model")
        .arg(model)
        .args(["--port", "0", "--host", "127.0.0.1", "--api-key", KEY])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("worker binary starts")
}

/// Reads an SSE response until `[DONE]` (or the end of the body).
pub async fn read_sse(resp: reqwest::Response) -> Vec<SseFrame> {
    let mut decoder = SseDecoder::new();
    let mut frames = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        for frame in decoder.feed(&chunk.unwrap()) {
            if frame.is_done() {
                return frames;
            }
            frames.push(frame);
        }
    }
    frames
}

/// The parsed events of one inference stream.
#[derive(Debug)]
pub struct Completion {
    pub events: Vec<InferenceEvent>,
}

impl Completion {
    pub fn from_frames(frames: Vec<SseFrame>) -> Self {
        let events = frames
            .iter()
            .filter_map(|f| InferenceEvent::parse(&f.event, &f.data))
            .map(|r| r.expect("event parses"))
            .collect();
        Self { events }
    }

    pub fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                InferenceEvent::Token(t) => Some(t.t.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn end(&self) -> &EndEvent {
        self.events
            .iter()
            .find_map(|e| match e {
                InferenceEvent::End(end) => Some(end),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no end event in {:?}", self.events))
    }
}

/// A chat request for the default story prompt.
pub fn story_request(max_tokens: usize, extra: Value) -> Value {
    let mut body = serde_json::json!({
        "messages": [{"role": "user", "content": "Write a short story about a cat."}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}
