//! Spawning, supervising and stopping worker processes.
//!
//! Each worker gets a fresh API key and binds the first free port from the hive's range
//! itself (binding is atomic, so two workers never race for a port); the hive learns the
//! port from the worker's ready line ([`rbee_api::ready`]). Its stdout and stderr go to the
//! log hub; a task owns the process, notices its exit at once and removes it from the registry;
//! a monitor polls `/v1/ready` to follow its state, counts failed health checks and shuts it
//! down when idle too long. The hive keeps the worker's stdin open: when the hive dies, even
//! by SIGKILL, the worker (started with `--watch-stdin`) sees end of file and exits.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbee_api::hive::{LogSource, ModelEntry, SpawnResponse, WorkerInfo};
use rbee_api::routes::worker as worker_routes;
use rbee_api::worker::{ReadyResponse, WorkerFailedCallback, WorkerState};
use rbee_api::{Backend, WorkerId, now_unix};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
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
/// Ports a worker tries, from the first of the hive's range, before giving up.
const PORT_RANGE: u16 = 1000;
/// How long a worker may take to listen (it checks its model file first).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a spawned worker did not come up.
#[derive(Debug, thiserror::Error)]
enum StartFailure {
    #[error("its standard output is not a pipe")]
    NoPipe,
    #[error("its ready line names no port: {0}")]
    NoPort(String),
    #[error("no ready line (it said: {said})")]
    NotReady {
        said: String,
        #[source]
        source: rbee_http::daemon::NotReady,
    },
}

/// What a new worker is started with.
struct Spawn<'a> {
    id: &'a WorkerId,
    key: &'a str,
    model: &'a ModelEntry,
    backend: Backend,
    device: u32,
    slots: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub worker_bin: PathBuf,
    pub worker_host: IpAddr,
    /// Host name others use to reach this node.
    pub public_host: String,
    /// The first port of the workers' range.
    pub port_start: u16,
    /// Where workers send their callbacks (this hive, seen from the node itself).
    pub hive_url: String,
    pub health_interval: Duration,
    pub idle_timeout: Duration,
    /// Slots of a worker whose request names none; `None` lets the worker choose.
    pub worker_slots: Option<u16>,
}

pub struct WorkerPool {
    config: PoolConfig,
    registry: Registry,
    logs: Arc<LogHub>,
    http: reqwest::Client,
}

impl WorkerPool {
    pub fn new(config: PoolConfig, logs: Arc<LogHub>) -> reqwest::Result<Self> {
        Ok(Self {
            config,
            registry: Registry::default(),
            logs,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .build()?,
        })
    }

    pub fn list(&self) -> Vec<WorkerInfo> {
        self.registry.list()
    }

