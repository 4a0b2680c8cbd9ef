use std::io::Write;

use clap::Parser;
use clap::error::ErrorKind;
use rbee_keeper::cli::Cli;
use rbee_keeper::error::KeeperError;

#[tokio::main]
async fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::exit(1);
        }
        // A wrong flag or value: clap's first line, with the hint to --help, and exit 1.
        Err(e) => {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let _ = writeln!(std::io::stderr(), "rbee: {first} (see `rbee --help`)");
            std::process::exit(1);
        }
    };
    let code = match rbee_keeper::run(cli).await {
        Ok(()) => 0,
        Err(KeeperError::Interrupted) => 130,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "rbee: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
