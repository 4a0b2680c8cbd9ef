use std::io::Write;

use clap::Parser;
use rbee_hive::args::Cli;

#[tokio::main]
async fn main() {
    rbee_http::logging::init();
    let code = match rbee_hive::run(Cli::parse().command).await {
        Ok(()) => 0,
        Err(fatal) => {
            let _ = writeln!(std::io::stderr(), "rbee-hive: error: {fatal}");
            1
        }
    };
    std::process::exit(code);
}
