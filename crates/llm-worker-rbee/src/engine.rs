//! A loaded model ready to serve: weights, tokenizer and chat template, plus the generation
//! loop that turns one validated request into a stream of events.
//!
//! Generation runs on a blocking thread; it reports through a callback and watches a
//! cancellation token between tokens, so a cancel (DELETE or client gone) stops it within
//! one token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use rbee_api::worker::{
    ComputeEngine, ComputePath, EndEvent, InferenceEvent, InferenceRequest, ModelInfo, StopReason,
    TokenEvent,
};
use rbee_api::{ErrorCode, ErrorEnvelope, JobId, Narration};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::chat_template::{ChatTemplate, ChatTemplateError, UsualTemplate};
use crate::cpu;
use crate::error::WorkerError;
use crate::llama::{Llama, LoadError, LoadStep};
use crate::model_file::ModelFile;
use crate::sampler::{Sampler, SamplingParams};
use crate::text_stream::TextStream;
use crate::tokenizer::Tokenizer;

const ACTOR: &str = "llm-worker-rbee";
/// Prompt tokens run through the model per forward pass; bounds the attention scratch memory.
const PREFILL_CHUNK: usize = 256;

pub struct Engine {
    pub info: ModelInfo,
    model: Model,
    tokenizer: Arc<Tokenizer>,
    template: Result<ChatTemplate, ChatTemplateError>,
    /// Why chat messages are rendered with a template the file does not carry, if they are.
    template_note: Option<String>,
}

/// A request that passed validation: tokens and settings, ready to generate.
#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: JobId,
    pub prompt_tokens: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Said to the client before generating (the chat template the file lacks, say).
    pub note: Option<String>,
}

