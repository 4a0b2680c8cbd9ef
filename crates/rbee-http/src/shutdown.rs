//! Waiting for the signals that stop a daemon.

/// Resolves on SIGTERM or SIGINT (Ctrl+C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Cancels `token` when standard input reaches end of file: the parent holding the other end
/// of the pipe is gone (even if it was killed with SIGKILL). If the process has not exited
/// `hard_exit_after` later, it exits anyway, so nothing outlives its parent.
pub fn cancel_on_stdin_eof(
    token: tokio_util::sync::CancellationToken,
    hard_exit_after: std::time::Duration,
) {
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        token.cancel();
        tracing::warn!("standard input closed: the parent process is gone, shutting down");
        std::thread::sleep(hard_exit_after);
        std::process::exit(0);
    });
}
