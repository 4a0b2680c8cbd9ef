use std::io::Write;

use rbee_hive::args::Cli;

#[tokio::main]
async fn main() {
    rbee_http::logging::init();
    let cli = match rbee_http::config_file::parse::<Cli>("hive") {
        Ok(cli) => cli,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "rbee-hive: error: {message}");
            std::process::exit(1);
        }
    };
    let code = match rbee_hive::run(cli.command).await {
        Ok(()) => 0,
        Err(fatal) => {
            let _ = writeln!(std::io::stderr(), "rbee-hive: error: {fatal}");
            1
        }
    };
    std::process::exit(code);
}
