//! The `llm-worker-rbee` HTTP API: inference, loading progress, readiness and the callbacks a
//! worker makes to its hive.

use serde::{Deserialize, Serialize};

/// The environment variable through which a hive hands a worker the chat template set for
/// its model (`rbee models set --chat-template`): the template's text.
pub const CHAT_TEMPLATE_SOURCE_ENV: &str = "RBEE_WORKER_CHAT_TEMPLATE_SOURCE";

use crate::sse::{EVENT_ERROR, EVENT_NARRATION, sse_stages};
use crate::{ErrorEnvelope, JobId, Narration, WorkerId};

/// `GET /v1/health`: answered without authentication as soon as the HTTP server listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
    pub version: String,
    pub api_version: String,
}

/// What the worker is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Loading,
    Idle,
    Busy,
    /// The hive's health checks are failing.
    Unhealthy,
    Failed,
}

impl WorkerState {
    /// Every state, for gauges that must list each one.
    pub const ALL: [Self; 5] = [
        Self::Loading,
        Self::Idle,
        Self::Busy,
        Self::Unhealthy,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loading => "loading",
            Self::Idle => "idle",
            Self::Busy => "busy",
            Self::Unhealthy => "unhealthy",
            Self::Failed => "failed",
        }
    }
}

/// `GET /v1/ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyResponse {
    pub ready: bool,
    pub state: WorkerState,
    pub model_loaded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_url: Option<String>,
    pub slots_total: usize,
    pub slots_available: usize,
    /// Set when `state` is `failed`: why the model could not be loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set once the model is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
}

/// What the worker read from the GGUF header of its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: String,
    pub name: Option<String>,
    /// `general.license`, when the file states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    pub architecture: String,
    pub layers: usize,
    pub context_length: usize,
    pub vocab_size: usize,
    pub embedding_length: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// The dominant weight format, e.g. `Q4_1`.
    pub quantization: String,
    pub tokenizer: String,
    pub chat_template: Option<String>,
    pub size_bytes: u64,
    /// Weights in the file (every tensor's values).
    #[serde(default)]
    pub parameters: u64,
    /// How many tensors each weight format holds (`Q4_K`: 27, `F32`: 109, …).
    #[serde(default)]
    pub tensor_formats: std::collections::BTreeMap<String, usize>,
    /// Memory one position of context takes in the attention cache, at most.
    #[serde(default)]
    pub kv_bytes_per_token: u64,
    /// Which implementation runs the model; set once it is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ComputePath>,
}

/// The implementation that computes a loaded model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputePath {
    pub engine: ComputeEngine,
    /// The instruction set rbee's CPU kernels chose (`avx-vnni`, `avx512-vnni`, `avx2`,
    /// `portable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
    /// Why the model runs on Candle, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComputeEngine {
    /// rbee's own quantized CPU kernels.
    #[serde(rename = "rbee-cpu")]
    RbeeCpu,
    /// Candle's tensor ops (GPU backends, and formats rbee's kernels lack).
    #[serde(rename = "candle")]
    Candle,
}

impl ComputePath {
    /// `rbee-cpu (avx-vnni)` or `candle (tensor X is Q3_K …)`, for tables and logs.
    pub fn describe(&self) -> String {
        match (self.engine, &self.kernels, &self.reason) {
            (ComputeEngine::RbeeCpu, Some(k), _) => format!("rbee-cpu ({k})"),
            (ComputeEngine::RbeeCpu, None, _) => "rbee-cpu".into(),
            (ComputeEngine::Candle, _, Some(r)) => format!("candle ({r})"),
            (ComputeEngine::Candle, _, None) => "candle".into(),
        }
    }
}

/// One message of `GET /v1/loading/progress`; the SSE `event:` name is the `stage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum LoadingEvent {
    /// A layer (or the embedding/output weights) reached the device.
    LoadingToVram {
        layers_loaded: usize,
        layers_total: usize,
        /// Megabytes of weights placed on the device so far (system RAM for the cpu backend).
        vram_mb: u64,
    },
    Ready,
    Failed {
        error: ErrorEnvelope,
    },
}

