//! Spawning, supervising and stopping worker processes.
//!
//! Each worker gets a free port and a fresh API key. Its stdout and stderr go to the log
//! hub; a task owns the process, notices its exit at once and removes it from the registry;
//! a monitor polls `/v1/ready` to follow its state, counts failed health checks and shuts it
//! down when idle too long. The hive keeps the worker's stdin open: when the hive dies, even
//! by SIGKILL, the worker (started with `--watch-stdin`) sees end of file and exits.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rbee_api::Backend;
use rbee_api::hive::{ModelEntry, SpawnResponse, WorkerInfo};
use rbee_api::routes::worker as worker_routes;
use rbee_api::worker::{ReadyResponse, WorkerFailedCallback, WorkerReadyCallback, WorkerState};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::registry::{Control, Registry};
use crate::error::HiveError;
use crate::logs::LogHub;

/// Consecutive failed health checks after which a worker is removed.
pub const MAX_FAILED_CHECKS: u32 = 3;
/// How long a worker gets to stop after being asked, before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);
/// How often a loading worker is polled.
const LOADING_POLL: Duration = Duration::from_millis(100);
/// Ports tried after the first one before giving up.
const PORT_RANGE: u16 = 1000;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub worker_bin: PathBuf,
    pub worker_host: IpAddr,
    /// Host name others use to reach this node.
    pub public_host: String,
    pub port_start: u16,
    /// Where workers send their callbacks (this hive, seen from the node itself).
    pub hive_url: String,
    pub health_interval: Duration,
    pub idle_timeout: Duration,
}

pub struct WorkerPool {
    config: PoolConfig,
    registry: Registry,
    logs: Arc<LogHub>,
    http: reqwest::Client,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_key() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl WorkerPool {
    pub fn new(config: PoolConfig, logs: Arc<LogHub>) -> Self {
        Self {
            config,
            registry: Registry::default(),
            logs,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn list(&self) -> Vec<WorkerInfo> {
        self.registry.list()
    }

    /// Asks every worker for its state now, so a list reflects it rather than the last
    /// health check (which may be 30 s old). A worker that does not answer keeps its entry;
    /// the monitor decides about its health.
    pub async fn refresh(&self) {
        let workers = self.registry.list();
        let polls = workers.iter().map(|w| async move {
            if let Ok(ready) = self.poll_ready(w, Duration::from_secs(1)).await {
                self.record_ready(&w.id, &ready);
            }
        });
        futures::future::join_all(polls).await;
    }

    fn free_port(&self) -> Result<u16, HiveError> {
        let taken = self.registry.ports_in_use();
        let start = self.config.port_start;
        (start..start.saturating_add(PORT_RANGE))
            .filter(|p| !taken.contains(p))
            .find(|&p| TcpListener::bind(SocketAddr::new(self.config.worker_host, p)).is_ok())
            .ok_or_else(|| {
                HiveError::Internal(format!(
                    "no free port for a worker between {start} and {}",
                    start.saturating_add(PORT_RANGE - 1)
                ))
            })
    }

    /// Starts a worker for `model`; it reports back on /v1/workers/ready and then loads.
    pub fn spawn(
        self: &Arc<Self>,
        model: &ModelEntry,
        backend: Backend,
        device: u32,
        slots: u16,
    ) -> Result<SpawnResponse, HiveError> {
        let port = self.free_port()?;
        let id = format!(
            "worker-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let key = new_key();
        let url = format!("http://{}:{port}", self.config.public_host);
        let mut child = Command::new(&self.config.worker_bin)
            .arg("--model")
            .arg(&model.local_path)
            .args(["--backend", backend.as_str()])
            .args(["--device", &device.to_string()])
            .args(["--host", &self.config.worker_host.to_string()])
            .args(["--port", &port.to_string()])
            .args(["--hive-url", &self.config.hive_url])
            .args(["--worker-id", &id])
            .args(["--model-ref", &model.reference])
            .args(["--public-url", &url])
            .args(["--slots", &slots.to_string()])
            .arg("--watch-stdin")
            .env("RBEE_WORKER_API_KEY", &key)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                HiveError::Internal(format!(
                    "cannot start {}: {e}",
                    self.config.worker_bin.display()
                ))
            })?;
        let pid = child.id();
        let source = format!("worker:{id}");
        if let Some(out) = child.stdout.take() {
            self.capture(source.clone(), out);
        }
        if let Some(err) = child.stderr.take() {
            self.capture(source.clone(), err);
        }
        let kill = Arc::new(Notify::new());
        let (exited_tx, exited) = watch::channel(false);
        let control = Control {
            kill: kill.clone(),
            exited,
            supervision: CancellationToken::new(),
            _lifeline: Arc::new(Mutex::new(child.stdin.take())),
        };
        let info = WorkerInfo {
            id: id.clone(),
            url: url.clone(),
            model_ref: model.reference.clone(),
            backend,
            device,
            state: WorkerState::Loading,
            slots_total: usize::from(slots),
            slots_available: 0,
            last_activity_unix: now_unix(),
            pid,
            failed_health_checks: 0,
            api_key: key.clone(),
            compute: None,
        };
        self.registry.insert(info, control.clone());
        self.logs.hive(format!(
            "spawned {id} (pid {}) for {} on {backend}:{device} at {url}",
            pid.map_or("?".into(), |p| p.to_string()),
            model.reference
        ));

        let this = self.clone();
        let owner_id = id.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                () = kill.notified() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let status = status.map_or_else(|e| format!("unknown status ({e})"), |s| s.to_string());
            match this.registry.remove(&owner_id) {
                Some(info) => this.logs.hive(format!(
                    "{owner_id} exited ({status}) in state {}; removed from the registry",
                    info.state.as_str()
                )),
                None => this.logs.hive(format!("{owner_id} exited ({status})")),
            }
            let _ = exited_tx.send(true);
        });
        let this = self.clone();
        let monitor_id = id.clone();
        tokio::spawn(async move { this.supervise(&monitor_id, control.supervision).await });

        Ok(SpawnResponse {
            worker_id: id,
            url,
            state: WorkerState::Loading,
            api_key: key,
        })
    }

