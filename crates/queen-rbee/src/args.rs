//! Command line of `queen-rbee` (every flag also reads an `RBEE_QUEEN_*` variable and a key of the
//! configuration file's `[queen]` table: `rbee_http::config_file`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rbee_api::duration::parse_duration;

/// queen-rbee: the orchestrator. Keeps the registry of nodes, starts their hives (over SSH,
/// or as a child process for `localhost`) and runs inference tasks through them.
#[derive(Debug, Parser)]
#[command(
    name = "queen-rbee",
    version,
    about,
    long_about = None,
    after_help = "Example: `queen-rbee daemon --port 8080 --api-key <key> --host 0.0.0.0` (usually started by `rbee`, or by `rbee install --service`)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the queen until SIGTERM or SIGINT; then every hive it started is stopped.
    ///
    /// Example: `queen-rbee daemon --port 8080 --queue-limit 64`; every flag can also be a
    /// key of the `[queen]` table of ~/.config/rbee/config.toml (`queue-limit = 64`).
    Daemon(Box<DaemonArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Configuration file whose `[queen]` table sets any of these flags, each a key spelled
    /// as the flag (default: ~/.config/rbee/config.toml, else /etc/rbee/config.toml). A
    /// flag, then its environment variable, wins over the file.
    #[arg(long, env = "RBEE_CONFIG")]
    pub config: Option<PathBuf>,

    /// TCP port to listen on (0 picks a free one; the address is logged).
    #[arg(long, env = "RBEE_QUEEN_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on. Anything but loopback requires --api-key.
    #[arg(long, env = "RBEE_QUEEN_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Bearer key clients must send (required when not listening on loopback).
    #[arg(long, env = "RBEE_QUEEN_API_KEY", hide_env_values = true, value_parser = rbee_http::auth::parse_key)]
    pub api_key: Option<String>,

    /// Node registry database (default: <data dir>/beehives.db). Created when missing.
    #[arg(long, env = "RBEE_QUEEN_DB")]
    pub db: Option<PathBuf>,

    /// Data directory (default: $XDG_DATA_HOME/rbee or ~/.local/share/rbee).
    #[arg(long, env = "RBEE_QUEEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// ssh client configuration passed to every ssh call with -F.
    #[arg(long, env = "RBEE_QUEEN_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,

    /// The rbee-hive binary for the local node (default: next to queen-rbee, else PATH).
    #[arg(long, env = "RBEE_QUEEN_HIVE_BIN")]
    pub hive_bin: Option<PathBuf>,

    /// Extra arguments for the local hive, e.g. "--idle-timeout 1m" (split on spaces).
    #[arg(
        long,
        env = "RBEE_QUEEN_LOCAL_HIVE_ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub local_hive_args: String,

    /// Where rbee's binaries are on remote nodes (default: <install_path>/target/release).
    #[arg(long, env = "RBEE_QUEEN_REMOTE_BINARY_PATH")]
    pub remote_binary_path: Option<String>,

    /// Model listed by the OpenAI-compatible `GET /v1/models` even before any node has it
    /// (default: the model `scripts/fetch-model.sh` fetched, when present).
    #[arg(long, env = "RBEE_DEFAULT_MODEL")]
    pub default_model: Option<rbee_api::ModelRef>,

    /// Stop (with every hive) when standard input reaches end of file. `rbee` starts its
    /// ephemeral queen this way, so the queen never outlives it however `rbee` ends.
    #[arg(long, env = "RBEE_QUEEN_WATCH_STDIN")]
    pub watch_stdin: bool,

    /// Tasks that may wait for one busy worker's slots; beyond that a task is refused with
    /// ALL_SLOTS_BUSY (0: never wait).
    #[arg(long, env = "RBEE_QUEEN_QUEUE_LIMIT", default_value_t = crate::lanes::DEFAULT_QUEUE_LIMIT)]
    pub queue_limit: usize,

    /// Slots of each worker the queen asks a hive to start (default: the hive's choice).
    #[arg(long, env = "RBEE_QUEEN_WORKER_SLOTS", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_slots: Option<u16>,

    /// How long a worker may take to load its model.
    #[arg(long, env = "RBEE_QUEEN_LOADING_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub loading_timeout: Duration,
}

#[cfg(test)]
rbee_testkit::every_command_has_help_with_an_example!(Cli);