impl LoadingEvent {
    pub fn stage(&self) -> &'static str {
        match self {
            Self::LoadingToVram { .. } => "loading_to_vram",
            Self::Ready => "ready",
            Self::Failed { .. } => "failed",
        }
    }

    /// Whether the stream ends with this event.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::LoadingToVram { .. })
    }
}

sse_stages!(LoadingEvent);

/// A chat message for `POST /v1/inference` with `messages`: `system`, `user`, `assistant`
/// (with the calls it made, if any) or `tool` (a call's result).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: String,
    /// An assistant message's tool calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of its arguments (an object); without one, any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

/// Whether the answer may, must, or must not call a tool: `"none"`, `"auto"` (the default
/// with tools), `"required"`, or `{"function": "<name>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

/// A call the model made: `arguments` is JSON text (an object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// With tools offered, the answer as read from the model's output: its text and its calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolOutcome {
    pub content: String,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
}

/// The `details` of a worker's `INVALID_REQUEST`: what in the request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RefusedDetails {
    /// The prompt, with the answer asked for, does not fit the context.
    Context {
        prompt_tokens: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_tokens: Option<usize>,
        context_length: usize,
    },
    /// A token id beyond the vocabulary.
    Token { token: u32, vocab_size: usize },
    /// The field at fault.
    Field { field: &'static str },
    /// Nothing beyond the message (`null`).
    None,
}

/// `POST /v1/inference`. Exactly one of `prompt` and `messages` is given.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceRequest {
    /// Names the job for `DELETE /v1/inference/{job_id}`; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// A raw prompt, tokenized as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A conversation, rendered with the model's own chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// At most this many tokens; without it, until EOS, a stop string or the context's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// 0 means greedy decoding; default 0.7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// The same seed (with the same request) gives the same output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Generation ends before the first occurrence of any of these strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Lowers each token's logit by this times the count of its earlier occurrences in the
    /// answer (OpenAI's `frequency_penalty`, -2..=2; default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Lowers the logit of every token already in the answer by this (OpenAI's
    /// `presence_penalty`, -2..=2; default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Added to the logits of these token ids (-100..=100: -100 bans a token, 100 all but
    /// forces it), as OpenAI's `logit_bias`; JSON keys are the ids as strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<std::collections::BTreeMap<u32, f64>>,
    /// Report each generated token's log-probability, with this many of the most likely
    /// tokens at its position (0..=20), in the token events' `lp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<usize>,
    /// What the answer must be (constrained decoding); free text when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    /// Use at most this many positions of the model's context (prompt plus answer), as
    /// Ollama's `num_ctx`; the model's own context when absent or larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<usize>,
    /// Functions the model may call (with `messages`); the calls come in `end`'s `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// A Jinja chat template used for `messages` instead of the model's own (the same
    /// language as `tokenizer.chat_template`: `messages`, `add_generation_prompt`,
    /// `bos_token`, `eos_token`, `tools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Only streaming is supported; `false` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

impl InferenceRequest {
    /// The default sampling temperature.
    pub const DEFAULT_TEMPERATURE: f64 = 0.7;
    /// The most alternatives `logprobs` reports per token (OpenAI's limit too).
    pub const MAX_TOP_LOGPROBS: usize = 20;

