//! Command-line flags (each also readable from an `RBEE_WORKER_*` environment variable).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use rbee_api::Backend;

/// The version line names the backends this binary was built for (`rbee-hive` reads it, so
/// `--backend auto` never picks one the worker cannot run).
fn version() -> &'static str {
    if cfg!(all(feature = "cuda", feature = "metal")) {
        concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, cuda, metal)")
    } else if cfg!(feature = "cuda") {
        concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, cuda)")
    } else if cfg!(feature = "metal") {
        concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, metal)")
    } else {
        concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu)")
    }
}

/// rbee inference worker: serves one GGUF model over HTTP and streams tokens as
/// Server-Sent Events. Normally started by `rbee-hive`; can be run by hand.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "llm-worker-rbee",
    version = version(),
    about,
    long_about = None,
    after_help = "Example: `llm-worker-rbee --model SmolLM2-135M-Instruct.Q4_1.gguf --port 8001 --api-key <key>`, then POST /v1/inference; or `llm-worker-rbee --check --model <file>` to check a file."
)]
pub struct Args {
    /// GGUF model file to load (llama-family architectures).
    #[arg(long, env = "RBEE_WORKER_MODEL")]
    pub model: PathBuf,

    /// A Jinja chat template file used for chat messages instead of the model's own
    /// (`tokenizer.chat_template`); a request's `chat_template` still wins.
    #[arg(long, env = "RBEE_WORKER_CHAT_TEMPLATE")]
    pub chat_template: Option<PathBuf>,

    /// Hold at most this many tokens of context per request (default and upper bound: the
    /// model's): each slot's cache is that much smaller, so more slots fit in memory.
    #[arg(long, env = "RBEE_WORKER_CONTEXT_LENGTH", value_parser = clap::value_parser!(u32).range(1..))]
    pub context_length: Option<u32>,

    /// The chat template's text itself, instead of --chat-template's file (how a hive passes
    /// a model's template set with `rbee models set`).
    #[arg(
        long,
        env = rbee_api::worker::CHAT_TEMPLATE_SOURCE_ENV,
        hide = true,
        conflicts_with = "chat_template"
    )]
    pub chat_template_source: Option<String>,

    /// Compute backend: cpu, cuda or metal. cuda and metal need a binary built with the
    /// Cargo feature of the same name.
    #[arg(long, env = "RBEE_WORKER_BACKEND", default_value = "cpu")]
    pub backend: Backend,

    /// Device ordinal for GPU backends (ignored for cpu).
    #[arg(long, env = "RBEE_WORKER_DEVICE", default_value_t = 0)]
    pub device: u32,

    /// TCP port to listen on (0 picks a free one); with --port-tries, the first free one
    /// from here. The address is printed in the ready line on stdout.
    #[arg(long, env = "RBEE_WORKER_PORT", default_value_t = 8001)]
    pub port: u16,

    /// Ports tried from --port on until one is free (a hive gives its workers a range).
    #[arg(long, env = "RBEE_WORKER_PORT_TRIES", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port_tries: u16,

    /// Address to listen on. The hive's network must reach it.
    #[arg(long, env = "RBEE_WORKER_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Bearer key required on every endpoint but /v1/health.
    #[arg(
        long,
        env = "RBEE_WORKER_API_KEY",
        hide_env_values = true,
        required_unless_present = "check",
        value_parser = rbee_http::auth::parse_key
    )]
    pub api_key: Option<String>,

    /// Hive to report to: the worker POSTs /v1/workers/failed there if the model cannot be
    /// loaded (the hive learns the worker listens from its ready line).
    #[arg(long, env = "RBEE_WORKER_HIVE_URL", requires = "worker_id")]
    pub hive_url: Option<String>,

    /// Identifier the hive gave this worker (required with --hive-url).
    #[arg(long, env = "RBEE_WORKER_ID")]
    pub worker_id: Option<rbee_api::WorkerId>,

    /// Requests served at once, batched into shared forward passes; each slot keeps its own
    /// KV cache (default: 4, fewer when 4 caches at the model's full context would take more
    /// than half the available memory).
    #[arg(long, env = "RBEE_WORKER_SLOTS", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub slots: Option<u16>,

    /// CPU threads for the matrix kernels (default: one per core).
    #[arg(long, env = "RBEE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Instruction set of the CPU kernels: `auto` (the fastest this CPU has), or `portable`,
    /// `avx2`, `avx512-vnni`, `avx-vnni` to compare paths (refused if the CPU lacks it).
    #[arg(long, env = "RBEE_WORKER_KERNELS", value_name = "ISA")]
    pub kernels: Option<String>,

    /// Model reference reported to the hive (default: `file:<model path>`).
    #[arg(long, env = "RBEE_WORKER_MODEL_REF")]
    pub model_ref: Option<rbee_api::ModelRef>,

    /// Only check the model file: print its metadata as JSON and exit (0 if the worker
    /// could serve it, 1 with the reason otherwise). Nothing listens.
    #[arg(long)]
    pub check: bool,

    /// With --check: the file holds only the start of the model, at least its GGUF header (as
    /// the hive fetches it before a download), so tensor data is not looked for.
    #[arg(long, requires = "check")]
    pub header_only: bool,

    /// Exit when standard input reaches end of file. The hive keeps the other end of the
    /// pipe, so the worker never outlives it, even when the hive is killed.
    #[arg(long, env = "RBEE_WORKER_WATCH_STDIN")]
    pub watch_stdin: bool,

    /// Host name or address others reach this worker at (default: the listening address,
    /// 127.0.0.1 for an unspecified one).
    #[arg(long, env = "RBEE_WORKER_PUBLIC_HOST")]
    pub public_host: Option<String>,
}

#[cfg(test)]
rbee_testkit::every_command_has_help_with_an_example!(Args);
