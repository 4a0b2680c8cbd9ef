//! Helpers shared by the integration tests of every rbee crate (a dev-dependency only).
//!
//! - [`model_path`]: the default model fetched by `scripts/fetch-model.sh`.
//! - [`Log`]: a child's output captured line by line, with waiting for a line.
//! - [`call`], [`read_sse`]: a JSON answer with its status; an event stream read to `[DONE]`.
//! - [`alive`], [`wait_gone`], [`signal`], [`descendants`]: processes by PID.
//! - [`free_port`]: a loopback port for a daemon under test.
//! - [`gguf_split`]: a model split into shards as llama.cpp's `gguf-split` writes them.
//! - [`fake_hub`]: a local server speaking the Hugging Face Hub's URL protocol, with faults.
//! - [`Sshd`]: a real OpenSSH server on loopback with throwaway keys ([`throwaway_keys`]).
//! - [`stand_in_repo`]: a git repository shaped like rbee's, to install from over SSH.
//! - [`commands_without_an_example`]: what `--help` lacks an example for.
//! - [`partial_answer`]: what `rbee` says when an answer broke off.

#![allow(clippy::unwrap_used)]

pub mod fake_hub;
pub mod gguf_split;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rbee_api::sse::{SseDecoder, SseFrame};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;

/// How long helpers wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(60);

/// The cache `scripts/fetch-model.sh` and `scripts/fetch-gemma3.sh` fill.
fn model_cache() -> PathBuf {
    std::env::var_os("RBEE_MODEL_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("rbee/models"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/rbee/models")
        })
}

fn cached(var: &str, file: &str, script: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    let path = model_cache().join(file);
    assert!(
        path.is_file(),
        "test model {} is missing: run {script} first",
        path.display()
    );
    path
}

/// The default model (`RBEE_TEST_MODEL`, else the cache `scripts/fetch-model.sh` fills).
pub fn model_path() -> PathBuf {
    cached(
        "RBEE_TEST_MODEL",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "scripts/fetch-model.sh",
    )
}

/// Gemma 3 270M, Q4_K_M by llama.cpp (`RBEE_TEST_GEMMA`, else the cache
/// `scripts/fetch-gemma3.sh` fills).
pub fn gemma3_path() -> PathBuf {
    cached(
        "RBEE_TEST_GEMMA",
        "gemma-3-270m-q4_k_m.gguf",
        "scripts/fetch-gemma3.sh",
    )
}

/// A Python interpreter with llama.cpp's binding, the reference inference is checked against
/// (`RBEE_LLAMA_PYTHON`, as `scripts/test.sh` sets it from `scripts/llama-env.sh`).
pub fn llama_python() -> PathBuf {
    let python = std::env::var_os("RBEE_LLAMA_PYTHON").map(PathBuf::from);
    let python = python.unwrap_or_else(|| {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
        home.join(".cache/rbee/llama-venv/bin/python")
    });
    assert!(
        python.is_file(),
        "llama.cpp's Python binding is missing at {}: run scripts/llama-env.sh first",
        python.display()
    );
    python
}

/// A Python interpreter with the official `openai` and `ollama` packages (`RBEE_PYTHON`, as
/// `scripts/test.sh` sets it from `scripts/python-env.sh`).
pub fn sdk_python() -> PathBuf {
    let python = std::env::var_os("RBEE_PYTHON").map(PathBuf::from);
    let python = python.unwrap_or_else(|| {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
        home.join(".cache/rbee/venv/bin/python")
    });
    assert!(
        python.is_file(),
        "{} is missing: run scripts/python-env.sh (it installs the openai and ollama packages)",
        python.display()
    );
    python
}

/// The default model's bytes, read once per test binary.
pub fn model_bytes() -> Arc<Vec<u8>> {
    static BYTES: std::sync::OnceLock<Arc<Vec<u8>>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| Arc::new(std::fs::read(model_path()).unwrap()))
        .clone()
}

/// Output of a child process, captured line by line.
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
            tokio::time::timeout(WAIT, notified)
                .await
                .expect("stream closes");
        }
    }

    /// Waits for a line containing `needle`; `None` if the stream ended first.
    pub async fn wait_for(&self, needle: &str) -> Option<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
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