    /// The checks that need no model — what a queen runs before it starts anything, and a
    /// worker before it tokenizes: one of `prompt` and `messages`, not empty; streaming;
    /// `max_tokens` at least 1; `temperature` in 0..=100; `top_p` in (0, 1]; penalties in
    /// -2..=2; biases in -100..=100; at most [`Self::MAX_TOP_LOGPROBS`] alternatives.
    pub fn check(&self) -> Result<(), String> {
        if self.stream == Some(false) {
            return Err("only streaming responses are supported (`stream: true`)".into());
        }
        match (&self.prompt, &self.messages) {
            (Some(_), Some(_)) => return Err("send either `prompt` or `messages`, not both".into()),
            (None, None) => return Err("`prompt` or `messages` is required".into()),
            (Some(p), None) if p.is_empty() => return Err("`prompt` is empty".into()),
            (None, Some(m)) if m.is_empty() => return Err("`messages` is empty".into()),
            _ => {}
        }
        if self.max_tokens == Some(0) {
            return Err("`max_tokens` must be at least 1".into());
        }
        if self.chat_template.is_some() && self.messages.is_none() {
            return Err("`chat_template` renders `messages`; a raw `prompt` has none".into());
        }
        if self.context_length == Some(0) {
            return Err("`context_length` must be at least 1".into());
        }
        let temperature = self.temperature.unwrap_or(Self::DEFAULT_TEMPERATURE);
        if !(0.0..=100.0).contains(&temperature) {
            return Err(format!(
                "`temperature` must be between 0 and 100, got {temperature}"
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(format!("`top_p` must be in (0, 1], got {top_p}"));
        }
        check_penalties(
            self.frequency_penalty,
            self.presence_penalty,
            self.logit_bias.as_ref(),
        )
        .map_err(|e| e.message)?;
        check_logprobs(self.logprobs, "logprobs").map_err(|e| e.message)?;
        Ok(())
    }
}

/// At most [`InferenceRequest::MAX_TOP_LOGPROBS`] alternatives per token, asked for by `field`.
pub fn check_logprobs(top: Option<usize>, field: &'static str) -> Result<(), OutOfRange> {
    match top {
        Some(n) if n > InferenceRequest::MAX_TOP_LOGPROBS => Err(OutOfRange {
            field,
            message: format!(
                "`{field}` can ask for at most {} alternatives per token, got {n}",
                InferenceRequest::MAX_TOP_LOGPROBS
            ),
        }),
        _ => Ok(()),
    }
}

/// An answer's required form, enforced token by token: any JSON object, or JSON that
/// validates against `schema` (objects, `required`, `additionalProperties`, arrays with
/// `minItems`/`maxItems`, `enum`, `const`, string lengths, numbers, integers, booleans, null,
/// `$defs`/`$ref`, `anyOf`, …; a keyword that cannot be enforced is refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputFormat {
    JsonObject,
    JsonSchema { schema: serde_json::Value },
}

/// A generation field outside its range: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    pub field: &'static str,
    pub message: String,
}

/// OpenAI's ranges for the penalties (-2..=2) and logit biases (-100..=100), checked by every
/// API a request can enter through.
pub fn check_penalties(
    frequency: Option<f64>,
    presence: Option<f64>,
    bias: Option<&std::collections::BTreeMap<u32, f64>>,
) -> Result<(), OutOfRange> {
    for (value, field) in [
        (frequency, "frequency_penalty"),
        (presence, "presence_penalty"),
    ] {
        if let Some(v) = value.filter(|v| !(-2.0..=2.0).contains(v)) {
            let message = format!("`{field}` must be between -2 and 2, got {v}");
            return Err(OutOfRange { field, message });
        }
    }
    if let Some((id, b)) = bias
        .into_iter()
        .flatten()
        .find(|(_, b)| !(-100.0..=100.0).contains(*b))
    {
        return Err(OutOfRange {
            field: "logit_bias",
            message: format!(
                "`logit_bias` values must be between -100 and 100, got {b} for token {id}"
            ),
        });
    }
    Ok(())
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    MaxTokens,
    Stop,
    Cancelled,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::MaxTokens => "max_tokens",
            Self::Stop => "stop",
            Self::Cancelled => "cancelled",
        }
    }
}

/// `event: token` — a piece of text; `i` is the index of the generated token that completed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEvent {
    pub t: String,
    pub i: usize,
    /// With `logprobs` asked for: the generated tokens whose text this event completes (a
    /// token can end inside a character, or in what might start a stop string, so an event
    /// may carry several, and the last event those held back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lp: Vec<TokenLogprob>,
}

impl TokenEvent {
    pub fn text(t: impl Into<String>, i: usize) -> Self {
        Self {
            t: t.into(),
            i,
            lp: Vec::new(),
        }
    }
}

/// A token and its log-probability (natural log) under the distribution it was drawn from:
/// the model's, after logit bias and penalties, before temperature and top-k/top-p.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    pub id: u32,
    /// Its text; a token that is only part of a character shows U+FFFD (see `bytes`).
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// One generated token with the most likely tokens at its position, most likely first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    #[serde(flatten)]
    pub chosen: TokenProb,
    #[serde(default)]
    pub top: Vec<TokenProb>,
}

