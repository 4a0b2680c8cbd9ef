//! Wire types of Ollama's API as the queen serves it (`/api/...`), with Ollama's field names,
//! so chat UIs, editor plugins and home-automation tools that speak Ollama work unchanged.
//! Model names are the ids `GET /v1/models` lists: `<model ref>` or `<node>/<model ref>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /api/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    pub version: String,
}

/// What Ollama reports of a model file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDetails {
    pub parent_model: String,
    pub format: String,
    pub family: String,
    pub families: Vec<String>,
    /// e.g. `135M`.
    pub parameter_size: String,
    pub quantization_level: String,
}

/// One model of `GET /api/tags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTag {
    pub name: String,
    pub model: String,
    /// RFC 3339.
    pub modified_at: String,
    pub size: u64,
    /// The file's sha256 when the hive knows it.
    pub digest: String,
    pub details: ModelDetails,
}

/// `GET /api/tags`: the models in every node's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagsResponse {
    pub models: Vec<ModelTag>,
}

/// One model of `GET /api/ps`: a running worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningModel {
    pub name: String,
    pub model: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
    /// RFC 3339: when it was last busy plus a client's keep-alive (without one, the hive's idle
    /// timeout applies from that moment).
    pub expires_at: String,
    pub size_vram: u64,
}

/// `GET /api/ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsResponse {
    pub models: Vec<RunningModel>,
}

/// The body of `/api/show`, `/api/pull` and `/api/delete`: a model name (`name` is the older
/// spelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// `/api/pull`: stream progress (the default) or answer once done.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `/api/pull`: accepted; rbee's downloads always verify.
    #[serde(default)]
    pub insecure: Option<bool>,
    /// `/api/show`: accepted; the answer is always the full one.
    #[serde(default)]
    pub verbose: Option<bool>,
}

impl ModelRequest {
    pub fn model_name(&self) -> Option<&str> {
        self.model.as_deref().or(self.name.as_deref())
    }
}

/// `POST /api/show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowResponse {
    pub modelfile: String,
    pub parameters: String,
    pub template: String,
    pub details: ModelDetails,
    /// GGUF metadata, under Ollama's keys (`general.architecture`, `<arch>.context_length`…).
    pub model_info: BTreeMap<String, serde_json::Value>,
    /// `completion`, and `tools` (rbee offers tools to every chat model).
    pub capabilities: Vec<String>,
    pub modified_at: String,
}

/// One line of `POST /api/pull`'s stream (and its single answer without streaming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
}

/// `options` of `/api/chat` and `/api/generate`. The ones rbee acts on are named; others
/// Ollama knows (`repeat_penalty`, `num_thread`, `mirostat`…) are accepted and ignored, as
/// Ollama ignores options a model does not use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Options {
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// At most this many tokens; -1 (or absent) until the model stops or the context ends.
    #[serde(default)]
    pub num_predict: Option<i64>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// The context the request may use, prompt plus answer (at most the model's own).
    #[serde(default)]
    pub num_ctx: Option<usize>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(flatten)]
    pub ignored: BTreeMap<String, serde_json::Value>,
}

/// A chat message, Ollama's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message: the function it answers (Ollama names the tool, not a call id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub function: FunctionCall,
}

/// Ollama sends and returns a call's arguments as a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: serde_json::Value,
}

/// `tools[]`: OpenAI's function shape, which Ollama takes too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    #[serde(rename = "type", default = "function")]
    pub kind: String,
    pub function: crate::openai::FunctionDefinition,
}

fn function() -> String {
    "function".into()
}

/// `POST /api/chat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Option<Vec<ToolDefinition>>,
    /// `"json"` or a JSON schema.
    #[serde(default)]
    pub format: Option<serde_json::Value>,
    #[serde(default)]
    pub options: Option<Options>,
    /// Streams NDJSON unless `false`.
    #[serde(default)]
    pub stream: Option<bool>,
    /// How long the model stays loaded after this request: a duration (`"5m"`, seconds as a
    /// number); 0 unloads it once the answer is complete.
    #[serde(default)]
    pub keep_alive: Option<serde_json::Value>,
    /// Accepted; rbee's models do not think aloud separately.
    #[serde(default)]
    pub think: Option<serde_json::Value>,
}

/// `POST /api/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: Option<String>,
    /// A system message before the prompt (chat-templated requests only).
    #[serde(default)]
    pub system: Option<String>,
    /// The prompt is sent as it is, without the chat template.
    #[serde(default)]
    pub raw: Option<bool>,
    #[serde(default)]
    pub format: Option<serde_json::Value>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub keep_alive: Option<serde_json::Value>,
    #[serde(default)]
    pub images: Option<Vec<String>>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub context: Option<Vec<u32>>,
    #[serde(default)]
    pub think: Option<serde_json::Value>,
}

