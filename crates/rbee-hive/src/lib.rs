//! `rbee-hive`: the pool manager of one node.
//!
//! It owns the node's model catalog (SQLite), gets models onto the node (Hugging Face
//! downloads with resume and sha256 checks, or local files), checks that a model fits before
//! anything starts, and spawns, watches and stops `llm-worker-rbee` processes. No worker
//! outlives its hive.
//!
//! Modules:
//! - [`args`]: command line (`daemon`, `detect`).
//! - [`catalog`]: the model catalog trait, SQLite and in-memory.
//! - [`model_ref`]: `hf:`/`file:` references and the choice of GGUF file.
//! - [`hub`], [`downloads`]: the Hugging Face protocol; shared, resumable, verified downloads.
//! - [`detect`], [`preflight`]: backends and devices; RAM, backend, VRAM and file checks.
//! - [`workers`]: the worker registry and the pool that runs the processes.
//! - [`logs`]: captured log lines for `GET /v1/logs`; [`metrics`]: what `GET /metrics` counts.
//! - [`routes`], [`state`], [`error`]: the HTTP service.

pub mod args;
pub mod catalog;
pub mod detect;
pub mod downloads;
pub mod error;
pub mod hub;
pub mod logs;
pub mod metrics;
pub mod model_ref;
pub mod preflight;
pub mod routes;
pub mod state;
pub mod workers;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use rbee_http::auth::ApiKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::{Command, DaemonArgs};
use crate::catalog::{ModelCatalog, SqliteCatalog};
use crate::downloads::Downloads;
use crate::hub::HubClient;
use crate::logs::LogHub;
use crate::preflight::Preflight;
use crate::state::{AppState, HiveState};
use crate::workers::{PoolConfig, WorkerPool};

/// A failure that stops the hive; its `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

pub async fn run(command: Command) -> Result<(), Fatal> {
    match command {
        Command::Detect => {
            let found = detect::detect();
            println!(
                "{}",
                serde_json::to_string_pretty(&found).map_err(|e| Fatal(e.to_string()))?
            );
            Ok(())
        }
        Command::Daemon(args) => daemon(*args).await,
    }
}

/// The worker binary: the flag, else next to this executable, else `llm-worker-rbee` on PATH.
fn worker_bin(args: &DaemonArgs) -> PathBuf {
    args.worker_bin
        .clone()
        .unwrap_or_else(|| rbee_http::daemon::sibling_or_path("llm-worker-rbee"))
}

/// Binds the hive's port, naming the likely cause when it is taken.
async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Fatal> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Fatal(format!(
            "cannot listen on {addr}: {e} (is another hive running?)"
        ))
    })?;
    let bound = listener.local_addr().map_err(|e| Fatal(e.to_string()))?;
    Ok((listener, bound))
}

/// The hive's state: catalog, downloads, preflight and the worker pool, wired together.
fn build_state(
    args: &DaemonArgs,
    catalog: Arc<dyn ModelCatalog>,
    models_dir: PathBuf,
    bound: SocketAddr,
) -> Result<AppState, Fatal> {
    let local_ip = if bound.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    };
    let public_host = args
        .public_host
        .clone()
        .unwrap_or_else(|| local_ip.to_string());
    let worker_bin = worker_bin(args);
    let logs = Arc::new(LogHub::default());
    let pool = Arc::new(
        WorkerPool::new(
            PoolConfig {
                worker_bin: worker_bin.clone(),
                worker_host: args.worker_host,
                public_host,
                port_start: args.worker_port_start,
                hive_url: format!("http://{}", SocketAddr::new(local_ip, bound.port())),
                health_interval: args.health_interval,
                idle_timeout: args.idle_timeout,
                worker_slots: args.worker_slots,
            },
            logs.clone(),
        )
        .map_err(|e| Fatal(format!("cannot build an HTTP client: {e}")))?,
    );
    let metrics = Arc::<metrics::HiveMetrics>::default();
    let preflight = Preflight {
        memory_limit_mb: args.memory_limit_mb,
        worker_bin,
        worker_backends: Default::default(),
    };
    let downloads = Arc::new(Downloads::new(
        HubClient::new(&args.hf_endpoint, args.hf_token.clone())
            .map_err(|e| Fatal(format!("cannot build an HTTP client: {e}")))?,
        catalog.clone(),
        models_dir,
        args.download_backoff,
        logs.clone(),
        metrics.clone(),
        preflight.clone(),
    ));
    Ok(Arc::new(HiveState {
        catalog,
        downloads,
        preflight,
        pool: pool.clone(),
        logs: logs.clone(),
        shutdown: CancellationToken::new(),
        metrics,
    }))
}

async fn daemon(args: DaemonArgs) -> Result<(), Fatal> {
    let data =
        rbee_http::daemon::data_dir(args.data_dir.as_deref()).map_err(|e| Fatal(e.to_string()))?;
    let db = args
        .models_db
        .clone()
        .unwrap_or_else(|| data.join("models.db"));
    let models_dir = args
        .models_dir
        .clone()
        .unwrap_or_else(|| data.join("models"));
    let catalog: Arc<dyn ModelCatalog> =
        Arc::new(SqliteCatalog::open(&db).map_err(|e| Fatal(e.to_string()))?);
    let (listener, bound) = listen(SocketAddr::new(args.host, args.port)).await?;
    let state = build_state(&args, catalog, models_dir.clone(), bound)?;
    let logs = state.logs.clone();
    if args.watch_stdin {
        // Workers get the same grace as on SIGTERM; after that the hive exits regardless,
        // and its workers follow through their own stdin.
        rbee_http::shutdown::cancel_on_stdin_eof(
            state.shutdown.clone(),
            std::time::Duration::from_secs(15),
        );
    }
    logs.hive(format!(
        "rbee-hive {} listening on http://{bound} (catalog {}, models in {})",
        env!("CARGO_PKG_VERSION"),
        db.display(),
        models_dir.display()
    ));
    rbee_http::daemon::announce_ready("rbee-hive", &format!("http://{bound}"))
        .map_err(|e| Fatal(format!("cannot write the ready line: {e}")))?;
    serve(listener, state, ApiKey::new(&args.api_key)).await
}

/// Serves until SIGTERM, SIGINT or `POST /v1/admin/shutdown`; then stops every worker.
pub async fn serve(listener: TcpListener, state: AppState, key: ApiKey) -> Result<(), Fatal> {
    let app = routes::router(state.clone(), key);
    let serving = rbee_http::daemon::serve(listener, app, state.shutdown.clone());
    state.shutdown.cancelled().await;
    state.logs.hive("stopping every worker");
    state.pool.stop_all().await;
    serving.finish(std::time::Duration::from_secs(5)).await;
    state.logs.hive("hive stopped");
    Ok(())
}
