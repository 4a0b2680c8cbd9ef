//! Answers of the generation endpoints, whole and streamed, their log-probabilities, and the
//! error shape OpenAI clients read.

use serde::{Deserialize, Serialize};

use super::tools::{ToolCall, ToolCallDelta};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: String,
    /// `null` when the answer only calls tools.
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: String,
    pub logprobs: Option<ChoiceLogprobs>,
}

/// A chat choice's `logprobs`: one entry per generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

impl From<&crate::worker::TokenProb> for TopLogprob {
    fn from(p: &crate::worker::TokenProb) -> Self {
        Self {
            token: p.token.clone(),
            logprob: p.logprob,
            bytes: p.bytes.clone(),
        }
    }
}

impl ChoiceLogprobs {
    pub fn new(tokens: &[crate::worker::TokenLogprob]) -> Self {
        let content = (tokens.iter())
            .map(|t| ChatTokenLogprob {
                token: t.chosen.token.clone(),
                logprob: t.chosen.logprob,
                bytes: t.chosen.bytes.clone(),
                top_logprobs: t.top.iter().map(TopLogprob::from).collect(),
            })
            .collect();
        Self { content }
    }
}

/// A completion choice's `logprobs` (the legacy shape): parallel lists, one entry per token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    /// Each position's most likely tokens and their log-probabilities.
    pub top_logprobs: Vec<std::collections::BTreeMap<String, f32>>,
    /// Where each token's text starts in the answer, in bytes.
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// The entries for `tokens`, the first of which starts `offset` bytes into the answer.
    pub fn new(tokens: &[crate::worker::TokenLogprob], mut offset: usize) -> Self {
        let mut out = Self::default();
        for t in tokens {
            out.tokens.push(t.chosen.token.clone());
            out.token_logprobs.push(t.chosen.logprob);
            let top = t.top.iter().map(|p| (p.token.clone(), p.logprob));
            out.top_logprobs.push(top.collect());
            out.text_offset.push(offset);
            offset += t.chosen.bytes.len();
        }
        out
    }
}

/// The answer of a non-streaming chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<String>,
    pub logprobs: Option<ChoiceLogprobs>,
}

/// One event of a streaming chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// `null` on every chunk but the last when usage was asked for.
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    pub finish_reason: Option<String>,
    pub logprobs: Option<CompletionLogprobs>,
}

/// The answer of a completion, and (with partial text) each event of a streaming one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: Option<Usage>,
}

/// An error answer of the OpenAI routes: rbee's envelope fields plus OpenAI's `type` and
/// `param` (always present, `null` when no field is at fault), so both kinds of client read
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorObject,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub code: crate::ErrorCode,
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ErrorResponse {
    /// `envelope` as OpenAI clients expect it, `param` naming the offending field.
    pub fn new(envelope: &crate::ErrorEnvelope, param: Option<&str>) -> Self {
        let kind = match envelope.error.code.http_status() {
            401 => "authentication_error",
            404 => "not_found_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        };
        Self {
            error: ErrorObject {
                code: envelope.error.code,
                message: envelope.error.message.clone(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                details: envelope.error.details.clone(),
            },
        }
    }
}

/// One `data:` item of a streamed answer: a chunk of either endpoint, or the error that ended
/// it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StreamItem {
    Chat(ChatCompletionChunk),
    Completion(Completion),
    Error(ErrorResponse),
}

/// A whole (not streamed) answer of either endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Chat(ChatCompletion),
    Completion(Completion),
}

/// `finish_reason` for rbee's stop reason: `length` when the token limit ended the answer.
pub fn finish_reason(stop: crate::worker::StopReason) -> &'static str {
    match stop {
        crate::worker::StopReason::MaxTokens => "length",
        _ => "stop",
    }
}
