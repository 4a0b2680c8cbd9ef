use std::io::Write;

use clap::Parser;
use llm_worker_rbee::args::Args;

fn main() {
    let args = Args::parse();
    if args.check {
        match llm_worker_rbee::check_model(&args) {
            Ok(info) => {
                println!("{}", serde_json::to_string(&info).unwrap_or_default());
                std::process::exit(0);
            }
            Err(fatal) => {
                let _ = writeln!(std::io::stderr(), "llm-worker-rbee: error: {fatal}");
                std::process::exit(1);
            }
        }
    }
    if let Some(threads) = args.threads {
        // Candle sizes its CPU thread pool from this variable when the pool is first used.
        // SAFETY: nothing else runs yet — the async runtime and every other thread start below.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        }
    }
    rbee_http::logging::init();
    let code = match tokio::runtime::Runtime::new() {
        Ok(runtime) => match runtime.block_on(llm_worker_rbee::run(args)) {
            Ok(()) => 0,
            Err(fatal) => {
                let _ = writeln!(std::io::stderr(), "llm-worker-rbee: error: {fatal}");
                1
            }
        },
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "llm-worker-rbee: error: cannot start the async runtime: {e}"
            );
            1
        }
    };
    // Leave without waiting for blocking threads (a load in progress) to finish.
    std::process::exit(code);
}