/// `event: end` — the last event before `[DONE]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndEvent {
    pub job_id: JobId,
    pub tokens_out: usize,
    pub duration_ms: u64,
    pub stop_reason: StopReason,
    /// Number of prompt tokens.
    pub tokens_in: usize,
    /// How many of them a slot's cache already held (prompt reuse), so were not computed.
    pub tokens_reused: usize,
    /// Time spent on the prompt (prefill) before the first generated token.
    pub prompt_ms: u64,
    /// Prompt tokens computed per second (`tokens_in - tokens_reused` over the prefill).
    pub prompt_tokens_per_sec: f64,
    /// Generated tokens per second, measured after the first token.
    pub decode_tokens_per_sec: f64,
    /// With tools offered: the answer's text and calls, read from the tokens streamed before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolOutcome>,
}

crate::sse_events! {
    /// The events of an inference stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum InferenceEvent {
        Token(TokenEvent) = InferenceEvent::TOKEN,
        Narration(Narration) = EVENT_NARRATION,
        /// The last event before `[DONE]`.
        End(EndEvent) = InferenceEvent::END,
        Error(ErrorEnvelope) = EVENT_ERROR,
    }
}

impl InferenceEvent {
    pub const TOKEN: &'static str = "token";
    pub const END: &'static str = "end";
}

/// `POST <hive>/v1/workers/failed` — sent when the model cannot be loaded, before exiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerFailedCallback {
    pub worker_id: WorkerId,
    pub error: ErrorEnvelope,
}

/// `DELETE /v1/inference/{job_id}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResponse {
    pub job_id: JobId,
    pub cancelled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_events_are_tagged_by_stage() {
        let ev = LoadingEvent::LoadingToVram {
            layers_loaded: 3,
            layers_total: 30,
            vram_mb: 12,
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            text,
            r#"{"stage":"loading_to_vram","layers_loaded":3,"layers_total":30,"vram_mb":12}"#
        );
        assert_eq!(
            serde_json::to_string(&LoadingEvent::Ready).unwrap(),
            r#"{"stage":"ready"}"#
        );
    }

    #[test]
    fn loading_events_are_named_by_their_serde_stage() {
        use crate::sse::SseEvent;
        let events = [
            LoadingEvent::LoadingToVram {
                layers_loaded: 1,
                layers_total: 2,
                vram_mb: 3,
            },
            LoadingEvent::Ready,
            LoadingEvent::Failed {
                error: ErrorEnvelope::new(crate::ErrorCode::InvalidModel, "x"),
            },
        ];
        for e in events {
            let value: serde_json::Value = serde_json::from_str(&e.data()).unwrap();
            assert_eq!(value["stage"], e.event());
            assert_eq!(
                LoadingEvent::parse(e.event(), &e.data()).unwrap().unwrap(),
                e
            );
        }
        assert!(LoadingEvent::parse("failed", r#"{"stage":"ready"}"#).is_none());
    }

    #[test]
    fn inference_events_round_trip_through_name_and_data() {
        use crate::sse::SseEvent;
        let ev = InferenceEvent::Token(TokenEvent::text("Once", 0));
        assert_eq!(ev.data(), r#"{"t":"Once","i":0}"#);
        let back = InferenceEvent::parse(ev.event(), &ev.data())
            .unwrap()
            .unwrap();
        assert_eq!(back, ev);
        assert!(InferenceEvent::parse("mystery", "{}").is_none());
    }

    #[test]
    fn request_rejects_unknown_fields_and_wrong_types() {
        assert!(
            serde_json::from_str::<InferenceRequest>(r#"{"prompt":"x","max_token":3}"#).is_err()
        );
        assert!(
            serde_json::from_str::<InferenceRequest>(r#"{"prompt":"x","max_tokens":"3"}"#).is_err()
        );
        let ok: InferenceRequest =
            serde_json::from_str(r#"{"prompt":"x","max_tokens":3}"#).unwrap();
        assert_eq!(ok.max_tokens, Some(3));
    }
}
