//! A loaded model ready to serve: weights, tokenizer and chat template, the validation that
//! turns a request into a [`Job`], and forward passes over slots' caches, which
//! [`crate::scheduler`] drives.

use std::sync::Arc;

use candle_core::Device;
use rbee_api::worker::{
    ComputeEngine, ComputePath, EndEvent, InferenceRequest, ModelInfo, RefusedDetails, StopReason,
    ToolChoice,
};
use rbee_api::{ErrorCode, ErrorEnvelope, JobId};

use crate::chat_template::{ChatTemplate, ChatTemplateError, UsualTemplate};
use crate::cpu;
use crate::error::WorkerError;
use crate::grammar::{Constraint, Grammars};
use crate::llama::{Llama, LoadError, LoadStep};
use crate::model_file::ModelFile;
use crate::sampler::SamplingParams;
use crate::tokenizer::Tokenizer;
use crate::tools::ToolUse;

pub struct Engine {
    pub info: ModelInfo,
    model: Model,
    tokenizer: Arc<Tokenizer>,
    template: Result<ChatTemplate, ChatTemplateError>,
    /// The texts of the BOS and EOS tokens, for templates given with a request.
    bos_eos: (String, String),
    grammars: Grammars,
    /// Why chat messages are rendered with a template the file does not carry, if they are.
    template_note: Option<String>,
}

/// What a worker is told to do differently from its model file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// A Jinja chat template instead of the file's.
    pub chat_template: Option<String>,
    /// At most this much context per request.
    pub context_length: Option<usize>,
}

impl Overrides {
    /// `info` as the worker serves the model.
    pub fn apply(&self, info: &mut ModelInfo) {
        if let Some(source) = &self.chat_template {
            info.chat_template = Some(source.clone());
        }
        if let Some(n) = self.context_length {
            info.context_length = info.context_length.min(n);
        }
    }
}

/// The template a request's messages are rendered with: its own, or the model's (which may
/// be missing).
type TemplateChoice<'a> = Result<std::borrow::Cow<'a, ChatTemplate>, &'a ChatTemplateError>;

/// A request that passed validation: tokens and settings, ready to generate.
#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: JobId,
    pub prompt_tokens: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Report log-probabilities with this many alternatives per token.
    pub logprobs: Option<usize>,
    /// The grammar the answer must follow.
    pub constraint: Option<Constraint>,
    /// The tools offered, to read the calls out of the answer.
    pub tools: Option<ToolUse>,
    /// Said to the client before generating (the chat template the file lacks, say).
    pub note: Option<String>,
}

