//! Starting hives and talking to them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use rbee_testkit::{
    Log, WAIT, alive, call, model_bytes, model_path, read_sse, signal, wait_gone,
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

pub const KEY: &str = "test-hive-key";

pub fn hive_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rbee-hive")
}

/// The worker binary built beside the hive (`cargo build --workspace` builds both).
pub fn worker_bin() -> PathBuf {
    let bin = Path::new(hive_bin()).with_file_name("llm-worker-rbee");
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// A port with nothing listening, as a start for the worker port range.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Options for a hive under test.
pub struct HiveOptions<'a> {
    pub data_dir: &'a Path,
    pub hub: Option<&'a str>,
    pub extra: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl<'a> HiveOptions<'a> {
    pub fn new(data_dir: &'a Path) -> Self {
        Self {
            data_dir,
            hub: None,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn hub(mut self, url: &'a str) -> Self {
        self.hub = Some(url);
        self
    }

    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.extra.push(flag.to_owned());
        self.extra.push(value.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

pub struct Hive {
    pub child: Child,
    pub url: String,
    pub log: Log,
    pub http: reqwest::Client,
}

impl Hive {
    pub async fn start(opts: HiveOptions<'_>) -> Self {
        let mut cmd = Command::new(hive_bin());
        cmd.args([
            "daemon",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--api-key",
            KEY,
        ])
        .arg("--data-dir")
        .arg(opts.data_dir)
        .arg("--worker-bin")
        .arg(worker_bin())
        .args(["--worker-host", "127.0.0.1"])
        .args(["--worker-port-start", &free_port().to_string()])
        .args(["--download-backoff", "10ms"])
        .args(["--hf-endpoint", opts.hub.unwrap_or("http://127.0.0.1:9")])
        .args(&opts.extra)
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env("RUST_LOG", "info");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let rbee_testkit::Started { child, log, url } = rbee_testkit::start_daemon(&mut cmd).await;
        Self {
            child,
            url,
            log,
            http: reqwest::Client::new(),
        }
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

    /// `POST /v1/workers/spawn`; the status and the JSON answer.
    pub async fn spawn(&self, body: Value) -> (u16, Value) {
        call(self.post("/v1/workers/spawn").json(&body)).await
    }

    pub async fn spawn_file(&self) -> Value {
        self.spawn_file_ref(&format!("file:{}", model_path().display()))
            .await
    }

    /// Spawns a worker for `model_ref` and expects success.
    pub async fn spawn_file_ref(&self, model_ref: &str) -> Value {
        let (status, body) = self.spawn(json!({"model_ref": model_ref})).await;
        assert_eq!(status, 200, "{body}\nhive log:\n{}", self.log.text());
        body
    }

    pub async fn workers(&self) -> Vec<Value> {
        let (_, list) = call(self.get("/v1/workers/list")).await;
        list["workers"].as_array().cloned().unwrap_or_default()
    }

    pub async fn models(&self) -> Vec<Value> {
        let (_, list) = call(self.get("/v1/models")).await;
        list["models"].as_array().cloned().unwrap_or_default()
    }

    /// `POST /v1/models/download`.
    pub async fn start_download(&self, model_ref: &str) -> Value {
        let (status, body) = call(
            self.post("/v1/models/download")
                .json(&json!({"model_ref": model_ref})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls the worker list until `check` holds.
    pub async fn wait_workers(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let workers = self.workers().await;
            if check(&workers) {
                return workers;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached: {what}; workers {workers:?}\nhive log:\n{}",
                self.log.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_idle(&self, worker_id: &str) -> Value {
        let workers = self
            .wait_workers(&format!("{worker_id} idle"), |ws| {
                ws.iter()
                    .any(|w| w["id"] == worker_id && w["state"] == "idle")
            })
            .await;
        workers.into_iter().find(|w| w["id"] == worker_id).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    pub async fn wait_exit(&mut self) -> Option<i32> {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("hive exits")
            .unwrap()
            .code()
    }
}

/// Streams a short greedy completion from a worker the hive spawned.
pub async fn infer(worker: &Value, max_tokens: usize) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/inference", worker["url"].as_str().unwrap()))
        .bearer_auth(worker["api_key"].as_str().unwrap())
        .json(&json!({
            "messages": [{"role": "user", "content": "Write a short story about a cat."}],
            "max_tokens": max_tokens,
            "temperature": 0
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    read_sse(resp)
        .await
        .into_iter()
        .filter(|f| f.event == "token")
        .map(|f| {
            serde_json::from_str::<Value>(&f.data).unwrap()["t"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}
