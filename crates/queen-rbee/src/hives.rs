//! Making sure a node's hive runs, and stopping the hives this queen started.
//!
//! `localhost` gets a hive as a child process of the queen, on a free loopback port, with a
//! key made for this run. Registered nodes get theirs over SSH, detached so it outlives the
//! SSH session, with the node's key from the registry. Either way the queen then checks the
//! hive's health (three attempts, 0/200/400 ms apart) and its version.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rbee_api::queen::{Beehive, LOCALHOST, NodeStatus};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::clients::{HiveClient, http_client};
use crate::error::QueenError;
use crate::registry::{BeehiveRegistry, NodeRecord};
use crate::ssh::{Ssh, SshError, quote};

/// Delays before each health attempt (SPEC section 5 step 3).
const RETRY_DELAYS_MS: [u64; 3] = [0, 200, 400];
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct HiveSettings {
    pub hive_bin: PathBuf,
    pub local_hive_args: Vec<String>,
    pub remote_binary_path: Option<String>,
}

enum Started {
    /// A child hive; it watches its stdin, so it stops if this queen dies.
    Local {
        child: Child,
        _lifeline: Option<tokio::process::ChildStdin>,
    },
    Remote {
        node: Beehive,
        pid: u32,
    },
}

pub struct Hives {
    settings: HiveSettings,
    ssh: Ssh,
    registry: Arc<dyn BeehiveRegistry>,
    http: reqwest::Client,
    local_key: String,
    /// Hives this queen started, by node, with the client to reach them.
    started: tokio::sync::Mutex<HashMap<String, (HiveClient, Started)>>,
    /// Serialises starting per node so two tasks never start two hives.
    starting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub fn new_key() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Same major and minor version: the wire protocol is the same.
pub fn compatible(a: &str, b: &str) -> bool {
    let prefix = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    prefix(a) == prefix(b)
}

impl Hives {
    /// The queen's HTTP client (one connection pool for hives and workers).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    pub fn new(settings: HiveSettings, ssh: Ssh, registry: Arc<dyn BeehiveRegistry>) -> Self {
        Self {
            settings,
            ssh,
            registry,
            http: http_client(),
            local_key: new_key(),
            started: tokio::sync::Mutex::new(HashMap::new()),
            starting: Mutex::new(HashMap::new()),
        }
    }

    pub fn ssh(&self) -> &Ssh {
        &self.ssh
    }

