//! The state of one scenario: its cluster, its Hub double, the user's home on the control
//! node, the queen the user runs (persistent mode), and what the last command did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rbee_acceptance::cluster::{CONTROL_IP, Cluster};
use rbee_acceptance::processes::{self, Process};
use rbee_testkit::fake_hub::FakeHub;
use rbee_testkit::{Log, free_port};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The compute nodes of every scenario, addressed 10.99.0.2 and 10.99.0.3.
pub const NODES: [&str; 2] = ["workstation", "mac"];
/// The Hub repository the double serves: SmolLM2 in Q4_1 (as shipped) and Q8_0.
pub const REPO: &str = "test/SmolLM2";
/// How long any command or wait may take before the scenario fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(120);

static MODELS: OnceLock<Vec<(String, Arc<Vec<u8>>)>> = OnceLock::new();

/// Root, sshd, and a built workspace: without them nothing here can run.
pub fn preconditions() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        return Err("it needs root (network namespaces, sshd on port 22)".into());
    }
    if !Path::new("/usr/sbin/sshd").is_file() {
        return Err("/usr/sbin/sshd is missing (apt-get install openssh-server)".into());
    }
    for bin in ["rbee", "queen-rbee", "rbee-hive", "llm-worker-rbee"] {
        if !bin_dir().join(bin).is_file() {
            return Err(format!(
                "{} is missing: build the workspace first (cargo build --workspace --bins)",
                bin_dir().join(bin).display()
            ));
        }
    }
    Ok(())
}

/// The Q4_1 model and a Q8_0 re-quantization of it (made once, kept beside the model).
pub async fn prepare_models() {
    let q4 = rbee_testkit::model_path();
    let q8 = q4.with_file_name("SmolLM2-135M-Instruct.Q8_0.gguf");
    if !q8.is_file() {
        eprintln!("making {} (once)", q8.display());
        let (src, dst) = (q4.clone(), q8.clone());
        tokio::task::spawn_blocking(move || {
            let partial = dst.with_extension("partial");
            llm_worker_rbee::requantize::requantize(
                &src,
                &partial,
                candle_core::quantized::GgmlDType::Q8_0,
            )
            .unwrap();
            std::fs::rename(partial, dst).unwrap();
        })
        .await
        .unwrap();
    }
    let read = |p: &Path| Arc::new(std::fs::read(p).unwrap());
    let _ = MODELS.set(vec![
        ("smollm2-135m-instruct-q4_1.gguf".into(), read(&q4)),
        ("smollm2-135m-instruct-q8_0.gguf".into(), read(&q8)),
    ]);
}

/// Where the workspace's binaries are (this test runs from `target/<profile>/deps`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

/// A command that ran to its end.
#[derive(Debug, Clone)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// A command started in the background.
pub struct Running {
    pub child: Child,
    pub started: Instant,
    pub stdout: String,
    pub stderr: Log,
}

/// A daemon the user started (the persistent queen).
pub struct Daemon {
    pub child: Child,
    pub log: Log,
}

#[derive(cucumber::World)]
#[world(init = Self::new)]
pub struct Rbee {
    pub cluster: Cluster,
    pub hub: FakeHub,
    /// The user's HOME on the control node (config in `.config/rbee/config.toml`).
    pub home: PathBuf,
    pub queen_url: String,
    pub queen: Option<Daemon>,
    pub last: Option<Finished>,
    pub running: Option<Running>,
    /// Processes frozen with SIGSTOP, thawed at the end so they can be stopped.
    pub frozen: Vec<u32>,
    /// Processes noted by a step, by what they are ("hive on workstation", …).
    pub noted: HashMap<String, u32>,
    /// API key written into the user's configuration.
    pub api_key: Option<String>,
    /// Stand-ins started on a node (an old hive), stopped with the scenario.
    pub stand_ins: Vec<Child>,
    pub link_cut_at: Option<Instant>,
    /// When the last command ended.
    pub ended_at: Option<Instant>,
    /// The queen's exit code after SIGTERM.
    pub queen_exit: Option<Option<i32>>,
    /// The last JSON answer of the queen's HTTP API.
    pub answer: Option<Value>,
    /// A `rbee chat` in a pseudo-terminal, and the text of its last answer.
    pub chat: Option<expectrl::session::OsSession>,
    pub chat_answer: String,
}