/// The timings and counts of a finished answer (on its last line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// `stop` or `length`.
    pub done_reason: String,
    /// Nanoseconds, as Ollama reports them.
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: usize,
    pub prompt_eval_duration: u64,
    pub eval_count: usize,
    pub eval_duration: u64,
}

/// One line of `/api/chat`'s stream, or its whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub model: String,
    pub created_at: String,
    pub message: Message,
    pub done: bool,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Done>,
}

/// One line of `/api/generate`'s stream, or its whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateResponse {
    pub model: String,
    pub created_at: String,
    pub response: String,
    pub done: bool,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Done>,
}

/// Ollama's error shape: `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

/// `format`: `"json"` for any JSON object, or a JSON schema; `Err` says what is wrong.
pub fn output_format(
    format: Option<&serde_json::Value>,
) -> Result<Option<crate::worker::OutputFormat>, String> {
    use crate::worker::OutputFormat;
    match format {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) if s == "json" => Ok(Some(OutputFormat::JsonObject)),
        Some(schema @ serde_json::Value::Object(_)) => Ok(Some(OutputFormat::JsonSchema {
            schema: schema.clone(),
        })),
        Some(other) => Err(format!(
            "`format` must be \"json\" or a JSON schema object, got {other}"
        )),
    }
}

/// Ollama's parameter size: `135M`, `1.2B`.
pub fn parameter_size(parameters: u64) -> String {
    match parameters {
        0 => String::new(),
        p if p >= 1_000_000_000 => format!("{:.1}B", p as f64 / 1e9),
        p if p >= 1_000_000 => format!("{}M", (p as f64 / 1e6).round()),
        p => format!("{p}"),
    }
}

/// `keep_alive` as a duration: seconds as a number, or `"5m"`, `"1h"`, `"30s"`, `"0"`; a
/// negative value means forever (`None`).
pub fn keep_alive(value: &serde_json::Value) -> Result<Option<std::time::Duration>, String> {
    let bad = || format!("`keep_alive` must be a duration like \"5m\" or seconds, got {value}");
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(bad)?,
        serde_json::Value::String(s) => {
            let s = s.trim();
            let (number, unit) = s
                .find(|c: char| c.is_ascii_alphabetic())
                .map_or((s, "s"), |at| s.split_at(at));
            let n: f64 = number.trim().parse().map_err(|_| bad())?;
            let per = match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            n * per
        }
        _ => return Err(bad()),
    };
    Ok((seconds >= 0.0).then(|| std::time::Duration::from_secs_f64(seconds)))
}

/// `keep_alive` as the seconds a task's worker stays once idle: absent or `null` is `None`
/// (the hive's idle timeout); forever is a very long time.
pub fn keep_alive_secs(value: Option<&serde_json::Value>) -> Result<Option<u64>, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => Ok(Some(keep_alive(v)?.map_or(u64::MAX / 2, |d| d.as_secs()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_reads_numbers_and_durations_and_negative_is_forever() {
        use std::time::Duration;
        let k = |v: serde_json::Value| keep_alive(&v);
        assert_eq!(k(serde_json::json!(0)).unwrap(), Some(Duration::ZERO));
        assert_eq!(
            k(serde_json::json!("5m")).unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            k(serde_json::json!("30s")).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(k(serde_json::json!("0")).unwrap(), Some(Duration::ZERO));
        assert_eq!(k(serde_json::json!(-1)).unwrap(), None);
        assert!(k(serde_json::json!("soon")).is_err());
    }

    #[test]
    fn format_is_json_or_a_schema() {
        use crate::worker::OutputFormat;
        assert_eq!(output_format(None).unwrap(), None);
        let json = serde_json::json!("json");
        assert_eq!(
            output_format(Some(&json)).unwrap(),
            Some(OutputFormat::JsonObject)
        );
        let schema = serde_json::json!({"type": "object"});
        assert!(matches!(
            output_format(Some(&schema)).unwrap(),
            Some(OutputFormat::JsonSchema { .. })
        ));
        assert!(output_format(Some(&serde_json::json!("yaml"))).is_err());
    }

    #[test]
    fn parameter_sizes_read_as_ollama_writes_them() {
        assert_eq!(parameter_size(134_515_008), "135M");
        assert_eq!(parameter_size(1_235_814_400), "1.2B");
    }

    #[test]
    fn unknown_options_are_kept_aside_not_refused() {
        let o: Options =
            serde_json::from_str(r#"{"temperature":0,"num_predict":5,"repeat_penalty":1.1}"#)
                .unwrap();
        assert_eq!(o.num_predict, Some(5));
        assert!(o.ignored.contains_key("repeat_penalty"));
    }
}
