use std::io::Write;

use queen_rbee::args::Cli;

#[tokio::main]
async fn main() {
    rbee_http::logging::init();
    let cli = match rbee_http::config_file::parse::<Cli>("queen") {
        Ok(cli) => cli,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "queen-rbee: error: {message}");
            std::process::exit(1);
        }
    };
    let code = match queen_rbee::run(cli.command).await {
        Ok(()) => 0,
        Err(fatal) => {
            let _ = writeln!(std::io::stderr(), "queen-rbee: error: {fatal}");
            1
        }
    };
    std::process::exit(code);
}
