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
        Command::Install(args) => return commands::install::run(args, &config, &url),
        Command::Doctor => return commands::doctor::run(&config, url).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "rbee", &mut std::io::stdout());
            return Ok(());
        }
        _ => {}
    }
    // What a conversation needs is checked (and a prompt on stdin read) before a queen starts.
    let infer = match &cli.command {
        Command::Infer(args) => Some((
            commands::infer::Target::of(&args.placement, &config)?,
            commands::infer::prompt_of(args)?,
        )),
        _ => None,
    };
    let chat = match &cli.command {
        Command::Chat(args) => Some(commands::infer::Target::of(&args.placement, &config)?),
        _ => None,
    };
    let queen = Queen::connect(&config, url).await?;
    let result = match (&cli.command, infer, chat) {
        (Command::Infer(args), Some((target, prompt)), _) => {
            commands::infer::run(&queen, args, &target, prompt).await
        }
        (Command::Chat(args), _, Some(target)) => commands::chat::run(&queen, args, target).await,
        (Command::Setup(cmd), ..) => commands::setup::run(&queen, &config, cmd).await,
        (Command::Workers(cmd), ..) => commands::workers::run(&queen, cmd).await,
        (Command::Logs(args), ..) => commands::logs::run(&queen, args).await,
        (Command::Models(cmd), ..) => commands::models::run(&queen, cmd).await,
        (Command::Ps(flag), ..) => commands::ps::run(&queen, flag).await,
        (
            Command::Infer(_)
            | Command::Chat(_)
            | Command::Install(_)
            | Command::Doctor
            | Command::Completions { .. },
            ..,
        ) => Ok(()),
    };
    queen.close().await;
    result
}
