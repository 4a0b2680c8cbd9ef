//! `llm-worker-rbee`: one process serving one GGUF model over HTTP.
//!
//! Start-up checks the model file before anything listens (a bad file is one clear line and
//! exit code 1), then serves HTTP while the weights load layer by layer, so the hive can watch
//! progress. One scheduler thread runs every request in progress in shared forward passes,
//! streaming tokens back as SSE.
//!
//! Modules:
//! - [`args`]: command-line flags.
//! - [`model_file`]: opening and checking a GGUF file; its metadata.
//! - [`tokenizer`]: GPT-2 BPE and SentencePiece tokenizers built from GGUF metadata.
//! - [`chat_template`]: the model's Jinja chat template.
//! - [`arch`]: the supported architectures, as one configuration of the transformer.
//! - [`cpu`]: the transformer on rbee's own quantized CPU kernels.
//! - [`llama`]: the transformer on Candle (GPU backends, and formats the CPU path lacks).
//! - [`sampler`], [`text_stream`]: choosing tokens; turning them into text safely.
//! - [`grammar`]: constrained decoding (JSON, JSON schemas) with llguidance.
//! - [`tools`]: offering functions through the chat template, reading the calls made.
//! - [`engine`]: the loaded model: validating requests, forward passes over slots' caches.
//! - [`scheduler`]: continuous batching of every request in progress, prompt reuse.
//! - [`state`], [`routes`], [`error`]: the HTTP service.
//! - [`hive_client`]: callbacks to the hive; [`metrics`]: what `GET /metrics` counts.
//! - [`requantize`]: writing a GGUF file in another quantization (tests and benchmarks).

pub mod arch;
pub mod args;
pub mod backend;
pub mod chat_template;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod grammar;
pub mod hive_client;
pub mod llama;
pub mod metrics;
pub mod model_file;
pub mod requantize;
pub mod routes;
pub mod sampler;
pub mod scheduler;
pub mod state;
pub mod text_stream;
pub mod tokenizer;
pub mod tools;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rbee_api::worker::{LoadingEvent, WorkerFailedCallback};
use rbee_api::{ErrorCode, ErrorEnvelope, ModelRef};
use rbee_http::auth::ApiKey;
use tokio::net::TcpListener;

use crate::args::Args;
use crate::cpu::CpuConfig;
use crate::cpu::kernels::Kernels;
use crate::engine::{Engine, Overrides};
use crate::hive_client::HiveClient;
use crate::model_file::ModelFile;
use crate::state::{AppState, Identity, WorkerState};

/// How long open streams get to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure that ends the worker; its `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fatal {
    pub code: ErrorCode,
    pub message: String,
}

impl Fatal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Checks `--model` the way a worker would before serving it; the model's metadata on
/// success. With `--header-only`, the file may hold just the start of the model (tensor
/// data is not looked for). A chat template given is compiled too, and reported as the
/// model's.
pub fn check_model(args: &Args) -> Result<rbee_api::worker::ModelInfo, Fatal> {
    let file = if args.header_only {
        ModelFile::open_header(&args.model).map_err(fatal_of)?
    } else {
        open_model(&args.model)?
    };
    let overrides = overrides_of(args)?;
    let mut info = (file.info()).map_err(|e| Fatal::new(ErrorCode::InvalidModel, e.to_string()))?;
    overrides.apply(&mut info);
    Ok(info)
}

fn fatal_of(e: model_file::ModelFileError) -> Fatal {
    let code = match e {
        model_file::ModelFileError::NotFound { .. }
        | model_file::ModelFileError::MissingShard { .. } => ErrorCode::ModelNotFound,
        _ => ErrorCode::InvalidModel,
    };
    Fatal::new(code, e.to_string())
}

fn open_model(path: &std::path::Path) -> Result<ModelFile, Fatal> {
    ModelFile::open(path).map_err(fatal_of)
}

