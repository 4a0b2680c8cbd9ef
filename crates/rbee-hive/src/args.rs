//! Command line of `rbee-hive` (every daemon flag also reads an `RBEE_HIVE_*` variable and a key of
//! the configuration file's `[hive]` table: `rbee_http::config_file`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rbee_api::duration::parse_duration;

/// rbee-hive: the pool manager of one node. Keeps the node's model catalog, downloads
/// models, and starts, watches and stops the node's inference workers.
#[derive(Debug, Parser)]
#[command(
    name = "rbee-hive",
    version,
    about,
    long_about = None,
    after_help = "Example: `rbee-hive daemon --api-key <key> --idle-timeout 30m` (usually started by queen-rbee), or `rbee-hive detect`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hive daemon until SIGTERM, SIGINT or POST /v1/admin/shutdown.
    ///
    /// Example: `rbee-hive daemon --api-key <key> --memory-limit-mb 8192`; every flag can
    /// also be a key of the `[hive]` table of ~/.config/rbee/config.toml.
    Daemon(Box<DaemonArgs>),
    /// Print the compute backends and devices of this machine as JSON.
    ///
    /// Example: `rbee-hive detect`.
    Detect,
}

#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Configuration file whose `[hive]` table sets any of these flags, each a key spelled
    /// as the flag (default: ~/.config/rbee/config.toml, else /etc/rbee/config.toml). A
    /// flag, then its environment variable, wins over the file.
    #[arg(long, env = "RBEE_CONFIG")]
    pub config: Option<PathBuf>,

    /// TCP port to listen on (0 picks a free one; the address is logged).
    #[arg(long, env = "RBEE_HIVE_PORT", default_value_t = rbee_api::queen::DEFAULT_HIVE_PORT)]
    pub port: u16,

    /// Address to listen on; the queen must reach it.
    #[arg(long, env = "RBEE_HIVE_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Bearer key required on every endpoint but /v1/health.
    #[arg(long, env = "RBEE_HIVE_API_KEY", hide_env_values = true, value_parser = rbee_http::auth::parse_key)]
    pub api_key: String,

    /// Data directory: the catalog `models.db` and downloaded `models/` live here
    /// (default: $XDG_DATA_HOME/rbee or ~/.local/share/rbee).
    #[arg(long, env = "RBEE_HIVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Model catalog database (default: <data dir>/models.db). Created when missing.
    #[arg(long, env = "RBEE_HIVE_MODELS_DB")]
    pub models_db: Option<PathBuf>,

    /// Where downloaded models are stored (default: <data dir>/models).
    #[arg(long, env = "RBEE_HIVE_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// The llm-worker-rbee binary (default: next to rbee-hive, else on PATH).
    #[arg(long, env = "RBEE_HIVE_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,

    /// First port tried for workers; each worker gets the next free one.
    #[arg(long, env = "RBEE_HIVE_WORKER_PORT_START", default_value_t = 8001)]
    pub worker_port_start: u16,

    /// Address workers listen on.
    #[arg(long, env = "RBEE_HIVE_WORKER_HOST", default_value = "0.0.0.0")]
    pub worker_host: IpAddr,

    /// Host name or address others use to reach this node's hive and workers
    /// (default: 127.0.0.1 when listening on all interfaces).
    #[arg(long, env = "RBEE_HIVE_PUBLIC_HOST")]
    pub public_host: Option<String>,

    /// How often each worker's health is checked, e.g. `3s`, `500ms`. A worker that fails a
    /// check is marked unhealthy (no new request goes to it); after 3 in a row it is killed.
    #[arg(long, env = "RBEE_HIVE_HEALTH_INTERVAL", default_value = "3s", value_parser = parse_duration)]
    pub health_interval: Duration,

    /// A worker idle this long is shut down, e.g. `5m`.
    #[arg(long, env = "RBEE_HIVE_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Slots of each worker this hive starts when the request names none (default: the
    /// worker's own choice, 4 or what memory allows at the model's context).
    #[arg(long, env = "RBEE_HIVE_WORKER_SLOTS", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_slots: Option<u16>,

    /// RAM (MB) the hive may give to models; the preflight uses the smaller of this and
    /// the memory actually available (default: no limit beyond the machine's).
    #[arg(long, env = "RBEE_HIVE_MEMORY_LIMIT_MB")]
    pub memory_limit_mb: Option<u64>,

    /// Hugging Face endpoint for downloads.
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub hf_endpoint: String,

    /// Hugging Face access token for gated or private repositories.
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub hf_token: Option<String>,

    /// Stop (with every worker) when standard input reaches end of file. queen-rbee starts
    /// its local hive this way so the hive never outlives it.
    #[arg(long, env = "RBEE_HIVE_WATCH_STDIN")]
    pub watch_stdin: bool,

    /// Delay before the first download retry; it doubles on each further one.
    #[arg(long, env = "RBEE_HIVE_DOWNLOAD_BACKOFF", default_value = "100ms", value_parser = parse_duration)]
    pub download_backoff: Duration,
}

#[cfg(test)]
rbee_testkit::every_command_has_help_with_an_example!(Cli);