impl Engine {
    /// Loads `file` onto `device`, reporting each loaded layer to `progress`; on the CPU the
    /// matrix products run as `cpu` says.
    pub fn load(
        file: &ModelFile,
        device: &Device,
        cpu: cpu::CpuConfig,
        progress: impl FnMut(LoadStep),
    ) -> Result<Self, LoadError> {
        let info = file.info()?;
        let tokenizer = Arc::clone(file.tokenizer());
        let text_of = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_text(i))
                .unwrap_or_default()
                .to_owned()
        };
        let (usual, template_note) = match &info.chat_template {
            Some(_) => (None, None),
            None => {
                let arch = file.config().arch;
                let usual = UsualTemplate::for_model(arch, |t| tokenizer.token_id(t).is_some());
                let note = format!(
                    "the model file has no chat template; chat messages use the usual {} format of `{}`",
                    usual.name(),
                    arch.name()
                );
                tracing::info!("{note}");
                (Some(usual.source()), Some(note))
            }
        };
        let template = ChatTemplate::new(
            info.chat_template.as_deref().or(usual),
            &text_of(tokenizer.bos_token_id()),
            &text_of(tokenizer.eos_token_id()),
        );
        let model = Model::load(file, device, cpu, progress)?;
        let mut info = info;
        info.compute = Some(model.compute_path());
        Ok(Self {
            info,
            model,
            tokenizer,
            template,
            template_note,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Validates `req` against this model and tokenizes its prompt.
    pub fn prepare(&self, req: &InferenceRequest) -> Result<Job, WorkerError> {
        let invalid = |msg: String| WorkerError::InvalidRequest(msg, serde_json::Value::Null);
        req.check().map_err(invalid)?;
        let text = match (&req.prompt, &req.messages) {
            (Some(p), _) => p.clone(),
            (None, Some(m)) => self
                .template
                .as_ref()
                .map_err(|e| invalid(e.to_string()))?
                .render(m)
                .map_err(|e| invalid(e.to_string()))?,
            (None, None) => return Err(invalid("`prompt` or `messages` is required".into())),
        };
        let ctx = self.info.context_length;
        let temperature = req
            .temperature
            .unwrap_or(InferenceRequest::DEFAULT_TEMPERATURE);
        let top_p = req.top_p.unwrap_or(1.0);
        let prompt_tokens = self.tokenizer.encode(&text);
        if prompt_tokens.is_empty() {
            return Err(invalid("the prompt has no tokens".into()));
        }
        let prompt = prompt_tokens.len();
        if prompt >= ctx {
            return Err(WorkerError::InvalidRequest(
                format!(
                    "the prompt ({prompt} tokens) does not fit the model's context of {ctx} tokens; shorten it"
                ),
                json!({"prompt_tokens": prompt, "context_length": ctx}),
            ));
        }
        // Without `max_tokens`, generation runs until EOS, a stop string or the context's end.
        let max_tokens = req.max_tokens.unwrap_or(ctx - prompt);
        if prompt + max_tokens > ctx {
            return Err(WorkerError::InvalidRequest(
                format!(
                    "prompt ({prompt} tokens) plus `max_tokens` ({max_tokens}) exceeds the model's context of {ctx} tokens"
                ),
                json!({"prompt_tokens": prompt, "max_tokens": max_tokens, "context_length": ctx}),
            ));
        }
        Ok(Job {
            job_id: req
                .job_id
                .clone()
                .unwrap_or_else(|| JobId::from_uuid(*uuid::Uuid::new_v4().as_bytes())),
            prompt_tokens,
            max_tokens,
            sampling: SamplingParams {
                temperature,
                top_p,
                top_k: req.top_k.unwrap_or(0),
                seed: req.seed.unwrap_or_else(rand::random),
            },
            stop: req.stop.clone().unwrap_or_default(),
            note: req
                .messages
                .as_ref()
                .and_then(|_| self.template_note.clone()),
        })
    }

    /// Generates for `job`, sending token and narration events to `emit`; returns the `end`
    /// event and, when the model failed part-way, why (the caller sends the last event once
    /// the slot is free).
    pub fn generate(
        &self,
        job: &Job,
        cancel: &CancellationToken,
        mut emit: impl FnMut(InferenceEvent),
    ) -> Generated {
        let started = Instant::now();
        emit(narrate(
            "inference_start",
            format!(
                "Starting inference (job {}, up to {} tokens)",
                job.job_id, job.max_tokens
            ),
        ));
        if let Some(note) = &job.note {
            emit(narrate("chat_template", note.clone()));
        }
        emit(narrate(
            "tokenize",
            format!("Tokenized prompt: {} tokens", job.prompt_tokens.len()),
        ));
        let mut run = Run::default();
        let (stop_reason, failure) = match self.run(job, cancel, &mut emit, &mut run) {
            Ok(reason) => (reason, None),
            Err(e) => {
                let message = crate::model_file::candle_message(&e);
                tracing::error!(job = %job.job_id, "inference failed: {message}");
                (StopReason::Cancelled, Some(message))
            }
        };
        let duration = started.elapsed();
        let decode_tps = rate(run.decode_steps, run.decode_time);
        emit(narrate(
            "inference_complete",
            format!(
                "Finished: {} tokens in {:.2} s ({decode_tps:.1} tok/s), stop reason {}",
                run.tokens_out,
                duration.as_secs_f64(),
                stop_reason.as_str()
            ),
        ));
        Generated {
            end: EndEvent {
                job_id: job.job_id.clone(),
                tokens_out: run.tokens_out,
                duration_ms: duration.as_millis() as u64,
                stop_reason,
                tokens_in: job.prompt_tokens.len(),
                prompt_ms: run.prompt_time.as_millis() as u64,
                prompt_tokens_per_sec: rate(job.prompt_tokens.len(), run.prompt_time),
                decode_tokens_per_sec: decode_tps,
            },
            failure,
        }
    }

    fn run(
        &self,
        job: &Job,
        cancel: &CancellationToken,
        emit: &mut impl FnMut(InferenceEvent),
        run: &mut Run,
    ) -> candle_core::Result<StopReason> {
        let mut cache = self.model.new_cache();
        let prefill = Instant::now();
        let mut logits = Vec::new();
        for chunk in job.prompt_tokens.chunks(PREFILL_CHUNK) {
            if cancel.is_cancelled() {
                return Ok(StopReason::Cancelled);
            }
            logits = self.model.forward(chunk, &mut cache)?;
        }
        run.prompt_time = prefill.elapsed();
        let mut sampler = Sampler::new(job.sampling);
        let mut text = TextStream::new(job.stop.clone());
        loop {
            if cancel.is_cancelled() {
                return Ok(StopReason::Cancelled);
            }
            let token = sampler.sample(&logits);
            if self.tokenizer.is_end_of_generation(token) {
                flush(&mut text, run.tokens_out.saturating_sub(1), emit);
                return Ok(StopReason::Eos);
            }
            let index = run.tokens_out;
            run.tokens_out += 1;
            let out = text.push(&self.tokenizer.token_bytes(token));
            if !out.text.is_empty() {
                emit(InferenceEvent::Token(TokenEvent {
                    t: out.text,
                    i: index,
                }));
            }
            if out.stopped {
                return Ok(StopReason::Stop);
            }
            if run.tokens_out >= job.max_tokens {
                flush(&mut text, index, emit);
                return Ok(StopReason::MaxTokens);
            }
            if cancel.is_cancelled() {
                return Ok(StopReason::Cancelled);
            }
            let step = Instant::now();
            logits = self.model.forward(&[token], &mut cache)?;
            run.decode_time += step.elapsed();
            run.decode_steps += 1;
        }
    }
}

/// The transformer: this crate's CPU path where it covers the model, Candle otherwise.
enum Model {
    Cpu(cpu::model::Transformer),
    /// With why the CPU path does not run it.
    Candle(Llama, String),
}

enum Cache {
    Cpu(cpu::kv::KvCache),
    Candle(crate::llama::KvCache),
}

impl Model {
    fn load(
        file: &ModelFile,
        device: &Device,
        cpu: cpu::CpuConfig,
        progress: impl FnMut(LoadStep),
    ) -> Result<Self, LoadError> {
        if !device.is_cpu() {
            let reason = "the backend is a GPU".to_owned();
            return Ok(Self::Candle(Llama::load(file, device, progress)?, reason));
        }
        match cpu::model::Transformer::unsupported_reason(file) {
            None => {
                let model = cpu::model::Transformer::load(file, cpu, progress)?;
                tracing::info!(
                    kernels = model.kernels().name(),
                    threads = cpu.threads,
                    "running on rbee's CPU kernels"
                );
                Ok(Self::Cpu(model))
            }
            Some(reason) => {
                let reason = format!("{reason}, which rbee's CPU kernels do not cover");
                tracing::warn!("running on Candle, the slower fallback: {reason}");
                Ok(Self::Candle(Llama::load(file, device, progress)?, reason))
            }
        }
    }

    fn compute_path(&self) -> ComputePath {
        match self {
            Self::Cpu(m) => ComputePath {
                engine: ComputeEngine::RbeeCpu,
                kernels: Some(m.kernels().name().to_owned()),
                reason: None,
            },
            Self::Candle(_, reason) => ComputePath {
                engine: ComputeEngine::Candle,
                kernels: None,
                reason: Some(reason.clone()),
            },
        }
    }

    fn new_cache(&self) -> Cache {
        match self {
            Self::Cpu(m) => Cache::Cpu(m.new_cache()),
            Self::Candle(m, _) => Cache::Candle(m.new_cache()),
        }
    }

    fn forward(&self, tokens: &[u32], cache: &mut Cache) -> candle_core::Result<Vec<f32>> {
        match (self, cache) {
            (Self::Cpu(m), Cache::Cpu(c)) => m.forward(tokens, c),
            (Self::Candle(m, _), Cache::Candle(c)) => m.forward(tokens, c),
            _ => candle_core::bail!("cache made by another model"),
        }
    }
}

/// What a generation came to: its figures, and the model's error if it failed part-way.
pub struct Generated {
    pub end: EndEvent,
    pub failure: Option<String>,
}

impl Generated {
    /// The stream's last event: `end`, or the error that cut the answer short — a model
    /// failure, or the worker stopping (its hive went away, or it was shut down) while the
    /// client still waited, which is never a success.
    pub fn outcome(self, stopping: bool) -> Result<EndEvent, ErrorEnvelope> {
        let tokens = self.end.tokens_out;
        if let Some(message) = self.failure {
            return Err(ErrorEnvelope::new(
                ErrorCode::Internal,
                format!("inference failed after {tokens} tokens: {message}"),
            ));
        }
        if stopping && self.end.stop_reason == StopReason::Cancelled {
            return Err(ErrorEnvelope::new(
                    ErrorCode::WorkerStopped,
                    format!(
                        "the worker was stopped after {tokens} tokens (its hive went away or shut it down)"
                    ),
                )
                .with_details(serde_json::json!({ "tokens_out": tokens })));
        }
        Ok(self.end)
    }
}

#[derive(Default)]
struct Run {
    tokens_out: usize,
    prompt_time: Duration,
    decode_time: Duration,
    decode_steps: usize,
}

fn flush(text: &mut TextStream, index: usize, emit: &mut impl FnMut(InferenceEvent)) {
    let rest = text.finish();
    if !rest.is_empty() {
        emit(InferenceEvent::Token(TokenEvent { t: rest, i: index }));
    }
}

fn narrate(action: &str, human: String) -> InferenceEvent {
    InferenceEvent::Narration(Narration::new(ACTOR, action, human))
}

fn rate(count: usize, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}
