//! The `rbee` command line: every subcommand and flag, with the help `--help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rbee_api::BackendChoice;

/// rbee: run LLM inference on the machines of your home lab from one command.
///
/// `rbee infer --prompt "..."` works on a fresh machine: without a running queen-rbee, rbee
/// starts one for the command and stops it (and everything it started) afterwards.
///
/// Examples: `rbee infer --prompt "Why is the sky blue?"`; `rbee chat`;
/// `rbee setup add-node --name workstation --ssh-host 192.168.1.20 --ssh-user me`.
#[derive(Debug, Parser)]
#[command(name = "rbee", version, about, long_about)]
pub struct Cli {
    /// Configuration file (default: $RBEE_CONFIG, ~/.config/rbee/config.toml, /etc/rbee/config.toml).
    #[arg(long, global = true, env = "RBEE_CONFIG")]
    pub config: Option<PathBuf>,

    /// URL of queen-rbee (default from the configuration, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "RBEE_QUEEN_URL")]
    pub queen_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream a completion from a model on a node.
    ///
    /// Examples: `rbee infer --prompt "Why is the sky blue?"`;
    /// `echo "Summarize: ..." | rbee infer --json --max-tokens 64`.
    Infer(InferArgs),
    /// Chat with a model in the terminal, turn after turn.
    ///
    /// The model stays loaded between turns. Ctrl+C stops an answer, Ctrl+D or /exit
    /// leaves; /clear, /model <ref>, /system <text> and /help work between turns. Example:
    /// `rbee chat --model hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q8_0 --system "Be brief."`
    Chat(ChatArgs),
    /// List, pull, remove and inspect the models of every node.
    ///
    /// Example: `rbee models list`, then `rbee models pull hf:<org>/<repo>:Q4_K_M --node workstation`.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// The workers loaded on every node: model, backend, slots, memory, time until unloaded.
    ///
    /// Example: `rbee ps`, or `rbee ps --json` for scripts.
    Ps(JsonFlag),
    /// Register, list, remove and install nodes.
    ///
    /// Example: `rbee setup add-node --name workstation --ssh-host 192.168.1.20 --ssh-user me`,
    /// then `rbee setup install --node workstation`.
    #[command(subcommand)]
    Setup(SetupCommand),
    /// Workers across all nodes.
    ///
    /// Example: `rbee workers list`, `rbee workers shutdown --id worker-1a2b3c4d5e6f`.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// Logs of a node's hive and workers.
    ///
    /// Example: `rbee logs --node workstation --follow`.
    Logs(LogsArgs),
    /// Check every prerequisite and print one line each.
    ///
    /// Example: `rbee doctor` (exits 1 when something is missing, saying how to fix it).
    Doctor,
    /// Copy the binaries into ~/.local/bin (or /usr/local/bin) and create the config.
    ///
    /// Example: `rbee install --service` also runs the queen as a systemd user service.
    Install(InstallArgs),
    /// Print a shell completion script.
    ///
    /// Example: `rbee completions bash > ~/.local/share/bash-completion/completions/rbee`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The models in each node's catalog, with sizes and free disk space.
    ///
    /// Example: `rbee models list --node workstation`.
    #[command(visible_alias = "ls")]
    List {
        /// Only this node (default: every node).
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Download a model into a node's catalog, with a progress bar. A broken or interrupted
    /// download resumes where it stopped when pulled again.
    ///
    /// Example: `rbee models pull hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q8_0 --node workstation`.
    Pull {
        /// hf:<org>/<repo>[@<revision>][:<QUANT>] or file:<absolute path>.
        model: String,
        #[arg(long, default_value = rbee_api::NodeName::LOCALHOST)]
        node: String,
    },
    /// Remove a model from a node's catalog, and its file if the hive downloaded it (a
    /// `file:` model's file is yours and stays). Refused while a worker runs the model.
    ///
    /// Example: `rbee models rm hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q8_0 --node workstation`.
    #[command(visible_alias = "remove")]
    Rm {
        model: String,
        #[arg(long, default_value = rbee_api::NodeName::LOCALHOST)]
        node: String,
    },
    /// Set how a model's workers on a node run it: a chat template instead of the one in its
    /// file (checked to compile first) and a smaller context (less memory per slot, so more
    /// slots). Settings left out go back to the file's. Refused while a worker runs the model.
    ///
    /// Example: `rbee models set hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF --chat-template zephyr.jinja --context-length 4096 --node workstation`.
    Set {
        model: String,
        /// A Jinja chat template file (the language of GGUF's `tokenizer.chat_template`).
        #[arg(long, value_name = "FILE", value_parser = template_file)]
        chat_template: Option<String>,
        /// The context its workers hold, in tokens (at most the model's).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        context_length: Option<u32>,
        #[arg(long, default_value = rbee_api::NodeName::LOCALHOST)]
        node: String,
    },
    /// What a model's GGUF header says: architecture, parameters, context, quantization
    /// mix, chat template, licence.
    ///
    /// Example: `rbee models show hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q8_0`.
    Show {
        model: String,
        /// The node whose copy to read (default: the first node that has it).
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Where a conversation runs: the model and, optionally, the node.
#[derive(Debug, Args)]
pub struct Placement {
    /// Node to run on (`localhost` needs no registration). Without it the queen places the
    /// request: a node with an idle worker for the model, else one whose catalog has the
    /// model and passes the preflight, else the one with the most free memory.
    #[arg(long)]
    pub node: Option<String>,
    /// Model reference: hf:<org>/<repo>[@<revision>][:<QUANT>] or file:<absolute path>
    /// (default: `default_model` from the configuration, else the model fetched by
    /// scripts/fetch-model.sh).
    #[arg(long)]
    pub model: Option<String>,
    /// A system message before the conversation.
    #[arg(long)]
    pub system: Option<String>,
}

/// How tokens are generated.
#[derive(Debug, Args)]
pub struct Generation {
    /// At most this many tokens (default: until the model stops or its context is full).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature, 0 to 100; 0 is greedy.
    #[arg(long, default_value_t = 0.7, value_parser = finite)]
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass, in (0, 1].
    #[arg(long, value_parser = finite)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this text (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Context size of the worker for this conversation, in tokens (default: the model's).
    #[arg(long)]
    pub context_length: Option<usize>,
    /// How long the worker stays loaded once idle after the answer, e.g. `30m`, `0` to
    /// unload at once (default: the hive's idle timeout).
    #[arg(long, value_parser = rbee_api::duration::parse_duration)]
    pub keep_alive: Option<std::time::Duration>,
    /// A Jinja chat template file to render the conversation with instead of the model's
    /// own (the language of GGUF's `tokenizer.chat_template`).
    #[arg(long, value_name = "FILE", value_parser = template_file)]
    pub chat_template: Option<String>,
    /// cpu, cuda, metal, or auto: the node's best (cuda, then metal, then cpu).
    #[arg(long, default_value = "auto")]
    pub backend: BackendChoice,
    #[arg(long, default_value_t = 0)]
    pub device: u32,
}

#[derive(Debug, Args)]
pub struct InferArgs {
    #[command(flatten)]
    pub placement: Placement,
    /// The prompt, sent as a user message with the model's chat template. Without it, or
    /// with `-`, the prompt is read from standard input.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Send the prompt as raw text, without the chat template.
    #[arg(long, conflicts_with = "system")]
    pub raw: bool,
    /// Print one JSON object when done (text, usage, timings, node, model) instead of
    /// streaming the tokens.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub generation: Generation,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub placement: Placement,
    #[command(flatten)]
    pub generation: Generation,
}

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Register a node after testing the SSH connection to it.
    ///
    /// Example: `rbee setup add-node --name workstation --ssh-host 192.168.1.20 --ssh-user me
    /// --git-repo https://example.org/rbee.git --install-path /home/me/rbee --idle-timeout 30m`.
    AddNode(AddNodeArgs),
    /// List registered nodes.
    ///
    /// Example: `rbee setup list-nodes`, or `--json` for scripts.
    ListNodes(JsonFlag),
    /// Forget a node.
    ///
    /// Example: `rbee setup remove-node --name workstation`.
    RemoveNode {
        #[arg(long)]
        name: String,
    },
    /// Clone rbee on a node and build its binaries there, over SSH (with CUDA when the
    /// node has `nvcc`).
    ///
    /// Example: `rbee setup install --node workstation`.
    Install {
        #[arg(long)]
        node: String,
    },
    /// Change how the queen starts a node's hive (applies when its hive next starts).
    ///
    /// Example: `rbee setup set-node --name workstation --idle-timeout 30m --worker-slots 2`.
    /// Settings not given are reset to the hive's defaults.
    SetNode {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        hive: HiveSettingsArgs,
    },
}

/// How the queen starts a node's hive; each one left out is the hive's default.
#[derive(Debug, Args)]
pub struct HiveSettingsArgs {
    /// A worker idle this long is stopped, e.g. `30m` (hive default: 5m).
    #[arg(long, value_parser = rbee_api::duration::parse_duration)]
    pub idle_timeout: Option<std::time::Duration>,
    /// RAM (MB) the hive may give to models.
    #[arg(long)]
    pub memory_limit_mb: Option<u64>,
    /// Slots of each worker it starts, 1 to 64.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_slots: Option<u16>,
    /// Where it keeps downloaded models, a path on the node.
    #[arg(long)]
    pub models_dir: Option<String>,
    /// The first port of its workers (hive default: 8001).
    #[arg(long)]
    pub worker_port_start: Option<u16>,
}

#[derive(Debug, Args)]
pub struct AddNodeArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub ssh_host: String,
    #[arg(long, default_value_t = 22)]
    pub ssh_port: u16,
    #[arg(long)]
    pub ssh_user: String,
    /// Private key for the connection (default: your ssh configuration and agent).
    #[arg(long)]
    pub ssh_key: Option<String>,
    /// Repository to install rbee from (default: `[remote] git_repo` of the configuration).
    #[arg(long)]
    pub git_repo: Option<String>,
    #[arg(long, default_value = "main")]
    pub git_branch: String,
    /// Where rbee lives on the node (default: `[remote] git_repo_dir` of the configuration).
    #[arg(long)]
    pub install_path: Option<String>,
    /// Port of the node's hive.
    #[arg(long, default_value_t = rbee_api::queen::DEFAULT_HIVE_PORT)]
    pub hive_port: u16,
    #[command(flatten)]
    pub hive: HiveSettingsArgs,
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Workers on every node.
    ///
    /// Example: `rbee workers list --json`.
    List(JsonFlag),
    /// A node's hive and its workers' health.
    ///
    /// Example: `rbee workers health --node workstation`.
    Health {
        #[arg(long)]
        node: String,
    },
    /// Stop one worker (its id is in `rbee ps` or `rbee workers list`).
    ///
    /// Example: `rbee workers shutdown --id worker-1a2b3c4d5e6f`.
    Shutdown {
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[arg(long, default_value = rbee_api::NodeName::LOCALHOST)]
    pub node: String,
    /// Keep printing new lines.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install into /usr/local/bin and /etc/rbee instead of your home directory.
    #[arg(long)]
    pub system: bool,
    /// Also run `queen-rbee daemon` as a systemd service that starts at boot (a user unit;
    /// with --system, a system unit), so hives and loaded models outlive every command.
    #[arg(long)]
    pub service: bool,
}

/// A chat template file that cannot be read (clap prints it with its cause).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub(crate) struct TemplateFileError {
    path: String,
    source: std::io::Error,
}

/// The text of a chat template file.
pub(crate) fn template_file(path: &str) -> Result<String, TemplateFileError> {
    std::fs::read_to_string(path).map_err(|source| TemplateFileError {
        path: path.to_owned(),
        source,
    })
}

/// A number that is one: `NaN` and infinities are refused (JSON cannot carry them, so they
/// would silently become the default).
fn finite(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("{text} is not a finite number"))
    }
}

#[cfg(test)]
rbee_testkit::every_command_has_help_with_an_example!(Cli);
