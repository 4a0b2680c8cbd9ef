//! Making sure a node's hive runs, and stopping the hives this queen started.
//!
//! `localhost` gets a hive as a child process of the queen, on a free loopback port, with a
//! key made for this run. Registered nodes get theirs over SSH, detached so it outlives the
//! SSH session, with the node's key from the registry. Either way the hive says it listens
//! with its ready line ([`rbee_api::ready`]), and the queen then checks the hive's health
//! (three attempts, 0/200/400 ms apart) and its version.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbee_api::hive::Detected;
use rbee_api::queen::{HiveStopped, NodeConfig, NodeStatus};
use rbee_api::ready::ReadyLine;
use rbee_api::{NodeName, now_unix};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, Command};

use crate::clients::{HiveClient, http_client};
use crate::error::QueenError;
use crate::narration::Narrator;
use crate::registry::{BeehiveRegistry, NodeRecord};
use crate::ssh::{Ssh, SshError, quote};

/// Delays before each health attempt.
const RETRY_DELAYS_MS: [u64; 3] = [0, 200, 400];
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a hive may take to listen once started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct HiveSettings {
    pub hive_bin: PathBuf,
    pub local_hive_args: Vec<String>,
    /// The configuration file the queen was given, whose `[hive]` table the local hive reads.
    pub config_file: Option<PathBuf>,
    /// Where rbee's binaries are on every node, instead of `<install_path>/target/release`.
    pub remote_binary_path: Option<String>,
}

enum Started {
    /// A child hive; it watches its stdin, so it stops if this queen dies.
    Local {
        child: Child,
        _lifeline: Option<tokio::process::ChildStdin>,
    },
    Remote {
        node: NodeConfig,
        pid: u32,
    },
}

/// Why a hive this queen started may still run after being stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("cannot kill it")]
    Kill(#[source] std::io::Error),
    #[error("cannot confirm over SSH that it stopped")]
    Unconfirmed(#[source] SshError),
}

pub struct Hives {
    settings: HiveSettings,
    ssh: Ssh,
    registry: Arc<dyn BeehiveRegistry>,
    http: reqwest::Client,
    local_key: String,
    /// Hives this queen started, by node, with the client to reach them.
    started: tokio::sync::Mutex<HashMap<NodeName, (HiveClient, Started)>>,
    /// Serialises starting per node so two tasks never start two hives.
    starting: Mutex<HashMap<NodeName, Arc<tokio::sync::Mutex<()>>>>,
    /// Why the local hive last failed to start or answer (a registered node's is in the
    /// registry).
    local_error: Mutex<Option<String>>,
}

/// Passes the local hive's output lines to the queen's log (`rbee logs` has them too).
async fn forward_to_log<R: tokio::io::AsyncBufRead + Unpin>(mut lines: Lines<R>) {
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "rbee_hive::localhost", "{line}");
    }
}

/// Same major and minor version: the wire protocol is the same.
pub fn compatible(a: &str, b: &str) -> bool {
    let prefix = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    prefix(a) == prefix(b)
}

impl Hives {
    pub fn new(
        settings: HiveSettings,
        ssh: Ssh,
        registry: Arc<dyn BeehiveRegistry>,
    ) -> reqwest::Result<Self> {
        Ok(Self {
            settings,
            ssh,
            registry,
            http: http_client()?,
            local_key: rbee_http::auth::new_key(),
            started: tokio::sync::Mutex::new(HashMap::new()),
            starting: Mutex::new(HashMap::new()),
            local_error: Mutex::new(None),
        })
    }