    /// The client for `node`'s hive, starting the hive first if it does not answer.
    pub async fn ensure(
        &self,
        node: &str,
        narrate: &(dyn Fn(String) + Send + Sync),
    ) -> Result<HiveClient, QueenError> {
        let lock = {
            let mut starting = self
                .starting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            starting.entry(node.to_owned()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        if node == LOCALHOST {
            return self.ensure_local(narrate).await;
        }
        let record = self
            .registry
            .get(node)?
            .ok_or_else(|| QueenError::NodeNotFound(node.to_owned()))?;
        let result = self.ensure_remote(&record, narrate).await;
        self.record_contact(&record, &result);
        result
    }

    fn record_contact(&self, record: &NodeRecord, result: &Result<HiveClient, QueenError>) {
        let mut updated = record.clone();
        match result {
            Ok(_) => {
                updated.beehive.status = NodeStatus::Reachable;
                updated.beehive.last_connected_unix = Some(now_unix());
                updated.beehive.last_error = None;
            }
            Err(e) => {
                updated.beehive.status = NodeStatus::Unreachable;
                updated.beehive.last_error = Some(e.to_string());
            }
        }
        if let Err(e) = self.registry.upsert(&updated) {
            tracing::warn!(
                "cannot record the contact with {}: {e}",
                record.beehive.node_name
            );
        }
    }

    /// Records that a registered node stopped answering in the middle of a task.
    pub fn mark_unreachable(&self, node: &str, reason: &str) {
        if let Ok(Some(mut record)) = self.registry.get(node) {
            record.beehive.status = NodeStatus::Unreachable;
            record.beehive.last_error = Some(reason.to_owned());
            if let Err(e) = self.registry.upsert(&record) {
                tracing::warn!("cannot record that {node} is unreachable: {e}");
            }
        }
    }

    /// The client for a node's hive if this queen knows where it is, without starting it.
    pub async fn client(&self, node: &str) -> Result<HiveClient, QueenError> {
        if let Some((client, _)) = self.started.lock().await.get(node) {
            return Ok(client.clone());
        }
        if node == LOCALHOST {
            return Err(QueenError::Remote(rbee_api::ErrorEnvelope::new(
                rbee_api::ErrorCode::ConnectionTimeout,
                "no rbee-hive runs on localhost yet; it starts with the first `rbee infer`",
            )));
        }
        let record = self
            .registry
            .get(node)?
            .ok_or_else(|| QueenError::NodeNotFound(node.to_owned()))?;
        Ok(self.remote_client(&record))
    }

    fn remote_client(&self, record: &NodeRecord) -> HiveClient {
        let b = &record.beehive;
        HiveClient::new(
            &b.node_name,
            &format!("http://{}:{}", b.ssh_host, b.hive_port),
            &record.hive_api_key,
            self.http.clone(),
        )
    }

    async fn ensure_local(
        &self,
        narrate: &(dyn Fn(String) + Send + Sync),
    ) -> Result<HiveClient, QueenError> {
        let existing = {
            let mut started = self.started.lock().await;
            match started.get_mut(LOCALHOST) {
                Some((client, Started::Local { child, .. })) => match child.try_wait() {
                    Ok(None) => Some(client.clone()),
                    _ => {
                        narrate("rbee-hive on localhost has exited; starting a new one".into());
                        started.remove(LOCALHOST);
                        None
                    }
                },
                _ => None,
            }
        };
        let client = match existing {
            Some(client) => client,
            None => {
                narrate("Starting rbee-hive on localhost".into());
                let client = self.start_local().await?;
                narrate(format!("rbee-hive on localhost listens at {}", client.url));
                client
            }
        };
        self.check(&client, narrate).await?;
        Ok(client)
    }

    async fn start_local(&self) -> Result<HiveClient, QueenError> {
        let bin = &self.settings.hive_bin;
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
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| QueenError::Internal(format!("cannot start {}: {e}", bin.display())))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| QueenError::Internal("rbee-hive has no stderr".into()))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let url = loop {
            match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    if let Some(url) = line
                        .split("listening on ")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                    {
                        break url.to_owned();
                    }
                    seen.push(line);
                }
                _ => {
                    return Err(QueenError::Internal(format!(
                        "rbee-hive on localhost did not start: {}",
                        seen.last().map_or("no output", String::as_str)
                    )));
                }
            }
        };
        // Keep reading so the hive never blocks on a full pipe; its lines go to our log.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "rbee_hive::localhost", "{line}");
            }
        });
        let client = HiveClient::new(LOCALHOST, &url, &self.local_key, self.http.clone());
        let lifeline = child.stdin.take();
        self.started.lock().await.insert(
            LOCALHOST.to_owned(),
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
        narrate: &(dyn Fn(String) + Send + Sync),
    ) -> Result<HiveClient, QueenError> {
        let node = &record.beehive.node_name;
        let client = self.remote_client(record);
        let ours = self.started.lock().await.contains_key(node);
        if !ours && client.health(HEALTH_TIMEOUT).await.is_err() {
            narrate(format!(
                "Starting rbee-hive on {node} over SSH ({})",
                record.beehive.ssh_host
            ));
            let pid = self
                .start_remote(record)
                .await
                .map_err(|e| QueenError::SshFailed {
                    node: node.clone(),
                    reason: e.message,
                })?;
            narrate(format!("rbee-hive on {node} started (pid {pid})"));
            self.started.lock().await.insert(
                node.clone(),
                (
                    client.clone(),
                    Started::Remote {
                        node: record.beehive.clone(),
                        pid,
                    },
                ),
            );
        }
        self.check(&client, narrate).await?;
        Ok(client)
    }

    fn remote_bin_dir(&self, node: &Beehive) -> String {
        self.settings.remote_binary_path.clone().unwrap_or_else(|| {
            format!("{}/target/release", node.install_path.trim_end_matches('/'))
        })
    }

    /// Starts the hive detached (it outlives the SSH command) and waits until it listens.
    async fn start_remote(&self, record: &NodeRecord) -> Result<u32, SshError> {
        let b = &record.beehive;
        let bin = format!("{}/rbee-hive", self.remote_bin_dir(b));
        let log = format!("rbee-hive-{}.log", b.hive_port);
        let script = format!(
            "data=\"${{XDG_DATA_HOME:-$HOME/.local/share}}/rbee\"; mkdir -p \"$data\" && cd \"$data\" || exit 1; \
             [ -x {bin} ] || {{ echo 'rbee-hive is not installed at {bin}; run rbee setup install --node {node}'; exit 1; }}; \
             RBEE_HIVE_API_KEY={key} nohup {bin} daemon --port {port} --public-host {host} > {log} 2>&1 < /dev/null & \
             pid=$!; i=0; while [ $i -lt 100 ]; do \
               grep -q 'listening on' {log} && {{ echo $pid; exit 0; }}; \
               kill -0 $pid 2>/dev/null || {{ tail -n 1 {log}; exit 1; }}; \
               sleep 0.1; i=$((i+1)); done; echo 'rbee-hive did not start within 10 s'; exit 1",
            bin = quote(&bin),
            node = b.node_name,
            key = quote(&record.hive_api_key),
            port = b.hive_port,
            host = quote(&b.ssh_host),
            log = quote(&log),
        );
        let out = self.ssh.run(b, &script).await?;
        out.trim()
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| SshError {
                message: format!("unexpected answer while starting rbee-hive: {out}"),
            })
    }

    /// Health with retries, then the version check.
    async fn check(
        &self,
        client: &HiveClient,
        narrate: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), QueenError> {
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
                    narrate(format!(
                        "Connected to rbee-hive {} on {}",
                        health.version, client.node
                    ));
                    return Ok(());
                }
                Err(e) => {
                    narrate(format!(
                        "rbee-hive on {} did not answer (attempt {}/{})",
                        client.node,
                        attempt + 1,
                        RETRY_DELAYS_MS.len()
                    ));
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

    /// Stops every hive this queen started: over HTTP, then by signal or SSH if that fails.
    pub async fn stop_all(&self) {
        let started: Vec<(String, (HiveClient, Started))> =
            self.started.lock().await.drain().collect();
        let stops = started.into_iter().map(|(node, (client, how))| async move {
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
                            let _ = child.wait().await;
                            tracing::warn!("rbee-hive on {node} had to be killed");
                        }
                    }
                }
                Started::Remote { node: b, pid } => {
                    if !asked {
                        let _ = self.ssh.run(&b, &format!("kill {pid}")).await;
                    }
                    let gone = format!(
                        "i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; \
                         kill -0 {pid} 2>/dev/null && kill -9 {pid}; true"
                    );
                    match self.ssh.run(&b, &gone).await {
                        Ok(_) => tracing::info!("rbee-hive on {node} stopped"),
                        Err(e) => tracing::warn!("cannot confirm rbee-hive on {node} stopped: {e}"),
                    }
                }
            }
        });
        futures::future::join_all(stops).await;
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
