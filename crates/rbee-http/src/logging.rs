//! Log output of the daemons: `RUST_LOG` filtering (default `info`), to stderr, coloured
//! only on a terminal.

use std::io::IsTerminal;

pub fn init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Never panic when stderr is gone (a worker whose hive died keeps running to exit).
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}