impl Engine {
    /// Loads `file` onto `device`, reporting each loaded layer to `progress`; on the CPU the
    /// matrix products run as `cpu` says, and `overrides` replace what the file says.
    pub fn load(
        file: &ModelFile,
        device: &Device,
        cpu: cpu::CpuConfig,
        overrides: &Overrides,
        progress: impl FnMut(LoadStep),
    ) -> Result<Self, LoadError> {
        let info = file.info()?;
        let tokenizer = Arc::clone(file.tokenizer());
        let text_of = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_text(i))
                .unwrap_or_default()
                .to_owned()
        };
        let mut info = info;
        overrides.apply(&mut info);
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
        let bos_eos = (
            text_of(tokenizer.bos_token_id()),
            text_of(tokenizer.eos_token_id()),
        );
        let template = ChatTemplate::new(
            info.chat_template.as_deref().or(usual),
            &bos_eos.0,
            &bos_eos.1,
        );
        let model = Model::load(file, device, cpu, progress)?;
        info.compute = Some(model.compute_path());
        Ok(Self {
            info,
            model,
            grammars: Grammars::new(Arc::clone(&tokenizer)),
            tokenizer,
            template,
            bos_eos,
            template_note,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Validates `req` against this model and tokenizes its prompt.
    pub fn prepare(&self, req: &InferenceRequest) -> Result<Job, WorkerError> {
        let invalid = |msg: String| WorkerError::InvalidRequest(msg, RefusedDetails::None);
        req.check().map_err(invalid)?;
        let template = self.template_for(req)?;
        let tools = self.tool_use(req, &template)?;
        let text = match (&req.prompt, &req.messages) {
            (Some(p), _) => p.clone(),
            (None, Some(m)) => {
                let template = template.as_ref().map_err(|e| invalid(e.to_string()))?;
                let rendered = match &tools {
                    Some(t) => template
                        .render_prepared(&t.template_messages(m), t.template_tools().as_deref()),
                    None => template.render(m),
                };
                rendered.map_err(|e| invalid(e.to_string()))?
            }
            (None, None) => return Err(invalid("`prompt` or `messages` is required".into())),
        };
        let ctx = (req.context_length).map_or(self.info.context_length, |c| {
            c.min(self.info.context_length)
        });
        let whose = if ctx < self.info.context_length {
            "the requested context (`context_length`)"
        } else {
            "the model's context"
        };
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
                    "the prompt ({prompt} tokens) does not fit {whose} of {ctx} tokens; shorten it"
                ),
                RefusedDetails::Context {
                    prompt_tokens: prompt,
                    max_tokens: None,
                    context_length: ctx,
                },
            ));
        }
        // Without `max_tokens`, generation runs until EOS, a stop string or the context's end.
        let max_tokens = req.max_tokens.unwrap_or(ctx - prompt);
        if prompt + max_tokens > ctx {
            return Err(WorkerError::InvalidRequest(
                format!(
                    "prompt ({prompt} tokens) plus `max_tokens` ({max_tokens}) exceeds {whose} of {ctx} tokens"
                ),
                RefusedDetails::Context {
                    prompt_tokens: prompt,
                    max_tokens: Some(max_tokens),
                    context_length: ctx,
                },
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
                frequency_penalty: req.frequency_penalty.unwrap_or(0.0) as f32,
                presence_penalty: req.presence_penalty.unwrap_or(0.0) as f32,
                logit_bias: self.logit_bias(req)?,
            },
            stop: req.stop.clone().unwrap_or_default(),
            logprobs: req.logprobs,
            constraint: self.constraint(req, tools.as_ref())?,
            tools,
            note: (req.messages.as_ref())
                .filter(|_| req.chat_template.is_none())
                .and_then(|_| self.template_note.clone()),
        })
    }

    /// The template for `req`'s messages: its own `chat_template`, compiled (a template that
    /// does not compile is the request's error), else the model's.
    fn template_for(&self, req: &InferenceRequest) -> Result<TemplateChoice<'_>, WorkerError> {
        let Some(source) = &req.chat_template else {
            return Ok(self.template.as_ref().map(std::borrow::Cow::Borrowed));
        };
        let (bos, eos) = &self.bos_eos;
        ChatTemplate::new(Some(source), bos, eos)
            .map(|t| Ok(std::borrow::Cow::Owned(t)))
            .map_err(|e| {
                WorkerError::InvalidRequest(
                    format!("`chat_template`: {e}"),
                    RefusedDetails::Field {
                        field: "chat_template",
                    },
                )
            })
    }

    /// The request's tools, checked; `None` without tools or with `tool_choice: none`.
    fn tool_use(
        &self,
        req: &InferenceRequest,
        template: &TemplateChoice<'_>,
    ) -> Result<Option<ToolUse>, WorkerError> {
        let invalid = |message: String| {
            WorkerError::InvalidRequest(message, RefusedDetails::Field { field: "tools" })
        };
        let tools = req.tools.as_deref().unwrap_or_default();
        let choice = req.tool_choice.clone().unwrap_or(ToolChoice::Auto);
        if tools.is_empty() {
            return match choice {
                ToolChoice::Required | ToolChoice::Function(_) => Err(invalid(
                    "`tool_choice` asks for a call, but no `tools` were given".into(),
                )),
                _ => Ok(None),
            };
        }
        if choice == ToolChoice::None {
            return Ok(None);
        }
        if req.messages.is_none() {
            return Err(invalid(
                "`tools` need `messages`, not a raw `prompt`".into(),
            ));
        }
        if req.format.is_some() {
            return Err(invalid("`tools` and `format` cannot be combined".into()));
        }
        let template = template.as_ref().map_err(|e| invalid(e.to_string()))?;
        ToolUse::new(template.tool_style(), tools, choice)
            .map(Some)
            .map_err(invalid)
    }

    /// The grammar the answer must follow: the request's `format`, or its tools'.
    fn constraint(
        &self,
        req: &InferenceRequest,
        tools: Option<&ToolUse>,
    ) -> Result<Option<Constraint>, WorkerError> {
        let refused = |field: &'static str, e: String| {
            let message = format!("the output `{field}` cannot be enforced: {e}");
            WorkerError::InvalidRequest(message, RefusedDetails::Field { field })
        };
        if let Some(grammar) = tools.and_then(ToolUse::grammar) {
            let c = self.grammars.compile_tools(grammar);
            return c.map(Some).map_err(|e| refused("tools", e));
        }
        (req.format.as_ref())
            .map(|f| self.grammars.compile(f))
            .transpose()
            .map_err(|e| refused("format", e))
    }

    /// The request's logit bias, refused when it names a token outside the vocabulary.
    fn logit_bias(&self, req: &InferenceRequest) -> Result<Vec<(u32, f32)>, WorkerError> {
        let vocab = self.info.vocab_size;
        let bias = req.logit_bias.iter().flatten();
        if let Some((id, _)) = bias.clone().find(|(id, _)| **id as usize >= vocab) {
            return Err(WorkerError::InvalidRequest(
                format!("`logit_bias` names token {id}, but the vocabulary has {vocab} tokens"),
                RefusedDetails::Token {
                    token: *id,
                    vocab_size: vocab,
                },
            ));
        }
        Ok(bias.map(|(&id, &b)| (id, b as f32)).collect())
    }

    /// A KV cache for one slot.
    pub fn new_cache(&self) -> Cache {
        self.model.new_cache()
    }

    /// Keeps the first `len` positions of `cache` (fewer where the path cannot cut a cache:
    /// Candle's start over); returns how many it kept.
    pub fn keep_prefix(&self, cache: &mut Cache, len: usize) -> usize {
        match cache {
            Cache::Cpu(c) => {
                c.truncate(len);
                c.position()
            }
            Cache::Candle(c) if c.position() == len => len,
            Cache::Candle(_) => {
                *cache = self.model.new_cache();
                0
            }
        }
    }

    /// Runs every feed's tokens through the model in one pass where the path allows (the CPU
    /// path; Candle runs them one after another); the logits after each feed's last token
    /// when it asks for them.
    pub fn forward_batch(&self, feeds: &mut [Feed]) -> candle_core::Result<Vec<Option<Vec<f32>>>> {
        self.model.forward_batch(feeds)
    }
}

