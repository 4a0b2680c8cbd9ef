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
//! - [`clients`]: HTTP clients for hives and workers.
//! - [`tasks`]: the inference flow.
//! - [`routes`], [`state`], [`error`]: the HTTP service.

pub mod args;
pub mod clients;
pub mod error;
pub mod hives;
pub mod registry;
pub mod routes;
pub mod ssh;
pub mod state;
pub mod tasks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rbee_http::auth::ApiKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::{Command, DaemonArgs};
use crate::hives::{HiveSettings, Hives};
use crate::registry::{BeehiveRegistry, SqliteRegistry};
use crate::ssh::Ssh;
use crate::state::{AppState, QueenState};
use crate::tasks::Tasks;

/// A failure that stops the queen; its `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

pub async fn run(command: Command) -> Result<(), Fatal> {
    match command {
        Command::Daemon(args) => daemon(*args).await,
    }
}

fn data_dir(args: &DaemonArgs) -> Result<PathBuf, Fatal> {
    if let Some(dir) = &args.data_dir {
        return Ok(dir.clone());
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| Fatal("cannot find a data directory: set --data-dir or HOME".into()))?;
    Ok(base.join("rbee"))
}

fn sibling_or_path(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
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
        None => data_dir(&args)?.join("beehives.db"),
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
                .unwrap_or_else(|| sibling_or_path("rbee-hive")),
            local_hive_args: args
                .local_hive_args
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            remote_binary_path: args.remote_binary_path.clone(),
        },
        Ssh {
            config_file: args.ssh_config.clone(),
        },
        registry.clone(),
    );
    let state: AppState = Arc::new(QueenState {
        registry,
        hives,
        tasks: Tasks::default(),
        loading_timeout: args.loading_timeout,
        remote_binary_path: args.remote_binary_path.clone(),
        shutdown: CancellationToken::new(),
    });
    tracing::info!(
        "queen-rbee {} listening on http://{bound} (registry {})",
        env!("CARGO_PKG_VERSION"),
        db.display()
    );
    serve(listener, state, args.api_key.as_deref().map(ApiKey::new)).await
}

/// Serves until SIGTERM or SIGINT; then stops every hive this queen started.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    key: Option<ApiKey>,
) -> Result<(), Fatal> {
    let app = routes::router(state.clone(), key);
    let shutdown = state.shutdown.clone();
    let signals = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            rbee_http::shutdown::signal().await;
            shutdown.cancel();
        }
    });
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    });
    shutdown.cancelled().await;
    signals.abort();
    tracing::info!("stopping every hive this queen started");
    state.hives.stop_all().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    tracing::info!("queen stopped");
    Ok(())
}
