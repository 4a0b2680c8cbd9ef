use std::io::Write;

use clap::Parser;
use rbee_keeper::cli::Cli;
use rbee_keeper::error::KeeperError;

#[tokio::main]
async fn main() {
    let code = match rbee_keeper::run(Cli::parse()).await {
        Ok(()) => 0,
        Err(KeeperError::Interrupted) => 130,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "rbee: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