/// Runs the worker until it is told to stop (Ok) or its model cannot be served (Err).
pub async fn run(args: Args) -> Result<(), Fatal> {
    let key = args
        .api_key
        .clone()
        .ok_or_else(|| Fatal::new(ErrorCode::InvalidRequest, "--api-key is required"))?;
    let hive = match args.hive_url.as_deref() {
        Some(url) => Some(HiveClient::new(url, &key).map_err(|e| {
            Fatal::new(
                ErrorCode::Internal,
                format!("cannot build an HTTP client: {e}"),
            )
        })?),
        None => None,
    };
    let result = serve_until_stopped(&args, &key).await;
    if let (Err(fatal), Some(hive), Some(id)) = (&result, &hive, &args.worker_id) {
        let body = WorkerFailedCallback {
            worker_id: id.clone(),
            error: ErrorEnvelope::new(fatal.code, fatal.message.clone()),
        };
        if let Err(e) = hive.failed(&body).await {
            tracing::warn!("could not report the failure to the hive: {e}");
        }
    }
    result
}

/// Binds the first free port of `port..port + tries`.
async fn listen(host: IpAddr, port: u16, tries: u16) -> Result<TcpListener, Fatal> {
    let mut last = None;
    for p in (port..=u16::MAX).take(usize::from(tries)) {
        match TcpListener::bind(SocketAddr::new(host, p)).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    let until = port.saturating_add(tries - 1);
    Err(Fatal::new(
        ErrorCode::Internal,
        format!(
            "cannot listen on {host} at any port from {port} to {until}: {}",
            last.map_or_else(|| "no port tried".to_owned(), |e| e.to_string())
        ),
    ))
}

async fn serve_until_stopped(args: &Args, key: &str) -> Result<(), Fatal> {
    let device = backend::device(args.backend, args.device).map_err(|e| {
        Fatal::new(
            ErrorCode::BackendUnavailable,
            rbee_http::error::with_causes(&e),
        )
    })?;
    let kernels = match args.kernels.as_deref() {
        None | Some("auto") => Kernels::detect(),
        Some(name) => Kernels::named(name)
            .map_err(|e| Fatal::new(ErrorCode::BackendUnavailable, e.to_string()))?,
    };
    let file = open_model(&args.model)?;
    let overrides = overrides_of(args)?;
    let listener = listen(args.host, args.port, args.port_tries).await?;
    let bound = listener
        .local_addr()
        .map_err(|e| Fatal::new(ErrorCode::Internal, e.to_string()))?;
    let host = match &args.public_host {
        Some(host) => host.clone(),
        None if bound.ip().is_unspecified() => IpAddr::from([127, 0, 0, 1]).to_string(),
        None => bound.ip().to_string(),
    };
    let public_url = format!("http://{host}:{}", bound.port());
    let identity = Identity {
        worker_id: match &args.worker_id {
            Some(id) => id.clone(),
            None => "standalone".parse().expect("a valid worker id"),
        },
        model_ref: match &args.model_ref {
            Some(model) => model.clone(),
            None => std::path::absolute(&args.model)
                .map_err(|e| e.to_string())
                .and_then(|path| ModelRef::file(&path).map_err(|e| e.to_string()))
                .map_err(|e| Fatal::new(ErrorCode::InvalidRequest, e))?,
        },
        backend: args.backend,
        device: args.device,
        public_url,
    };
    let slots = (args.slots).map_or_else(|| default_slots(&file, &overrides), usize::from);
    let state = WorkerState::new(identity, slots);
    let app = routes::router(state.clone(), ApiKey::new(key));
    tracing::info!(url = %state.identity.public_url, "Listening on http://{bound}");

    let serving = rbee_http::daemon::serve(listener, app, state.shutdown.clone());
    if args.watch_stdin {
        rbee_http::shutdown::cancel_on_stdin_eof(state.shutdown.clone(), DRAIN_TIMEOUT);
    }
    rbee_http::daemon::announce_ready("llm-worker-rbee", &state.identity.public_url).map_err(
        |e| {
            Fatal::new(
                ErrorCode::Internal,
                format!("cannot write the ready line: {e}"),
            )
        },
    )?;
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let cpu = CpuConfig { threads, kernels };
    let loaded = load(state.clone(), file, device, cpu, overrides).await;
    if loaded.is_err() {
        state.shutdown.cancel();
    }
    state.shutdown.cancelled().await;
    serving.finish(DRAIN_TIMEOUT).await;
    loaded
}

/// The slots for `file` when none were asked for: as many caches at its full context (or the
/// one `overrides` cap it to) as half the available memory holds, up to
/// [`scheduler::DEFAULT_SLOTS`].
fn default_slots(file: &ModelFile, overrides: &Overrides) -> usize {
    let c = file.config();
    let per_position = cpu::kv::KvCache::bytes_per_position(c.n_layer, c.n_kv_head, c.head_dim);
    let context = (overrides.context_length).map_or(c.context_length, |n| n.min(c.context_length));
    let cache_bytes = (per_position * context) as u64;
    let system = sysinfo::System::new_with_specifics(
        sysinfo::RefreshKind::nothing()
            .with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram()),
    );
    let available = (system.ok())
        .map(|s| s.available_memory())
        .filter(|&m| m > 0);
    let slots = scheduler::slots_for_memory(cache_bytes, available);
    tracing::info!(
        slots,
        cache_mb = cache_bytes / (1024 * 1024),
        "slots chosen for the model's context and the available memory"
    );
    slots
}