impl std::fmt::Debug for Rbee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rbee")
            .field("queen_url", &self.queen_url)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Rbee {
    async fn new() -> Self {
        // The hub listens on the bridge, so the bridge comes first, then the hub, then the
        // nodes' sshd that tell hives where the hub is.
        let mut cluster = Cluster::build(&NODES);
        let hub = FakeHub::start_on(CONTROL_IP).await;
        for (name, data) in MODELS.get().expect("models prepared") {
            hub.add_file(REPO, name, data.clone());
        }
        cluster.start_sshd(&[("HF_ENDPOINT", &hub.url)]);
        let home = cluster.dir.join("control");
        std::fs::create_dir_all(home.join("tmp")).unwrap();
        let world = Self {
            cluster,
            hub,
            home,
            queen_url: format!("http://127.0.0.1:{}", free_port()),
            queen: None,
            last: None,
            running: None,
            frozen: Vec::new(),
            noted: HashMap::new(),
            api_key: None,
            stand_ins: Vec::new(),
            link_cut_at: None,
            ended_at: None,
            queen_exit: None,
            answer: None,
            chat: None,
            chat_answer: String::new(),
        };
        world.write_config();
        world
    }

    /// `~/.config/rbee/config.toml` of the user on the control node.
    pub fn write_config(&self) {
        let dir = self.home.join(".config/rbee");
        std::fs::create_dir_all(&dir).unwrap();
        let key = self
            .api_key
            .as_ref()
            .map(|k| format!("api_key = \"{k}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "queen_url = \"{}\"\nssh_config = \"{}\"\n{key}\n[remote]\nbinary_path = \"{}\"\n",
                self.queen_url,
                self.cluster.ssh_config.display(),
                bin_dir().display()
            ),
        )
        .unwrap();
    }

    /// A `rbee …` (or other workspace binary) command line as the user runs it, as a plain
    /// command (for a pseudo-terminal).
    pub fn std_command(&self, line: &str) -> std::process::Command {
        let words = rbee_acceptance::command_line(line);
        let (program, args) = words.split_first().expect("a command");
        let mut cmd = std::process::Command::new(bin_dir().join(program));
        cmd.args(args)
            .env("HOME", &self.home)
            .env("TMPDIR", self.home.join("tmp"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("RBEE_CONFIG")
            .env_remove("RBEE_QUEEN_URL")
            .env_remove("HF_ENDPOINT")
            .env(processes::TAG, processes::tag_value());
        cmd
    }

    /// A `rbee …` (or other workspace binary) command line, run as the user.
    pub fn command(&self, line: &str) -> Command {
        let mut cmd = Command::from(self.std_command(line));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs a command line to its end.
    pub async fn run(&mut self, line: &str) -> Finished {
        let started = Instant::now();
        let out = tokio::time::timeout(PATIENCE, self.command(line).output())
            .await
            .unwrap_or_else(|_| panic!("`{line}` did not finish within {PATIENCE:?}"))
            .unwrap();
        let finished = Finished {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: started.elapsed(),
        };
        self.last = Some(finished.clone());
        self.ended_at = Some(Instant::now());
        finished
    }

    /// Size of a file the Hub double serves.
    pub fn model_len(&self, name: &str) -> u64 {
        MODELS
            .get()
            .and_then(|m| m.iter().find(|(n, _)| n == name))
            .map(|(_, data)| data.len() as u64)
            .unwrap_or_else(|| panic!("the hub serves no {name}"))
    }

    /// Starts a command line in the background.
    pub fn start(&mut self, line: &str) {
        let mut child = self.command(line).spawn().unwrap();
        let stderr = Log::capture(child.stderr.take().unwrap());
        self.running = Some(Running {
            child,
            started: Instant::now(),
            stdout: String::new(),
            stderr,
        });
    }

    pub fn running(&mut self) -> &mut Running {
        self.running
            .as_mut()
            .expect("a command started in the background")
    }

    /// Waits for the background command to end and makes it the last command.
    pub async fn finish_running(&mut self) -> Finished {
        let mut running = self.running.take().expect("a background command");
        let mut rest = String::new();
        if let Some(mut out) = running.child.stdout.take() {
            tokio::time::timeout(PATIENCE, out.read_to_string(&mut rest))
                .await
                .expect("the command closes its output")
                .unwrap();
        }
        let status = tokio::time::timeout(PATIENCE, running.child.wait())
            .await
            .expect("the command ends")
            .unwrap();
        self.ended_at = Some(Instant::now());
        running.stderr.closed().await;
        let finished = Finished {
            code: status.code(),
            stdout: running.stdout + &rest,
            stderr: running.stderr.text(),
            took: running.started.elapsed(),
        };
        self.last = Some(finished.clone());
        finished
    }

    pub fn last(&self) -> &Finished {
        self.last.as_ref().expect("a command has run")
    }

    /// Starts the user's persistent queen.
    pub async fn start_queen(&mut self, extra: &str) {
        let port = self.queen_url.rsplit(':').next().unwrap().to_owned();
        let mut cmd = self.command(&format!("queen-rbee daemon --port {port} {extra}"));
        cmd.arg("--data-dir")
            .arg(self.home.join("queen"))
            .arg("--ssh-config")
            .arg(&self.cluster.ssh_config)
            .arg("--remote-binary-path")
            .arg(bin_dir())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Log::capture(child.stderr.take().unwrap());
        rbee_testkit::ready_url(&mut child, &log).await;
        self.queen = Some(Daemon { child, log });
    }

    /// SIGTERM to the queen, then waits for it; its exit code.
    pub async fn stop_queen(&mut self) -> Option<i32> {
        let mut queen = self.queen.take()?;
        if let Some(pid) = queen.child.id() {
            rbee_testkit::signal(pid, "TERM");
        }
        match tokio::time::timeout(Duration::from_secs(60), queen.child.wait()).await {
            Ok(status) => status.ok().and_then(|s| s.code()),
            Err(_) => {
                let _ = queen.child.kill().await;
                panic!("queen-rbee did not exit within 60 s of SIGTERM")
            }
        }
    }

    /// A GET on the queen's API, checking the error envelope of any failure.
    pub async fn queen_get(&self, path: &str) -> (u16, Value) {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.queen_url));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        checked(req).await
    }

    /// Workers as the queen reports them.
    pub async fn workers(&self) -> Vec<Value> {
        let (status, body) = self.queen_get("/v2/workers/list").await;
        assert_eq!(status, 200, "{body}");
        body["workers"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `check` until it holds, failing the scenario after `within`.
    pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + within;
        loop {
            match check().await {
                Ok(v) => return v,
                Err(state) if Instant::now() >= deadline => {
                    panic!("{what}: not so after {within:?} ({state})")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The one process `program` on `node`, if any.
    pub fn process_on(&self, node: &str, program: &str) -> Vec<Process> {
        self.cluster
            .host(node)
            .rbee_processes()
            .into_iter()
            .filter(|p| p.program == program)
            .collect()
    }

    /// After every scenario: stop what the user started the way an operator would, then
    /// prove that no rbee process is left on any node or on the control node.
    pub async fn tear_down(&mut self, finished: &cucumber::event::ScenarioFinished) {
        for pid in self.frozen.drain(..) {
            // The process may be gone already (a hive kills a frozen worker).
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        for host in &self.cluster.hosts {
            host.set_link(true);
        }
        if let Some(mut chat) = self.chat.take() {
            let _ = chat.get_process_mut().exit(true);
        }
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill().await;
        }
        for mut stand_in in self.stand_ins.drain(..) {
            let _ = stand_in.kill().await;
        }
        let queen_log = self.queen.as_ref().map(|q| q.log.clone());
        self.stop_queen().await;
        let failed = matches!(
            finished,
            cucumber::event::ScenarioFinished::StepFailed(..)
                | cucumber::event::ScenarioFinished::BeforeHookFailed(_)
        );
        if failed {
            if let Some(log) = queen_log {
                eprintln!("--- queen-rbee log ---\n{}", log.text());
            }
            for host in &self.cluster.hosts {
                for log in std::fs::read_dir(host.data_dir())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if log.file_name().to_string_lossy().ends_with(".log") {
                        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(30).collect();
                        eprintln!(
                            "--- {} on {} (last lines) ---\n{}",
                            log.file_name().to_string_lossy(),
                            host.name,
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        );
                    }
                }
            }
        }
        let left = Self::eventually("every rbee process gone", Duration::from_secs(20), || {
            let cluster = &self.cluster;
            async move {
                let mut left: Vec<String> = cluster
                    .rbee_processes()
                    .into_iter()
                    .map(|(node, p)| format!("{p} on {node}"))
                    .collect();
                left.extend(
                    processes::rbee_only(processes::tagged())
                        .into_iter()
                        .map(|p| format!("{p} on the control node")),
                );
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(left.join(", "))
                }
            }
        });
        if !failed {
            left.await;
        }
    }
}

/// Sends a request; a failing answer must be rbee's error envelope.
pub async fn checked(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("the daemon answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 {
        assert_envelope(status, &body, &text);
    }
    (status, body)
}

/// `{"error": {"code": "SOME_CODE", "message": "…", "details"?: {…}}}`, nothing else.
pub fn assert_envelope(status: u16, body: &Value, text: &str) {
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or_default();
    assert!(
        body.as_object().is_some_and(|o| o.len() == 1)
            && !code.is_empty()
            && code.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            && error["message"].as_str().is_some_and(|m| !m.is_empty())
            && (error.get("details").is_none() || error["details"].is_object()),
        "HTTP {status} without the error envelope: {text}"
    );
}
