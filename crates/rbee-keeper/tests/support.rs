//! Running `rbee` (and, for persistent mode, `queen-rbee`) as a user would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub use rbee_testkit::{alive, call, descendants, free_port, model_path, signal, wait_gone};
use serde_json::Value;
use tokio::process::{Child, Command};

pub fn rbee_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rbee")
}

pub fn sibling(name: &str) -> PathBuf {
    let bin = Path::new(rbee_bin()).with_file_name(name);
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace",
        bin.display()
    );
    bin
}

/// A user's environment: its own HOME (config, data, caches) and queen port.
pub struct User {
    pub home: tempfile::TempDir,
    pub queen_url: String,
}

impl User {
    pub fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        Self {
            home,
            queen_url: format!("http://127.0.0.1:{}", free_port()),
        }
    }

    /// `rbee` with this user's environment, as a plain command (for a pseudo-terminal).
    pub fn rbee_std(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(rbee_bin());
        cmd.args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("RBEE_CONFIG")
            .env("RBEE_QUEEN_URL", &self.queen_url)
            .env("RBEE_MODEL_CACHE", model_path().parent().unwrap());
        cmd
    }

    pub fn rbee(&self, args: &[&str]) -> Command {
        let mut cmd = Command::from(self.rbee_std(args));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `rbee` to its end: exit code, stdout, stderr.
    pub async fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        self.run_with_stdin(args, None).await
    }

    /// Runs `rbee` to its end with `input` on its standard input (else none).
    pub async fn run_with_stdin(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> (Option<i32>, String, String) {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.rbee(args);
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap();
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).await.unwrap();
        }
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("rbee finishes")
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts a persistent queen for this user.
    pub async fn queen(&self) -> Queen {
        self.queen_with(&[]).await
    }

    /// Starts a persistent queen with extra flags.
    pub async fn queen_with(&self, extra: &[&str]) -> Queen {
        self.queen_env(extra, &[]).await
    }

    /// Starts a persistent queen with extra flags and environment (which its hives inherit).
    pub async fn queen_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Queen {
        let port = self.queen_url.rsplit(':').next().unwrap().to_owned();
        let rbee_testkit::Started { child, .. } = rbee_testkit::start_daemon(
            Command::new(sibling("queen-rbee"))
                .args(["daemon", "--port", &port])
                .args(extra)
                .envs(env.iter().copied())
                .env("HOME", self.home.path()),
        )
        .await;
        Queen {
            child,
            url: self.queen_url.clone(),
        }
    }
}

pub struct Queen {
    pub child: Child,
    pub url: String,
}

impl Queen {
    pub async fn workers(&self) -> Vec<Value> {
        let (_, body) =
            call(reqwest::Client::new().get(format!("{}/v2/workers/list", self.url))).await;
        body["workers"].as_array().cloned().unwrap_or_default()
    }

    pub async fn wait_workers(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let workers = self.workers().await;
            if check(&workers) {
                return workers;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached {what}: {workers:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads a running `rbee`'s stdout until some text has arrived.
pub async fn first_output(child: &mut Child) -> (tokio::process::ChildStdout, String) {
    use tokio::io::AsyncReadExt;
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(60), stdout.read(&mut buf))
        .await
        .expect("tokens arrive")
        .unwrap();
    (stdout, String::from_utf8_lossy(&buf[..n]).into_owned())
}