    /// The queen's HTTP client (one connection pool for hives and workers).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    pub fn ssh(&self) -> &Ssh {
        &self.ssh
    }

    /// The client for `node`'s hive, starting the hive first if it does not answer.
    pub async fn ensure(
        &self,
        node: &NodeName,
        narrator: &Narrator,
    ) -> Result<HiveClient, QueenError> {
        let lock = self.node_lock(node);
        let _one_at_a_time = lock.lock().await;
        if node.is_localhost() {
            let result = self.ensure_local(narrator).await;
            *self
                .local_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                result.as_ref().err().map(ToString::to_string);
            return result;
        }
        let record = self
            .registry
            .get(node)?
            .ok_or_else(|| QueenError::NodeNotFound(node.clone()))?;
        let result = self.ensure_remote(&record, narrator).await;
        self.record_contact(&record, &result);
        result
    }

    /// Held while a node's hive is started or stopped: one at a time per node.
    fn node_lock(&self, node: &NodeName) -> Arc<tokio::sync::Mutex<()>> {
        let mut starting = self
            .starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        starting.entry(node.clone()).or_default().clone()
    }

    fn record_contact(&self, record: &NodeRecord, result: &Result<HiveClient, QueenError>) {
        let mut updated = record.clone();
        match result {
            Ok(_) => {
                updated.state.status = NodeStatus::Reachable;
                updated.state.last_connected_unix = Some(now_unix());
                updated.state.last_error = None;
            }
            Err(e) => {
                updated.state.status = NodeStatus::Unreachable;
                updated.state.last_error = Some(e.to_string());
            }
        }
        if let Err(e) = self.registry.upsert(&updated) {
            tracing::warn!("cannot record the contact with {}: {e}", record.name());
        }
    }

    /// Why the last attempt to reach or start the queen's own hive failed, if it did.
    pub fn local_error(&self) -> Option<String> {
        (self.local_error.lock())
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records that a registered node stopped answering in the middle of a task.
    pub fn mark_unreachable(&self, node: &NodeName, reason: &str) {
        if let Ok(Some(mut record)) = self.registry.get(node) {
            record.state.status = NodeStatus::Unreachable;
            record.state.last_error = Some(reason.to_owned());
            if let Err(e) = self.registry.upsert(&record) {
                tracing::warn!("cannot record that {node} is unreachable: {e}");
            }
        }
    }

    /// The client for a node's hive if this queen knows where it is, without starting it.
    pub async fn client(&self, node: &NodeName) -> Result<HiveClient, QueenError> {
        if let Some((client, _)) = self.started.lock().await.get(node) {
            return Ok(client.clone());
        }
        if node.is_localhost() {
            return Err(QueenError::Remote(rbee_api::ErrorEnvelope::new(
                rbee_api::ErrorCode::ConnectionTimeout,
                "no rbee-hive runs on localhost yet; it starts with the first `rbee infer`",
            )));
        }
        let record = self
            .registry
            .get(node)?
            .ok_or_else(|| QueenError::NodeNotFound(node.clone()))?;
        Ok(self.remote_client(&record))
    }

    fn remote_client(&self, record: &NodeRecord) -> HiveClient {
        let c = &record.config;
        HiveClient::new(
            &c.node_name,
            &format!("http://{}:{}", c.ssh_host, c.hive_port),
            &record.hive_api_key,
            self.http.clone(),
        )
    }

    async fn ensure_local(&self, narrator: &Narrator) -> Result<HiveClient, QueenError> {
        let localhost = NodeName::localhost();
        let existing = {
            let mut started = self.started.lock().await;
            match started.get_mut(&localhost) {
                Some((client, Started::Local { child, .. })) => match child.try_wait() {
                    Ok(None) => Some(client.clone()),
                    _ => {
                        started.remove(&localhost);
                        None
                    }
                },
                _ => None,
            }
        };
        let client = match existing {
            Some(client) => client,
            None => {
                narrator
                    .say("hive_start", "Starting rbee-hive on localhost")
                    .await;
                let client = self.start_local().await?;
                narrator
                    .say(
                        "hive_started",
                        format!("rbee-hive on localhost listens at {}", client.url),
                    )
                    .await;
                client
            }
        };
        self.check(&client, narrator).await?;
        Ok(client)
    }

    async fn start_local(&self) -> Result<HiveClient, QueenError> {
        let bin = &self.settings.hive_bin;
        let failed = |reason: String| QueenError::HiveStart {
            node: NodeName::localhost(),
            reason,
        };
        let mut child = Command::new(bin)
            .args([
                "daemon",
                "--port",
                "0",
                "--host",
                "127.0.0.1",
                "--worker-host",
                "127.0.0.1",
                "--watch-stdin",
            ])
            .args(&self.settings.local_hive_args)
            .env("RBEE_HIVE_API_KEY", &self.local_key)
            .envs(self.settings.config_file.iter().map(|f| ("RBEE_CONFIG", f)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", bin.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("its standard output is not a pipe".into()))?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_to_log(BufReader::new(stderr).lines()));
        }
        let (ready, rest) = rbee_http::daemon::await_ready(stdout, START_TIMEOUT)
            .await
            .map_err(|e| failed(rbee_http::error::with_causes(&e)))?;
        // The hive writes nothing more to stdout, but a pipe nobody reads could block it.
        tokio::spawn(forward_to_log(rest));
        let localhost = NodeName::localhost();
        let client = HiveClient::new(&localhost, &ready.url, &self.local_key, self.http.clone());
        let lifeline = child.stdin.take();
        self.started.lock().await.insert(
            localhost,
            (
                client.clone(),
                Started::Local {
                    child,
                    _lifeline: lifeline,
                },
            ),
        );
        Ok(client)
    }

    async fn ensure_remote(
        &self,
        record: &NodeRecord,
        narrator: &Narrator,
    ) -> Result<HiveClient, QueenError> {
        let node = record.name();
        let client = self.remote_client(record);
        let ours = self.started.lock().await.contains_key(node);
        if !ours && client.health(HEALTH_TIMEOUT).await.is_err() {
            narrator
                .say(
                    "hive_start",
                    format!(
                        "Starting rbee-hive on {node} over SSH ({})",
                        record.config.ssh_host
                    ),
                )
                .await;
            let pid = self
                .start_remote(record)
                .await
                .map_err(|e| QueenError::SshFailed {
                    node: node.clone(),
                    reason: rbee_http::error::with_causes(&e),
                })?;
            narrator
                .say(
                    "hive_started",
                    format!("rbee-hive on {node} started (pid {pid})"),
                )
                .await;
            self.started.lock().await.insert(
                node.clone(),
                (
                    client.clone(),
                    Started::Remote {
                        node: record.config.clone(),
                        pid,
                    },
                ),
            );
        }
        self.check(&client, narrator).await?;
        Ok(client)
    }

    /// The directory of rbee's binaries on `node`.
    pub fn remote_bin_dir(&self, node: &NodeConfig) -> String {
        self.settings.remote_binary_path.clone().unwrap_or_else(|| {
            format!("{}/target/release", node.install_path.trim_end_matches('/'))
        })
    }

    /// Backends and devices of a node with rbee installed; `None` when it is not installed
    /// yet (or does not answer).
    pub async fn detect(&self, node: &NodeConfig) -> Option<Detected> {
        let bin = format!("{}/rbee-hive", self.remote_bin_dir(node));
        let out = self
            .ssh
            .run(node, &format!("{} detect", quote(&bin)))
            .await
            .ok()?;
        serde_json::from_str(&out).ok()
    }

    /// Starts the hive detached (it outlives the SSH command) and waits for its ready line
    /// (the hive's stdout goes to a file, its log to another).
    async fn start_remote(&self, record: &NodeRecord) -> Result<u32, SshError> {
        let c = &record.config;
        let bin = format!("{}/rbee-hive", self.remote_bin_dir(c));
        let log = format!("rbee-hive-{}.log", c.hive_port);
        let ready = format!("rbee-hive-{}.ready", c.hive_port);
        // The data directory as rbee_api::dirs::data_dir finds it, in shell.
        let script = format!(
            "data=\"${{XDG_DATA_HOME:-$HOME/.local/share}}/rbee\"; mkdir -p \"$data\" && cd \"$data\" || exit 1; \
             [ -x {bin} ] || {{ echo 'rbee-hive is not installed at {bin}; run rbee setup install --node {node}'; exit 1; }}; \
             rm -f {ready}; \
             IFS= read -r key; RBEE_HIVE_API_KEY=\"$key\" nohup {bin} daemon --port {port} --public-host {host}{settings} > {ready} 2>> {log} < /dev/null & \
             pid=$!; i=0; while [ $i -lt 100 ]; do \
               [ -s {ready} ] && {{ echo $pid; head -n 1 {ready}; exit 0; }}; \
               kill -0 $pid 2>/dev/null || {{ tail -n 1 {log}; exit 1; }}; \
               sleep 0.1; i=$((i+1)); done; echo 'rbee-hive did not start within 10 s'; exit 1",
            bin = quote(&bin),
            node = c.node_name,
            port = c.hive_port,
            host = quote(&c.ssh_host),
            settings = (c.hive_settings.flags().iter())
                .map(|(flag, value)| format!(" {flag} {}", quote(value)))
                .collect::<String>(),
            log = quote(&log),
            ready = quote(&ready),
        );
        // The key goes on standard input, never on a command line.
        let key = format!("{}\n", record.hive_api_key);
        let out = self.ssh.run_with_input(c, &script, &key).await?;
        let mut lines = out.trim().lines();
        let pid = lines.next().and_then(|l| l.trim().parse().ok());
        let announced = lines
            .next()
            .and_then(|l| serde_json::from_str::<ReadyLine>(l).ok());
        match (pid, announced) {
            (Some(pid), Some(_)) => Ok(pid),
            _ => Err(SshError::Unexpected(format!(
                "unexpected answer while starting rbee-hive: {out}"
            ))),
        }
    }

    /// Health with retries, then the version check.
    async fn check(&self, client: &HiveClient, narrator: &Narrator) -> Result<(), QueenError> {
        let mut last = String::new();
        for (attempt, delay) in RETRY_DELAYS_MS.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(*delay)).await;
            match client.health(HEALTH_TIMEOUT).await {
                Ok(health) => {
                    let queen = env!("CARGO_PKG_VERSION");
                    if !compatible(&health.version, queen)
                        || health.api_version != rbee_api::API_VERSION
                    {
                        return Err(QueenError::VersionMismatch {
                            node: client.node.clone(),
                            hive: health.version,
                            queen: queen.to_owned(),
                        });
                    }
                    narrator
                        .say(
                            "hive_connected",
                            format!(
                                "Connected to rbee-hive {} on {}",
                                health.version, client.node
                            ),
                        )
                        .await;
                    return Ok(());
                }
                Err(e) => {
                    narrator
                        .say(
                            "hive_retry",
                            format!(
                                "rbee-hive on {} did not answer (attempt {}/{})",
                                client.node,
                                attempt + 1,
                                RETRY_DELAYS_MS.len()
                            ),
                        )
                        .await;
                    last = e.to_string();
                }
            }
        }
        Err(QueenError::ConnectionTimeout {
            node: client.node.clone(),
            url: client.url.clone(),
            attempts: RETRY_DELAYS_MS.len() as u32,
            reason: last,
        })
    }

    /// Stops `node`'s hive, and with it its workers: the hive this queen started, else the one
    /// answering on the node's hive port. It starts again with the node's next task.
    pub async fn stop_one(&self, node: &NodeName) -> Result<HiveStopped, QueenError> {
        let lock = self.node_lock(node);
        let _not_while_starting = lock.lock().await;
        let started = self.started.lock().await.remove(node);
        let stopped = |workers_stopped| HiveStopped {
            node_name: node.clone(),
            workers_stopped,
        };
        match started {
            Some((client, how)) => {
                let workers = client.workers().await.map_or(0, |l| l.workers.len());
                (self.stop(node.clone(), client, how).await).map_err(|source| {
                    QueenError::HiveStop {
                        node: node.clone(),
                        source,
                    }
                })?;
                Ok(stopped(workers))
            }
            None => {
                let client = self.client(node).await?;
                let workers = (client.workers().await)
                    .map_err(|e| e.from_hive(&client))?
                    .workers
                    .len();
                client.shutdown().await.map_err(|e| e.from_hive(&client))?;
                Ok(stopped(workers))
            }
        }
    }

    /// Stops every hive this queen started: over HTTP, then by signal or SSH if that fails.
    pub async fn stop_all(&self) {
        let started: Vec<(NodeName, (HiveClient, Started))> =
            self.started.lock().await.drain().collect();
        let stops = started
            .into_iter()
            .map(|(node, (client, how))| self.stop(node, client, how));
        // Each outcome is logged by `stop`; the queen is on its way out.
        let _ = futures::future::join_all(stops).await;
    }

    /// Stops a hive this queen started; why it may still run, if so.
    async fn stop(
        &self,
        node: NodeName,
        client: HiveClient,
        how: Started,
    ) -> Result<(), StopError> {
        let asked = client.shutdown().await.is_ok();
        match how {
            Started::Local { mut child, .. } => {
                if !asked {
                    let _ = child.start_kill();
                }
                match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
                    Ok(_) => tracing::info!("rbee-hive on {node} stopped"),
                    Err(_) => {
                        let _ = child.start_kill();
                        child.wait().await.map_err(StopError::Kill)?;
                        tracing::warn!("rbee-hive on {node} had to be killed");
                    }
                }
                Ok(())
            }
            Started::Remote { node: config, pid } => {
                if !asked {
                    let _ = self.ssh.run(&config, &format!("kill {pid}")).await;
                }
                let gone = format!(
                    "i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; \
                     kill -0 {pid} 2>/dev/null && kill -9 {pid}; true"
                );
                match self.ssh.run(&config, &gone).await {
                    Ok(_) => {
                        tracing::info!("rbee-hive on {node} stopped");
                        Ok(())
                    }
                    Err(e) => {
                        tracing::warn!("cannot confirm rbee-hive on {node} stopped: {e}");
                        Err(StopError::Unconfirmed(e))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compatible_within_a_minor_release() {
        assert!(compatible("0.1.0", "0.1.7"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("9.9.9", "0.1.0"));
    }
}