/// What the flags change from the model file: its chat template and context.
fn overrides_of(args: &Args) -> Result<Overrides, Fatal> {
    Ok(Overrides {
        chat_template: chat_template_of(args)?,
        context_length: args.context_length.map(|n| n as usize),
    })
}

/// The chat template that replaces the model's, if one is given (`--chat-template`'s file
/// or the text itself), read and compiled.
fn chat_template_of(args: &Args) -> Result<Option<String>, Fatal> {
    let (source, origin) = match (&args.chat_template_source, &args.chat_template) {
        (Some(text), _) => (text.clone(), "chat template".to_owned()),
        (None, Some(path)) => {
            let origin = format!("chat template {}", path.display());
            let text = std::fs::read_to_string(path)
                .map_err(|e| Fatal::new(ErrorCode::InvalidRequest, format!("{origin}: {e}")))?;
            (text, origin)
        }
        (None, None) => return Ok(None),
    };
    chat_template::ChatTemplate::new(Some(&source), "", "")
        .map_err(|e| Fatal::new(ErrorCode::InvalidRequest, format!("{origin}: {e}")))?;
    Ok(Some(source))
}

/// Loads the weights on a blocking thread, logging each layer to the loading log.
async fn load(
    state: AppState,
    file: ModelFile,
    device: candle_core::Device,
    cpu: CpuConfig,
    overrides: Overrides,
) -> Result<(), Fatal> {
    let path = file.path.clone();
    let progress_state = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        Engine::load(&file, &device, cpu, &overrides, |step| {
            progress_state.loading.push(LoadingEvent::LoadingToVram {
                layers_loaded: step.layers_loaded,
                layers_total: step.layers_total,
                vram_mb: step.bytes_loaded / (1024 * 1024),
            });
        })
    });
    let result = match task.await {
        Ok(Ok(engine)) => Ok(engine),
        Ok(Err(e)) => Err(format!("model file {}: {e}", path.display())),
        Err(e) => Err(format!("loading {} crashed: {e}", path.display())),
    };
    match result {
        Ok(engine) => {
            tracing::info!(
                model = engine.info.name.as_deref().unwrap_or("?"),
                layers = engine.info.layers,
                quantization = %engine.info.quantization,
                "model loaded, ready for inference"
            );
            state.set_engine(engine);
            Ok(())
        }
        Err(message) => {
            let fatal = Fatal::new(ErrorCode::InvalidModel, message);
            state.set_load_error(ErrorEnvelope::new(fatal.code, fatal.message.clone()));
            Err(fatal)
        }
    }
}
