//! `rbee`, the keeper: the command line users type.
//!
//! Every command talks to queen-rbee. When none answers at the configured URL, the command
//! starts one and stops it when done (ephemeral mode), which stops the hives and workers it
//! started too; a queen that was already running is left alone (persistent mode).
//!
//! Modules: [`cli`] (flags), [`config`] (the configuration file), [`queen`] (connecting),
//! [`output`] (tokens, narration, progress bars), [`commands`] (one per subcommand),
//! [`error`] (messages and exit codes).

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod output;
pub mod queen;

use crate::cli::{Cli, Command};
use crate::error::Result;
use crate::queen::Queen;

pub async fn run(cli: Cli) -> Result<()> {
    let config = config::load(cli.config.as_deref())?;
    let url = config.queen_url(cli.queen_url.as_deref());
    match &cli.command {
        Command::Install(args) => return commands::install::run(args),
        Command::Doctor => return commands::doctor::run(&config, url).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "rbee", &mut std::io::stdout());
            return Ok(());
        }
        _ => {}
    }
    let task = match &cli.command {
        Command::Infer(args) => Some(commands::infer::Target::of(args, &config)?),
        _ => None,
    };
    let queen = Queen::connect(&config, url).await?;
    let result = match (&cli.command, task) {
        (Command::Infer(args), Some(target)) => commands::infer::run(&queen, args, &target).await,
        (Command::Setup(cmd), _) => commands::setup::run(&queen, &config, cmd).await,
        (Command::Workers(cmd), _) => commands::workers::run(&queen, cmd).await,
        (Command::Logs(args), _) => commands::logs::run(&queen, args).await,
        (Command::Models(cmd), _) => commands::models::run(&queen, cmd).await,
        (Command::Ps(flag), _) => commands::ps::run(&queen, flag).await,
        (
            Command::Infer(_) | Command::Install(_) | Command::Doctor | Command::Completions { .. },
            _,
        ) => Ok(()),
    };
    queen.close().await;
    result
}
