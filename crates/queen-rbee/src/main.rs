use std::io::{IsTerminal, Write};

use clap::Parser;
use queen_rbee::args::Cli;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let code = match queen_rbee::run(Cli::parse().command).await {
        Ok(()) => 0,
        Err(fatal) => {
            let _ = writeln!(std::io::stderr(), "queen-rbee: error: {fatal}");
            1
        }
    };
    std::process::exit(code);
}
