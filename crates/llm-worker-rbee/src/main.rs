use std::io::IsTerminal;

use clap::Parser;
use llm_worker_rbee::args::Args;

fn main() {
    let args = Args::parse();
    if let Some(threads) = args.threads {
        // Candle sizes its CPU thread pool from this variable when the pool is first used.
        // SAFETY: nothing else runs yet — the async runtime and every other thread start below.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let code = match tokio::runtime::Runtime::new() {
        Ok(runtime) => match runtime.block_on(llm_worker_rbee::run(args)) {
            Ok(()) => 0,
            Err(fatal) => {
                eprintln!("llm-worker-rbee: error: {fatal}");
                1
            }
        },
        Err(e) => {
            eprintln!("llm-worker-rbee: error: cannot start the async runtime: {e}");
            1
        }
    };
    // Leave without waiting for blocking threads (a load in progress) to finish.
    std::process::exit(code);
}
