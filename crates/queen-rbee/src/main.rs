use std::io::Write;

use clap::Parser;
use queen_rbee::args::Cli;

#[tokio::main]
async fn main() {
    rbee_http::logging::init();
    let code = match queen_rbee::run(Cli::parse().command).await {
        Ok(()) => 0,
        Err(fatal) => {
            let _ = writeln!(std::io::stderr(), "queen-rbee: error: {fatal}");
            1
        }
    };
    std::process::exit(code);
}
