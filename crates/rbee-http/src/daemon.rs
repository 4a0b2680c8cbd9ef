//! What every rbee daemon does the same way: serve until told to stop, say it is ready,
//! find its data directory, find the binaries installed beside it; and, on the parent's side,
//! wait for a child daemon to say it is ready.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rbee_api::ready::{Ready, ReadyLine};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server started by [`serve`].
pub struct Serving {
    server: JoinHandle<std::io::Result<()>>,
    signals: JoinHandle<()>,
}

/// Serves `app` on `listener` in the background. SIGTERM or SIGINT cancel `shutdown`;
/// cancelling it (for any reason) stops accepting requests and lets open ones finish.
pub fn serve(listener: TcpListener, app: axum::Router, shutdown: CancellationToken) -> Serving {
    let signals = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            crate::shutdown::signal().await;
            shutdown.cancel();
        }
    });
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Serving { server, signals }
}

impl Serving {
    /// After shutdown was cancelled: waits up to `drain` for open connections to finish.
    pub async fn finish(self, drain: Duration) {
        self.signals.abort();
        match tokio::time::timeout(drain, self.server).await {
            Ok(Ok(Ok(()))) => tracing::info!("server stopped"),
            Ok(Ok(Err(e))) => tracing::warn!("server error: {e}"),
            Ok(Err(e)) => tracing::warn!("server task failed: {e}"),
            Err(_) => tracing::warn!("open connections did not finish within {drain:?}"),
        }
    }
}

/// Tells the parent process that `service` accepts connections at `url`: the one line this
/// daemon writes to its standard output ([`rbee_api::ready`]).
pub fn announce_ready(service: &str, url: &str) -> std::io::Result<()> {
    let line = ReadyLine {
        ready: Ready {
            service: service.to_owned(),
            url: url.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            api_version: rbee_api::API_VERSION.to_owned(),
            pid: std::process::id(),
        },
    };
    let json = serde_json::to_string(&line).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")?;
    out.flush()
}

/// Why a child daemon did not say it was ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("it exited or closed its output before it listened")]
    Closed,
    #[error("it did not listen within {0:?}")]
    Timeout(Duration),
    #[error("reading its output failed")]
    Io(#[source] std::io::Error),
    #[error("it printed {line:?} instead of its ready line")]
    Garbled {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Waits up to `limit` for a child daemon's ready line on its standard output (`stdout`);
/// what it announced, and the rest of its output.
pub async fn await_ready<R: AsyncRead + Unpin>(
    stdout: R,
    limit: Duration,
) -> Result<(Ready, Lines<BufReader<R>>), NotReady> {
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(limit, lines.next_line())
        .await
        .map_err(|_| NotReady::Timeout(limit))?
        .map_err(NotReady::Io)?
        .ok_or(NotReady::Closed)?;
    let ready: ReadyLine =
        serde_json::from_str(&line).map_err(|source| NotReady::Garbled { line, source })?;
    Ok((ready.ready, lines))
}

/// No data directory could be found.
#[derive(Debug, thiserror::Error)]
#[error("cannot find a data directory: set --data-dir or HOME")]
pub struct NoDataDir;

/// The data directory: `explicit`, else [`rbee_api::dirs::data_dir`].
pub fn data_dir(explicit: Option<&Path>) -> Result<PathBuf, NoDataDir> {
    match explicit {
        Some(dir) => Ok(dir.to_owned()),
        None => rbee_api::dirs::data_dir().ok_or(NoDataDir),
    }
}

/// The rbee binary `name` installed next to the running one, if it is there.
pub fn sibling_binary(name: &str) -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(name))
        .filter(|p| p.is_file())
}

/// [`sibling_binary`], else `name` to be found on PATH.
pub fn sibling_or_path(name: &str) -> PathBuf {
    sibling_binary(name).unwrap_or_else(|| PathBuf::from(name))
}