    /// The workers with what is measured at the moment of asking: resident memory, and the
    /// time left before an idle worker is stopped.
    pub fn describe(&self) -> Vec<WorkerInfo> {
        let now = now_unix();
        let mut workers = self.registry.list();
        for w in &mut workers {
            w.rss_bytes = w.pid.and_then(resident_bytes);
            let idle = w.state == WorkerState::Idle && w.slots_available == w.slots_total;
            w.unload_in_secs = idle.then(|| {
                let timeout = (w.keep_alive_secs).unwrap_or(self.config.idle_timeout.as_secs());
                (w.last_activity_unix.saturating_add(timeout)).saturating_sub(now)
            });
        }
        workers
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

    /// The command that starts a worker.
    fn command(&self, w: &Spawn) -> Command {
        let mut cmd = Command::new(&self.config.worker_bin);
        cmd.arg("--model")
            .arg(&w.model.local_path)
            .args(["--backend", w.backend.as_str()])
            .args(["--device", &w.device.to_string()])
            .args(["--host", &self.config.worker_host.to_string()])
            .args(["--port", &self.config.port_start.to_string()])
            .args(["--port-tries", &PORT_RANGE.to_string()])
            .args(["--hive-url", &self.config.hive_url])
            .args(["--worker-id", w.id.as_str()])
            .args(["--model-ref", &w.model.reference.canonical()])
            .args(["--public-host", &self.config.public_host])
            .args(w.slots.map(|n| format!("--slots={n}")))
            .arg("--watch-stdin")
            .env("RBEE_WORKER_API_KEY", w.key)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        crate::preflight::settings_to_worker(&mut cmd, &w.model.settings);
        cmd
    }

    /// Starts a worker for `model` and waits until it listens; it loads the model next.
    pub async fn spawn(
        self: &Arc<Self>,
        model: &ModelEntry,
        backend: Backend,
        device: u32,
        slots: Option<u16>,
    ) -> Result<SpawnResponse, HiveError> {
        let slots = slots.or(self.config.worker_slots);
        let id = WorkerId::from_random(rand::random());
        let key = rbee_http::auth::new_key();
        let spawn = Spawn {
            id: &id,
            key: &key,
            model,
            backend,
            device,
            slots,
        };
        let bin = &self.config.worker_bin;
        let mut child = self
            .command(&spawn)
            .spawn()
            .map_err(|source| HiveError::WorkerStart {
                bin: bin.clone(),
                reason: source.to_string(),
            })?;
        let source = LogSource::Worker(id.clone());
        if let Some(err) = child.stderr.take() {
            self.capture(source.clone(), err);
        }
        let url = match self.await_listening(&mut child, &source).await {
            Ok(url) => url,
            Err(failure) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(HiveError::WorkerStart {
                    bin: bin.clone(),
                    reason: rbee_http::error::with_causes(&failure),
                });
            }
        };
        let pid = child.id();
        let (exited_tx, exited) = watch::channel(false);
        let control = self.register(&spawn, &url, pid, &mut child, exited);
        self.logs.hive(format!(
            "spawned {id} (pid {}) for {} on {backend}:{device} at {url}",
            pid.map_or("?".into(), |p| p.to_string()),
            model.reference
        ));
        self.own(id.clone(), child, control.kill.clone(), exited_tx);
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

    /// Reads the worker's ready line; the URL others reach it at (this node's public host
    /// and the port the worker bound).
    async fn await_listening(
        &self,
        child: &mut Child,
        source: &LogSource,
    ) -> Result<String, StartFailure> {
        let stdout = child.stdout.take().ok_or(StartFailure::NoPipe)?;
        match rbee_http::daemon::await_ready(stdout, START_TIMEOUT).await {
            Ok((ready, rest)) => {
                let logs = self.logs.clone();
                let source = source.clone();
                tokio::spawn(async move { capture_lines(&logs, &source, rest).await });
                let port = reqwest::Url::parse(&ready.url)
                    .ok()
                    .and_then(|u| u.port())
                    .ok_or(StartFailure::NoPort(ready.url))?;
                Ok(format!("http://{}:{port}", self.config.public_host))
            }
            Err(source_error) => {
                // Give its last words a moment to reach the log.
                let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                Err(StartFailure::NotReady {
                    said: self.logs.last_line(source).unwrap_or_default(),
                    source: source_error,
                })
            }
        }
    }

    /// Adds a listening worker to the registry, loading.
    fn register(
        &self,
        w: &Spawn,
        url: &str,
        pid: Option<u32>,
        child: &mut Child,
        exited: watch::Receiver<bool>,
    ) -> Control {
        let control = Control {
            kill: Arc::new(Notify::new()),
            exited,
            supervision: CancellationToken::new(),
            _lifeline: Arc::new(Mutex::new(child.stdin.take())),
        };
        let info = WorkerInfo {
            id: w.id.clone(),
            url: url.to_owned(),
            model_ref: w.model.reference.clone(),
            backend: w.backend,
            device: w.device,
            state: WorkerState::Loading,
            slots_total: w.slots.map_or(0, usize::from),
            slots_available: 0,
            last_activity_unix: now_unix(),
            pid,
            failed_health_checks: 0,
            api_key: w.key.to_owned(),
            compute: None,
            keep_alive_secs: None,
            rss_bytes: None,
            unload_in_secs: None,
        };
        self.registry.insert(info, control.clone());
        control
    }

    /// Owns the process from now on: notices its exit at once and removes it.
    fn own(
        self: &Arc<Self>,
        id: WorkerId,
        mut child: Child,
        kill: Arc<Notify>,
        exited_tx: watch::Sender<bool>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                () = kill.notified() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let status = status.map_or_else(|e| format!("unknown status ({e})"), |s| s.to_string());
            match this.registry.remove(&id) {
                Some(info) => this.logs.hive(format!(
                    "{id} exited ({status}) in state {}; removed from the registry",
                    info.state.as_str()
                )),
                None => this.logs.hive(format!("{id} exited ({status})")),
            }
            let _ = exited_tx.send(true);
        });
    }

    fn capture(&self, source: LogSource, stream: impl AsyncRead + Unpin + Send + 'static) {
        let logs = self.logs.clone();
        tokio::spawn(
            async move { capture_lines(&logs, &source, BufReader::new(stream).lines()).await },
        );
    }

    /// Follows one worker until it is removed: state from `/v1/ready`, health, idle time.
    /// While the worker loads it is polled often, so "idle" shows as soon as it is true.
    async fn supervise(&self, id: &WorkerId, stop: CancellationToken) {
        let timeout = self
            .config
            .health_interval
            .clamp(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let idle_timeout = self.idle_timeout(id);
            let steady = (self.config.health_interval)
                .min(idle_timeout / 4)
                .max(Duration::from_millis(50));
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
                    // Whole seconds: a worker last active at 8.9 s is 1 s idle at 9.0 s by
                    // their difference, so the second under way is not counted (it may stop
                    // up to a second late, never early, as when it was just handed a request).
                    let idle_for = now_unix()
                        .saturating_sub(
                            self.registry
                                .get(id)
                                .map_or(0, |(w, _)| w.last_activity_unix),
                        )
                        .saturating_sub(1);
                    let idle_timeout = self.idle_timeout(id);
                    if ready.state == WorkerState::Idle
                        && !busy
                        && Duration::from_secs(idle_for) >= idle_timeout
                    {
                        self.logs.hive(format!(
                            "{id} idle for {idle_for} s (timeout {idle_timeout:?}); shutting it down"
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
    fn record_ready(&self, id: &WorkerId, ready: &ReadyResponse) -> bool {
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
    ) -> reqwest::Result<ReadyResponse> {
        let url = format!("{}{}", info.url, worker_routes::READY);
        self.http
            .get(&url)
            .bearer_auth(&info.api_key)
            .timeout(timeout)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// How long `id` may stay idle: its client's keep-alive, else the hive's idle timeout.
    fn idle_timeout(&self, id: &WorkerId) -> Duration {
        (self.registry.get(id))
            .and_then(|(w, _)| w.keep_alive_secs)
            .map_or(self.config.idle_timeout, Duration::from_secs)
    }

    /// Sets how long `id` stays once idle, counted from now; with 0 an idle worker stops at
    /// once. `None` when there is no such worker, else whether it was stopped.
    pub async fn keep_alive(&self, id: &WorkerId, seconds: u64) -> Option<bool> {
        let (info, _) = self.registry.get(id)?;
        let idle = info.state == WorkerState::Idle && info.slots_available == info.slots_total;
        if seconds == 0 && idle {
            self.logs
                .hive(format!("{id}: keep-alive 0 and idle; shutting it down"));
            return Some(self.stop(id).await);
        }
        self.registry.update(id, |w| {
            w.keep_alive_secs = Some(seconds);
            w.last_activity_unix = now_unix();
        });
        Some(false)
    }

    /// Asks a worker to stop, waits up to the grace period, then kills it; removes it.
    pub async fn stop(&self, id: &WorkerId) -> bool {
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
    async fn kill(&self, id: &WorkerId) {
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

    fn authenticate(&self, worker_id: &WorkerId, key: &str) -> Result<WorkerInfo, HiveError> {
        let (info, _) = self
            .registry
            .get(worker_id)
            // An unknown worker is refused like a wrong key: the answer reveals nothing.
            .ok_or_else(|| HiveError::InvalidWorkerKey(worker_id.clone()))?;
        if rbee_http::auth::ApiKey::new(&info.api_key).matches(key) {
            Ok(info)
        } else {
            Err(HiveError::InvalidWorkerKey(worker_id.clone()))
        }
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

/// Passes each line of a worker's output to the log hub.
async fn capture_lines<R: tokio::io::AsyncBufRead + Unpin>(
    logs: &LogHub,
    source: &LogSource,
    mut lines: tokio::io::Lines<R>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        logs.push(source, line);
    }
}

/// A process's resident memory (`VmRSS` of `/proc/<pid>/status`); `None` off Linux or once
/// it is gone.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