/// One sequence's tokens for a forward pass, with its cache.
pub struct Feed<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut Cache,
    pub logits: bool,
}

/// The transformer: this crate's CPU path where it covers the model, Candle otherwise.
enum Model {
    Cpu(cpu::model::Transformer),
    /// With why the CPU path does not run it.
    Candle(Llama, String),
}

/// One slot's keys and values, on the path its model runs on.
pub enum Cache {
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

    fn forward_batch(&self, feeds: &mut [Feed]) -> candle_core::Result<Vec<Option<Vec<f32>>>> {
        match self {
            Self::Cpu(m) => {
                let mut steps = Vec::with_capacity(feeds.len());
                for feed in feeds.iter_mut() {
                    let Cache::Cpu(cache) = &mut *feed.cache else {
                        candle_core::bail!("cache made by another model");
                    };
                    steps.push(cpu::model::Step {
                        tokens: feed.tokens,
                        cache,
                        logits: feed.logits,
                    });
                }
                m.forward_batch(&mut steps)
            }
            Self::Candle(m, _) => (feeds.iter_mut())
                .map(|feed| {
                    let Cache::Candle(cache) = &mut *feed.cache else {
                        candle_core::bail!("cache made by another model");
                    };
                    let logits = m.forward(feed.tokens, cache)?;
                    Ok(feed.logits.then_some(logits))
                })
                .collect(),
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
