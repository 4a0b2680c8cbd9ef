use std::io::IsTerminal;

use clap::Parser;
use llm_worker_rbee::args::Args;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let code = match llm_worker_rbee::run(Args::parse()).await {
        Ok(()) => 0,
        Err(fatal) => {
            eprintln!("llm-worker-rbee: error: {fatal}");
            1
        }
    };
    // Leave without waiting for blocking threads (a load in progress) to finish.
    std::process::exit(code);
}