/// The URL a daemon announces in its ready line on stdout (`rbee_api::ready`), which the
/// test started with a piped stdout; `log` (its stderr) is shown if it never comes.
pub async fn ready_url(child: &mut tokio::process::Child, log: &Log) -> String {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("the daemon's stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .unwrap_or_else(|| panic!("no ready line; the daemon said:\n{}", log.text()));
    let ready: rbee_api::ready::ReadyLine =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a ready line ({e}): {line}"));
    // Keep reading, so nothing the daemon writes later meets a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    ready.ready.url
}

/// A daemon started by a test, listening.
pub struct Started {
    pub child: tokio::process::Child,
    /// Its stderr.
    pub log: Log,
    /// The URL of its ready line.
    pub url: String,
}

/// Starts `cmd` with no stdin, its output captured and its process killed on drop, and
/// waits for its ready line.
pub async fn start_daemon(cmd: &mut tokio::process::Command) -> Started {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.as_std().get_program()));
    let log = Log::capture(child.stderr.take().expect("stderr is piped"));
    let url = ready_url(&mut child, &log).await;
    Started { child, log, url }
}

/// Sends a request and returns its status and JSON body (`null` when the body is not JSON).
pub async fn call(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Reads an event-stream response until `[DONE]` (or the end of the body).
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

/// Whether a process is still running (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pid` is gone.
pub async fn wait_gone(pid: u32, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still running after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every process below `pid` (children, their children, …), read from `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((child, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let current = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, p)| *p == current)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// A free TCP port on loopback (bound and released; fine for tests run one at a time).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `sig` (`TERM`, `KILL`, `STOP`, …) to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// A real OpenSSH server on loopback with throwaway keys, and a client configuration
/// (`ssh -F`) that logs into it as the current user.
pub struct Sshd {
    child: tokio::process::Child,
    pub port: u16,
    pub dir: PathBuf,
    /// Client configuration to pass with `ssh -F` (or to queen-rbee's `--ssh-config`).
    pub client_config: PathBuf,
    _tmp: TempDir,
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(cmd: &str) {
    let status = std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap();
    assert!(status.success(), "`{cmd}` failed");
}

/// Writes `host_key`, `client_key` (both 0600) and `authorized_keys` (the client's public
/// key) into `dir`.
pub fn throwaway_keys(dir: &std::path::Path) {
    let d = dir.display();
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {d}/host_key && ssh-keygen -q -t ed25519 -N '' -f {d}/client_key \
         && cp {d}/client_key.pub {d}/authorized_keys && chmod 600 {d}/host_key {d}/client_key"
    ));
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "rbee")
        .env("GIT_AUTHOR_EMAIL", "rbee@localhost")
        .env("GIT_COMMITTER_NAME", "rbee")
        .env("GIT_COMMITTER_EMAIL", "rbee@localhost")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A git repository at `root` whose `branch` holds a workspace with `rbee-hive` (printing a
/// CPU-only detection) and `llm-worker-rbee`: installing it over SSH proves clone-and-build
/// without rebuilding Candle.
pub fn stand_in_repo(root: &std::path::Path, branch: &str) {
    let write = |path: &str, text: &str| {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"hive\", \"worker\"]\n",
    );
    for (dir, name) in [("hive", "rbee-hive"), ("worker", "llm-worker-rbee")] {
        write(
            &format!("{dir}/Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[features]\ncuda = []\nmetal = []\n"
            ),
        );
    }
    write(
        "hive/src/main.rs",
        "fn main() { println!(\"{{\\\"backends\\\":[\\\"cpu\\\"],\\\"devices\\\":{{\\\"cpu\\\":1}}}}\"); }\n",
    );
    // Says which GPU backend it was built with, as the real worker's errors do.
    write(
        "worker/src/main.rs",
        "fn main() { if cfg!(feature = \"cuda\") { println!(\"cuda\"); } else { println!(\"cpu\"); } }\n",
    );
    write(
        "Cargo.lock",
        "version = 4\n\n[[package]]\nname = \"llm-worker-rbee\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"rbee-hive\"\nversion = \"0.1.0\"\n",
    );
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "stand-in"]);
    git(root, &["checkout", "-q", "-b", branch]);
}

/// From `rbee`'s stderr after an answer broke off: the token count reached and the text saved
/// in the file it names.
pub fn partial_answer(stderr: &str) -> (usize, String) {
    let line = stderr
        .lines()
        .find(|l| l.contains("partial answer ("))
        .unwrap_or_else(|| panic!("no partial answer in:\n{stderr}"));
    let tokens = line
        .split("partial answer (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no token count in {line}"));
    let path = line
        .split("saved in ")
        .nth(1)
        .unwrap_or_else(|| panic!("no file in {line}"))
        .trim();
    (tokens, std::fs::read_to_string(path).unwrap())
}

impl Sshd {
    /// Starts sshd; `env` is set in every session it opens (`SetEnv`).
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let sshd = std::path::Path::new("/usr/sbin/sshd");
        assert!(
            sshd.is_file(),
            "/usr/sbin/sshd is missing: install openssh-server (apt-get install openssh-server)"
        );
        let dir =
            std::env::temp_dir().join(format!("rbee-sshd-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = TempDir(dir.clone());
        std::fs::create_dir_all("/run/sshd").unwrap();
        throwaway_keys(&dir);
        let d = dir.display();
        let port = free_port();
        let set_env: String = env.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PidFile none\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n{}",
                if set_env.is_empty() { String::new() } else { format!("SetEnv{set_env}\n") }
            ),
        )
        .unwrap();
        let client_config = dir.join("ssh_config");
        std::fs::write(
            &client_config,
            format!(
                "Host *\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  LogLevel ERROR\n"
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "sshd did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            child,
            port,
            dir,
            client_config,
            _tmp: tmp,
        }
    }

    /// The user tests log in as (the one running them).
    pub fn user() -> String {
        std::env::var("USER")
            .ok()
            .or_else(|| {
                std::process::Command::new("id")
                    .arg("-un")
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            })
            .unwrap_or_else(|| "root".into())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// `len` bytes that start with a valid GGUF header of a tiny llama model (one F32 tensor)
/// and continue with `fill`: enough for the hive's header check before a download, for tests
/// about the transfer itself.
pub fn gguf_blob(len: usize, fill: u8) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    let kv: [(&str, u32); 6] = [
        ("llama.vocab_size", 32),
        ("llama.embedding_length", 32),
        ("llama.attention.head_count", 2),
        ("llama.block_count", 1),
        ("llama.context_length", 64),
        ("general.alignment", 32),
    ];
    out.extend(1u64.to_le_bytes()); // tensors
    out.extend((kv.len() as u64 + 4).to_le_bytes());
    string(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes()); // string
    string(&mut out, "llama");
    for (key, value) in kv {
        string(&mut out, key);
        out.extend(4u32.to_le_bytes()); // u32
        out.extend(value.to_le_bytes());
    }
    // A two-token SentencePiece vocabulary: the worker checks the tokenizer with the header.
    string(&mut out, "tokenizer.ggml.model");
    out.extend(8u32.to_le_bytes());
    string(&mut out, "llama");
    string(&mut out, "tokenizer.ggml.tokens");
    out.extend(9u32.to_le_bytes()); // array
    out.extend(8u32.to_le_bytes()); // of strings
    out.extend(2u64.to_le_bytes());
    string(&mut out, "<unk>");
    string(&mut out, "a");
    string(&mut out, "tokenizer.ggml.scores");
    out.extend(9u32.to_le_bytes()); // array
    out.extend(6u32.to_le_bytes()); // of f32
    out.extend(2u64.to_le_bytes());
    out.extend([0f32.to_le_bytes(), 0f32.to_le_bytes()].concat());
    string(&mut out, "token_embd.weight");
    out.extend(1u32.to_le_bytes()); // one dimension
    out.extend(32u64.to_le_bytes());
    out.extend(0u32.to_le_bytes()); // F32
    out.extend(0u64.to_le_bytes()); // offset
    assert!(out.len() < len, "a blob holds at least its header");
    out.resize(len, fill);
    out
}

/// Declares the test that every command of a clap parser shows an example in its `--help`
/// ([`commands_without_an_example`]); each binary's argument module calls it once, under
/// `#[cfg(test)]` (this crate is a dev-dependency).
#[macro_export]
macro_rules! every_command_has_help_with_an_example {
    ($cli:ty) => {
        #[test]
        fn every_command_has_help_with_an_example() {
            let command = <$cli as clap::CommandFactory>::command();
            let missing = $crate::commands_without_an_example(command);
            assert!(missing.is_empty(), "no example in the help of: {missing:?}");
        }
    };
}

/// The commands of `command`'s tree (itself included) whose long help shows no example;
/// each is named by its path (`rbee models pull`).
pub fn commands_without_an_example(command: clap::Command) -> Vec<String> {
    fn walk(mut command: clap::Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", command.get_name()).trim().to_owned();
        if !command.render_long_help().to_string().contains("Example") {
            missing.push(path.clone());
        }
        for sub in command.get_subcommands().cloned().collect::<Vec<_>>() {
            if sub.get_name() != "help" {
                walk(sub, &path, missing);
            }
        }
    }
    let mut missing = Vec::new();
    walk(command, "", &mut missing);
    missing
}