    fn capture(&self, source: String, stream: impl AsyncRead + Unpin + Send + 'static) {
        let logs = self.logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logs.push(&source, line);
            }
        });
    }

    /// Follows one worker until it is removed: state from `/v1/ready`, health, idle time.
    /// While the worker loads it is polled often, so "idle" shows as soon as it is true.
    async fn supervise(&self, id: &str, stop: CancellationToken) {
        let steady = self
            .config
            .health_interval
            .min(self.config.idle_timeout / 4)
            .max(Duration::from_millis(50));
        let timeout = self
            .config
            .health_interval
            .clamp(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let loading = self
                .registry
                .get(id)
                .is_some_and(|(w, _)| w.state == WorkerState::Loading);
            let interval = if loading {
                LOADING_POLL.min(steady)
            } else {
                steady
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let Some((info, _)) = self.registry.get(id) else {
                return;
            };
            match self.poll_ready(&info, timeout).await {
                Ok(ready) => {
                    let busy = self.record_ready(id, &ready);
                    self.registry.update(id, |w| w.failed_health_checks = 0);
                    let idle_for = now_unix().saturating_sub(
                        self.registry
                            .get(id)
                            .map_or(0, |(w, _)| w.last_activity_unix),
                    );
                    if ready.state == WorkerState::Idle
                        && !busy
                        && Duration::from_secs(idle_for) >= self.config.idle_timeout
                    {
                        self.logs.hive(format!(
                            "{id} idle for {idle_for} s (timeout {:?}); shutting it down",
                            self.config.idle_timeout
                        ));
                        self.stop(id).await;
                        return;
                    }
                }
                Err(reason) => {
                    let mut failures = 0;
                    self.registry.update(id, |w| {
                        w.failed_health_checks += 1;
                        w.state = WorkerState::Unhealthy;
                        failures = w.failed_health_checks;
                    });
                    self.logs.hive(format!(
                        "health check {failures}/{MAX_FAILED_CHECKS} of {id} failed: {reason}"
                    ));
                    if failures >= MAX_FAILED_CHECKS {
                        self.logs.hive(format!(
                            "{id} failed {MAX_FAILED_CHECKS} health checks in a row; killing and removing it"
                        ));
                        self.kill(id).await;
                        return;
                    }
                }
            }
        }
    }

    /// Stores what a worker reported; whether it is working (busy, loading, a slot in use).
    fn record_ready(&self, id: &str, ready: &ReadyResponse) -> bool {
        let busy = matches!(ready.state, WorkerState::Busy | WorkerState::Loading)
            || ready.slots_available < ready.slots_total;
        self.registry.update(id, |w| {
            w.state = ready.state;
            w.slots_total = ready.slots_total;
            w.slots_available = ready.slots_available;
            if let Some(compute) = ready.model.as_ref().and_then(|m| m.compute.clone()) {
                w.compute = Some(compute);
            }
            if busy {
                w.last_activity_unix = now_unix();
            }
        });
        busy
    }

    async fn poll_ready(
        &self,
        info: &WorkerInfo,
        timeout: Duration,
    ) -> Result<ReadyResponse, String> {
        let url = format!("{}{}", info.url, worker_routes::READY);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&info.api_key)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        resp.json().await.map_err(|e| format!("GET {url}: {e}"))
    }

    /// Asks a worker to stop, waits up to the grace period, then kills it; removes it.
    pub async fn stop(&self, id: &str) -> bool {
        let Some((info, control)) = self.registry.get(id) else {
            return false;
        };
        control.supervision.cancel();
        let url = format!("{}{}", info.url, worker_routes::ADMIN_SHUTDOWN);
        let asked = self
            .http
            .post(&url)
            .bearer_auth(&info.api_key)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Err(e) = asked {
            self.logs
                .hive(format!("{id} did not take the shutdown request ({e})"));
        }
        let mut exited = control.exited.clone();
        if tokio::time::timeout(GRACE, exited.wait_for(|e| *e))
            .await
            .is_err()
        {
            self.logs.hive(format!(
                "{id} still running after {GRACE:?}; sending SIGKILL"
            ));
            self.kill(id).await;
        }
        self.registry.remove(id);
        true
    }

    /// SIGKILLs a worker and waits for it to be gone.
    async fn kill(&self, id: &str) {
        let Some((_, control)) = self.registry.get(id) else {
            return;
        };
        control.kill.notify_one();
        let mut exited = control.exited.clone();
        let _ = tokio::time::timeout(GRACE, exited.wait_for(|e| *e)).await;
        self.registry.remove(id);
    }

    /// Stops every worker at once (the cascade on hive shutdown).
    pub async fn stop_all(&self) {
        let ids = self.registry.ids();
        futures::future::join_all(ids.iter().map(|id| self.stop(id))).await;
        self.registry.clear();
    }

    fn authenticate(&self, worker_id: &str, key: &str) -> Result<WorkerInfo, HiveError> {
        let (info, _) = self
            .registry
            .get(worker_id)
            .ok_or_else(|| HiveError::WorkerNotFound(worker_id.to_owned()))?;
        if rbee_http::auth::ApiKey::new(&info.api_key).matches(key) {
            Ok(info)
        } else {
            Err(HiveError::InvalidWorkerKey(worker_id.to_owned()))
        }
    }

    /// The worker's "I listen" callback.
    pub fn ready(&self, body: &WorkerReadyCallback, key: &str) -> Result<(), HiveError> {
        let info = self.authenticate(&body.worker_id, key)?;
        self.logs.hive(format!(
            "{} is listening at {} and loading {}",
            info.id, body.url, info.model_ref
        ));
        Ok(())
    }

    /// The worker's "my model failed to load" callback.
    pub fn failed(&self, body: &WorkerFailedCallback, key: &str) -> Result<(), HiveError> {
        let info = self.authenticate(&body.worker_id, key)?;
        self.registry
            .update(&info.id, |w| w.state = WorkerState::Failed);
        self.logs.hive(format!(
            "{} could not load {}: {} ({})",
            info.id, info.model_ref, body.error.error.message, body.error.error.code
        ));
        Ok(())
    }
}
