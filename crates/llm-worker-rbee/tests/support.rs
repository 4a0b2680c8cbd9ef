//! Starting workers and talking to them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rbee_api::sse::{SseEvent, SseFrame};
use rbee_api::worker::{EndEvent, InferenceEvent};
pub use rbee_testkit::{Log, model_path, read_sse};
use serde_json::Value;
use tokio::process::{Child, Command};

pub const KEY: &str = "test-worker-key";

pub fn worker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_llm-worker-rbee")
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
        let url = rbee_testkit::ready_url(&mut child, &log).await;
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

    /// The worker's `GET /metrics` text, checked to be Prometheus' text format.
    pub async fn metrics(&self) -> String {
        let resp = self.get("/metrics").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        resp.text().await.unwrap()
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
        // Held by the test (a parent's lifeline for `--watch-stdin`).
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("worker binary starts")
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

    /// The stream's `error` event, if it ended with one.
    pub fn error(&self) -> Option<&rbee_api::ErrorBody> {
        self.events.iter().find_map(|e| match e {
            InferenceEvent::Error(e) => Some(&e.error),
            _ => None,
        })
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

/// The index of the largest logit (the first of equals, as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}
