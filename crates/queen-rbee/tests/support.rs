//! A queen under test, a node reachable over SSH on loopback, task streams.

use std::path::{Path, PathBuf};

use rbee_api::queen::{SetupEvent, TaskEvent};
use rbee_api::sse::SseEvent;
pub use rbee_testkit::{Sshd, call, free_port, model_path, read_sse, signal, wait_gone};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

pub fn queen_bin() -> &'static str {
    env!("CARGO_BIN_EXE_queen-rbee")
}

/// The directory holding every binary of the workspace (what a node's install provides).
pub fn bin_dir() -> PathBuf {
    let dir = Path::new(queen_bin()).parent().unwrap().to_owned();
    for bin in ["rbee-hive", "llm-worker-rbee"] {
        assert!(
            dir.join(bin).is_file(),
            "{bin} is missing: build the workspace"
        );
    }
    dir
}

pub struct Queen {
    pub child: Child,
    pub url: String,
    pub http: reqwest::Client,
    /// Sent by [`Queen::setup`] (and so [`Queen::add_node`]) when set; other calls say
    /// their key themselves.
    pub key: Option<String>,
    _data: tempfile::TempDir,
}

impl Queen {
    /// The queen's `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self.get("/metrics").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// A queen whose nodes use this build's binaries and `sshd`'s client configuration.
    pub async fn start(sshd: &Sshd) -> Self {
        Self::launch(Some(sshd), Some(bin_dir()), &[], &[]).await
    }

    /// A queen that looks for binaries in each node's install path, as in production.
    pub async fn start_with_local_binaries(sshd: &Sshd) -> Self {
        Self::launch(Some(sshd), None, &[], &[]).await
    }

    /// A queen for `localhost` only, with extra flags and environment.
    pub async fn start_local(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch(None, None, args, env).await
    }

    /// [`Queen::start`] with extra flags and environment.
    pub async fn start_with(sshd: &Sshd, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch(Some(sshd), Some(bin_dir()), args, env).await
    }

    async fn launch(
        sshd: Option<&Sshd>,
        binaries: Option<PathBuf>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(queen_bin());
        cmd.args(["daemon", "--port", "0"])
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env("XDG_DATA_HOME", data.path())
            .env_remove("HF_ENDPOINT")
            .env_remove("HF_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(sshd) = sshd {
            cmd.arg("--ssh-config").arg(&sshd.client_config);
        }
        if let Some(dir) = binaries {
            cmd.arg("--remote-binary-path").arg(dir);
        }
        let rbee_testkit::Started { child, url, .. } = rbee_testkit::start_daemon(&mut cmd).await;
        Self {
            child,
            url,
            http: reqwest::Client::new(),
            key: None,
            _data: data,
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    pub async fn nodes(&self) -> Vec<Value> {
        let (_, body) = call(self.get("/v2/registry/beehives/list")).await;
        body["beehives"].as_array().cloned().unwrap_or_default()
    }

    /// Registers a node reachable through `sshd`; see [`Queen::setup`].
    pub async fn add_node(
        &self,
        sshd: &Sshd,
        name: &str,
        hive_port: u16,
        install_path: &Path,
    ) -> (u16, Value) {
        let (status, body, _) = self
            .setup(
                "/v2/registry/beehives/add",
                json!({
                    "node_name": name,
                    "ssh_host": "127.0.0.1",
                    "ssh_port": sshd.port,
                    "ssh_user": Sshd::user(),
                    "install_path": install_path,
                    "hive_port": hive_port,
                }),
            )
            .await;
        (status, body)
    }

    /// Runs a setup stream (add, install) to its end: the HTTP status the outcome stands
    /// for (200, or the error code's), the node (or the error envelope), and the narration.
    pub async fn setup(&self, path: &str, body: Value) -> (u16, Value, Vec<String>) {
        let mut req = self.post(path).json(&body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if status != 200 {
            return (status, resp.json().await.unwrap_or(Value::Null), Vec::new());
        }
        let mut narration = Vec::new();
        for frame in read_sse(resp).await {
            match SetupEvent::from_frame(&frame)
                .expect("a setup event")
                .unwrap()
            {
                SetupEvent::Narration(n) => narration.push(n.human),
                SetupEvent::Done(done) => {
                    return (200, serde_json::to_value(done.node).unwrap(), narration);
                }
                SetupEvent::Error(e) => {
                    let status = e.error.code.http_status();
                    return (status, serde_json::to_value(e).unwrap(), narration);
                }
            }
        }
        panic!("the setup stream ended without an outcome: {narration:?}");
    }

    /// Runs a task for the default model to its end; its parsed events.
    pub async fn task(&self, node: &str, max_tokens: usize) -> Vec<TaskEvent> {
        self.task_for(
            node,
            &format!("file:{}", model_path().display()),
            max_tokens,
        )
        .await
    }

    /// Runs a task for `model` to its end; its parsed events.
    /// Starts a greedy task for `prompt` and returns its stream once the queen accepted it.
    pub async fn open_task(
        &self,
        node: &str,
        model: &str,
        prompt: &str,
        max_tokens: usize,
    ) -> reqwest::Response {
        let resp = self
            .post("/v2/tasks")
            .json(&json!({
                "node": node,
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp
    }

    pub async fn task_for(&self, node: &str, model: &str, max_tokens: usize) -> Vec<TaskEvent> {
        let prompt = "Write a short story about a cat.";
        read_sse(self.open_task(node, model, prompt, max_tokens).await)
            .await
            .iter()
            .filter_map(TaskEvent::from_frame)
            .map(|e| e.unwrap())
            .collect()
    }
}

impl Drop for Queen {
    /// Stops the queen the way an operator would, so the hives it started over SSH (which
    /// outlive it by design) are stopped too.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        if rbee_testkit::alive(pid) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while rbee_testkit::alive(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

pub fn text(events: &[TaskEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::Token(t) => Some(t.t.as_str()),
            _ => None,
        })
        .collect()
}

pub fn narration(events: &[TaskEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::Narration(n) => Some(n.human.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn error(events: &[TaskEvent]) -> Option<&rbee_api::ErrorEnvelope> {
    events.iter().find_map(|e| match e {
        TaskEvent::Error(env) => Some(env),
        _ => None,
    })
}

/// Runs `scripts/<script>` (a check with an official client package) with `args`, asserting
/// it exits 0 and prints `passed`.
pub async fn run_client_check(script: &str, args: &[&str], passed: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let out = tokio::process::Command::new(rbee_testkit::sdk_python())
        .arg(path)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(passed), "{stdout}");
}
