//! What every rbee daemon does the same way: serve until told to stop, find its data
//! directory, find the binaries installed beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The data directory: `explicit`, else `$XDG_DATA_HOME/rbee`, else `~/.local/share/rbee`.
pub fn data_dir(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|base| base.join("rbee"))
        .ok_or_else(|| "cannot find a data directory: set --data-dir or HOME".to_owned())
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
