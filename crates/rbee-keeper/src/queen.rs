//! Reaching queen-rbee: connect to a running one (persistent mode), or start one for this
//! command and stop it afterwards (ephemeral mode), which stops everything it started.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rbee_api::ErrorCode;
use rbee_api::queen::QueenHealth;
use rbee_http::daemon::NotReady;
use tokio::process::{Child, ChildStdin, Command};

use crate::config::Config;
use crate::error::{KeeperError, Result, fail};

/// How long a queen this command starts may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Queen {
    pub url: String,
    pub http: reqwest::Client,
    api_key: Option<String>,
    config_path: Option<PathBuf>,
    /// Set when this command started the queen (ephemeral mode).
    owned: Option<Child>,
    /// The queen's standard input, held open while this command lives: when `rbee` ends in
    /// any way (even SIGKILL) the pipe closes and the queen stops with everything it started.
    _lifeline: Option<ChildStdin>,
}

async fn healthy(http: &reqwest::Client, url: &str) -> bool {
    let Ok(resp) = http
        .get(format!("{url}{}", rbee_api::routes::queen::HEALTH))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return false;
    };
    resp.json::<QueenHealth>()
        .await
        .is_ok_and(|h| h.status == "ok")
}

impl Queen {
    /// Connects to the configured queen, starting one if none answers.
    pub async fn connect(config: &Config, url: String) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| fail(format!("cannot create an HTTP client: {e}")))?;
        let mut queen = Self {
            url: url.clone(),
            http,
            api_key: config.api_key.clone(),
            config_path: config.path.clone(),
            owned: None,
            _lifeline: None,
        };
        if healthy(&queen.http, &url).await {
            return Ok(queen);
        }
        let port = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
            .and_then(|u| u.port_or_known_default())
            .ok_or_else(|| {
                fail(format!(
                    "queen-rbee does not answer at {url}; start it there with `queen-rbee daemon`"
                ))
            })?;
        let bin = rbee_http::daemon::sibling_or_path("queen-rbee");
        let mut cmd = Command::new(&bin);
        // Its own process group: Ctrl+C in the terminal reaches only rbee, which cancels the
        // task and then stops the queen in order.
        cmd.args(["daemon", "--watch-stdin", "--port", &port.to_string()])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(ssh) = &config.ssh_config {
            cmd.env("RBEE_QUEEN_SSH_CONFIG", ssh);
        }
        if let Some(path) = &config.remote.binary_path {
            cmd.env("RBEE_QUEEN_REMOTE_BINARY_PATH", path);
        }
        if let Some(key) = &config.api_key {
            cmd.env("RBEE_QUEEN_API_KEY", key);
        }
        // The queen (and its local hive) read their tables of the same file.
        if let Some(file) = &config.path {
            cmd.env("RBEE_CONFIG", file);
        }
        let mut child = cmd.spawn().map_err(|e| {
            fail(format!(
                "cannot start {}: {e}; build it (cargo build --release) or run `rbee install`",
                bin.display()
            ))
        })?;
        let stdout = child.stdout.take();
        queen._lifeline = child.stdin.take();
        queen.owned = Some(child);
        let stdout = stdout.ok_or_else(|| fail("queen-rbee's output is not a pipe"))?;
        match rbee_http::daemon::await_ready(stdout, START_TIMEOUT).await {
            Ok(_) => Ok(queen),
            Err(NotReady::Timeout(limit)) => Err(fail(format!(
                "queen-rbee did not listen at {url} within {} s",
                limit.as_secs()
            ))),
            Err(e) => Err(fail(format!(
                "queen-rbee did not start ({e}); is port {port} taken? run `queen-rbee daemon --port {port}` to see why"
            ))),
        }
    }

    pub fn is_ephemeral(&self) -> bool {
        self.owned.is_some()
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.url));
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// Sends a request; the response if successful, else the queen's error as a failure.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .map_err(|e| fail(format!("queen-rbee at {} did not answer: {e}", self.url)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let envelope = rbee_http::client::envelope_of(resp).await;
        if envelope.error.code == ErrorCode::InvalidApiKey {
            return Err(KeeperError::Auth(self.config_path.clone()));
        }
        Err(fail(envelope.error.message))
    }

    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T> {
        self.send(req)
            .await?
            .json()
            .await
            .map_err(|e| fail(format!("unreadable answer from queen-rbee: {e}")))
    }

    /// Ends the command: an ephemeral queen is stopped with SIGTERM and waited for, so its
    /// hives and workers are gone too.
    pub async fn close(mut self) {
        let Some(mut child) = self.owned.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}
