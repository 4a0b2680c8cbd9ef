//! `queen-rbee`: the orchestrator.
//!
//! It keeps the registry of nodes (SQLite), reaches them with the system `ssh` client,
//! starts their hives when needed (a child process for `localhost`), and carries each
//! inference task through hive, download, worker and token stream, narrating as it goes.
//! On SIGTERM it stops every hive it started, which stop their workers.
//!
//! Modules:
//! - [`args`]: command line.
//! - [`registry`]: the node registry trait, SQLite and in-memory.
//! - [`ssh`]: ssh calls with safe defaults.
//! - [`hives`]: starting, checking and stopping hives.
//! - [`setup`]: adding a node (after an SSH test) and installing rbee on it.
//! - [`clients`]: HTTP clients for hives and workers.
//! - [`narration`]: telling the user what the queen does, as it does it.
//! - [`downloads`]: following a hive's download of a model.
//! - [`tasks`]: the inference flow; [`running`]: the tasks running now, to cancel them.
//! - [`placement`]: choosing a node when a task names none.
//! - [`metrics`]: what `GET /metrics` counts; [`lab`]: the lab's live state for the dashboard.
//! - [`routes`], [`state`], [`error`]: the HTTP service, including the OpenAI-compatible API
//!   (`routes/openai.rs`).

pub mod args;
pub mod clients;
pub mod downloads;
pub mod error;
pub mod hives;
pub mod lab;
pub mod lanes;
pub mod metrics;
pub mod narration;
pub mod placement;
pub mod registry;
pub mod routes;
pub mod running;
pub mod setup;
pub mod ssh;
pub mod state;
pub mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;

use rbee_http::auth::ApiKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::{Command, DaemonArgs};
use crate::hives::{HiveSettings, Hives};
use crate::lab::LabFeed;
use crate::lanes::Lanes;
use crate::registry::{BeehiveRegistry, SqliteRegistry};
use crate::running::RunningTasks;
use crate::ssh::Ssh;
use crate::state::{AppState, QueenState};

/// A failure that stops the queen; its `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

pub async fn run(command: Command) -> Result<(), Fatal> {
    match command {
        Command::Daemon(args) => daemon(*args).await,
    }
}

async fn daemon(args: DaemonArgs) -> Result<(), Fatal> {
    if !args.host.is_loopback() && args.api_key.is_none() {
        return Err(Fatal(format!(
            "listening on {} exposes the queen to the network; set --api-key (or RBEE_QUEEN_API_KEY)",
            args.host
        )));
    }
    let db = match &args.db {
        Some(db) => db.clone(),
        None => rbee_http::daemon::data_dir(args.data_dir.as_deref())
            .map_err(|e| Fatal(e.to_string()))?
            .join("beehives.db"),
    };
    let registry: Arc<dyn BeehiveRegistry> =
        Arc::new(SqliteRegistry::open(&db).map_err(|e| Fatal(e.to_string()))?);
    let addr = SocketAddr::new(args.host, args.port);
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Fatal(format!(
            "cannot listen on {addr}: {e} (is another queen running?)"
        ))
    })?;
    let bound = listener.local_addr().map_err(|e| Fatal(e.to_string()))?;
    let hives = Hives::new(
        HiveSettings {
            hive_bin: args
                .hive_bin
                .clone()
                .unwrap_or_else(|| rbee_http::daemon::sibling_or_path("rbee-hive")),
            local_hive_args: args
                .local_hive_args
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            config_file: args.config.clone(),
            remote_binary_path: args.remote_binary_path.clone(),
        },
        Ssh {
            config_file: args.ssh_config.clone(),
        },
        registry.clone(),
    )
    .map_err(|e| Fatal(format!("cannot build an HTTP client: {e}")))?;
    let state: AppState = Arc::new(QueenState {
        registry,
        hives,
        tasks: RunningTasks::default(),
        lanes: Lanes::new(args.queue_limit),
        loading_timeout: args.loading_timeout,
        worker_slots: args.worker_slots,
        default_model: args.default_model.clone().or_else(|| {
            rbee_api::model_ref::fetched_model()
                .filter(|p| p.is_file())
                .and_then(|p| rbee_api::ModelRef::file(&p).ok())
        }),
        shutdown: CancellationToken::new(),
        metrics: Arc::default(),
        lab: LabFeed::default(),
    });
    if args.watch_stdin {
        // Hives get their own grace (workers 15 s) before the queen exits regardless.
        rbee_http::shutdown::cancel_on_stdin_eof(
            state.shutdown.clone(),
            std::time::Duration::from_secs(30),
        );
    }
    tracing::info!(
        "queen-rbee {} listening on http://{bound} (registry {})",
        env!("CARGO_PKG_VERSION"),
        db.display()
    );
    rbee_http::daemon::announce_ready("queen-rbee", &format!("http://{bound}"))
        .map_err(|e| Fatal(format!("cannot write the ready line: {e}")))?;
    serve(listener, state, args.api_key.as_deref().map(ApiKey::new)).await
}

/// Serves until SIGTERM or SIGINT; then stops every hive this queen started.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    key: Option<ApiKey>,
) -> Result<(), Fatal> {
    let app = routes::router(state.clone(), key);
    let serving = rbee_http::daemon::serve(listener, app, state.shutdown.clone());
    state.shutdown.cancelled().await;
    tracing::info!("stopping every hive this queen started");
    state.hives.stop_all().await;
    serving.finish(std::time::Duration::from_secs(5)).await;
    tracing::info!("queen stopped");
    Ok(())
}
