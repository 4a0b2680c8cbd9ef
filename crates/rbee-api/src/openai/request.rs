//! The request bodies of `POST /v1/chat/completions` and `POST /v1/completions`: the fields
//! rbee honours, and the OpenAI fields it drops when their value changes nothing.

use serde::{Deserialize, Serialize};

use super::tools::{ToolCall, ToolChoiceOption, ToolDefinition};
use crate::worker::ChatMessage;

/// A request rbee cannot honour: why, and the field at fault (OpenAI's `param`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub message: String,
    pub param: Option<String>,
}

impl InvalidField {
    fn new(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }
}

impl std::fmt::Display for InvalidField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidField {}

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// A message's `content`: text, or a list of parts of which only text parts are supported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    /// `null` for an assistant message that only calls tools.
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An assistant message's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// The message as rbee's workers take it; `Err` names what is not supported.
    pub fn to_chat(&self) -> Result<ChatMessage, InvalidField> {
        let invalid = |message: String| InvalidField::new(message, Some("messages"));
        if !["system", "developer", "user", "assistant", "tool"].contains(&self.role.as_str()) {
            return Err(invalid(format!(
                "messages with role `{}` are not supported (system, developer, user, assistant, tool)",
                self.role
            )));
        }
        if self.role == "tool" && self.tool_call_id.is_none() {
            return Err(invalid("a `tool` message needs its `tool_call_id`".into()));
        }
        let content = match &self.content {
            None if self.tool_calls.is_some() => String::new(),
            None => {
                return Err(invalid(format!(
                    "a `{}` message needs `content`",
                    self.role
                )));
            }
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(invalid(format!(
                                "content parts of type `{kind}` are not supported (text only)"
                            )));
                        }
                    }
                }
                text
            }
        };
        // Chat templates know `system`; `developer` is OpenAI's newer name for it.
        let role = if self.role == "developer" {
            "system".to_owned()
        } else {
            self.role.clone()
        };
        let tool_calls = (self.tool_calls.iter().flatten())
            .map(|c| crate::worker::ToolCall {
                id: c.id.clone(),
                name: c.function.name.clone(),
                arguments: c.function.arguments.clone(),
            })
            .collect();
        Ok(ChatMessage {
            role,
            content,
            tool_calls,
            tool_call_id: self.tool_call_id.clone(),
        })
    }
}

/// The sampling fields both endpoints share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Only 1 is supported.
    #[serde(default)]
    pub n: Option<u32>,
    /// Accepted and logged; rbee has no per-user accounting.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// -2..=2, checked by the queen with the rest of the task.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// -2..=2, checked by the queen with the rest of the task.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// Token ids (as strings) and the bias added to their logits, -100..=100.
    #[serde(default, deserialize_with = "token_keys")]
    pub logit_bias: Option<std::collections::BTreeMap<u32, f64>>,
    /// An rbee extension, as in Ollama's API: how long the worker stays loaded once idle
    /// after this request (`"10m"`, seconds, `0` to unload at once, negative for ever).
    #[serde(default)]
    pub keep_alive: Option<serde_json::Value>,
}

/// `logit_bias`: JSON object keys are strings, the token ids written out. (Serde reads them
/// as numbers by itself, but not inside a flattened struct like [`Sampling`].)
fn token_keys<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::collections::BTreeMap<u32, f64>>, D::Error> {
    let raw: Option<std::collections::BTreeMap<String, f64>> = Option::deserialize(d)?;
    raw.map(|map| {
        (map.into_iter())
            .map(|(k, v)| {
                let id = k.parse::<u32>().map_err(|_| {
                    serde::de::Error::custom(format!("logit_bias key `{k}` is not a token id"))
                })?;
                Ok((id, v))
            })
            .collect()
    })
    .transpose()
}

impl Sampling {
    /// Refuses values rbee cannot honour, naming the field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(InvalidField::new("only n=1 is supported", Some("n")));
        }
        crate::worker::check_penalties(
            self.frequency_penalty,
            self.presence_penalty,
            self.logit_bias.as_ref(),
        )
        .map_err(|e| InvalidField::new(e.message, Some(e.field)))?;
        crate::ollama::keep_alive_secs(self.keep_alive.as_ref())
            .map_err(|e| InvalidField::new(e, Some("keep_alive")))?;
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(InvalidField::new(
                "stream_options is only allowed with stream: true",
                Some("stream_options"),
            ));
        }
        Ok(())
    }

    pub fn streaming(&self) -> bool {
        self.stream == Some(true)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// Fields of [`Sampling`], accepted by both endpoints.
const SAMPLING_FIELDS: &[&str] = &[
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "n",
    "user",
    "stream",
    "stream_options",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "keep_alive",
];

/// OpenAI fields rbee does not act on, with the values that change nothing (besides `null`,
/// which every one of them accepts): what the official SDKs, agents and chat UIs send by
/// default. Any other value of these fields is refused, naming the field and what is
/// accepted.
pub const NEUTRAL_FIELDS: &[NeutralField] = &[
    NeutralField::new("functions", "[]", |v| {
        v.as_array().is_some_and(Vec::is_empty)
    }),
    NeutralField::new("function_call", r#""none" or "auto""#, |v| {
        matches!(v.as_str(), Some("none" | "auto"))
    }),
    NeutralField::new("logit_bias", "{}", |v| {
        v.as_object().is_some_and(|o| o.is_empty())
    }),
    NeutralField::new("store", "false", |v| v.as_bool() == Some(false)),
    // Metadata only labels stored completions, and rbee stores none.
    NeutralField::new("metadata", "an object of strings", |v| {
        v.as_object()
            .is_some_and(|o| o.values().all(|v| v.is_string()))
    }),
    NeutralField::new("service_tier", r#""auto" or "default""#, |v| {
        matches!(v.as_str(), Some("auto" | "default"))
    }),
    NeutralField::new("modalities", r#"["text"]"#, |v| {
        v.as_array().is_some_and(|a| a.len() == 1 && a[0] == "text")
    }),
    NeutralField::new("best_of", "1", |v| v.as_u64() == Some(1)),
    NeutralField::new("suffix", r#""""#, |v| v.as_str() == Some("")),
];

/// An OpenAI field rbee accepts only with a value that changes nothing
/// ([`NEUTRAL_FIELDS`]).
pub struct NeutralField {
    pub name: &'static str,
    /// The accepted values, as the error names them.
    pub accepted: &'static str,
    is_neutral: fn(&serde_json::Value) -> bool,
}

impl NeutralField {
    const fn new(
        name: &'static str,
        accepted: &'static str,
        is_neutral: fn(&serde_json::Value) -> bool,
    ) -> Self {
        Self {
            name,
            accepted,
            is_neutral,
        }
    }

    /// Whether `value` leaves the request as it is.
    pub fn is_neutral(&self, value: &serde_json::Value) -> bool {
        value.is_null() || (self.is_neutral)(value)
    }
}

/// A request body of one of the two generation endpoints.
pub trait OpenAiRequest: serde::de::DeserializeOwned {
    /// Top-level fields besides [`Sampling`]'s.
    const FIELDS: &'static [&'static str];
}

/// Parses a request, refusing any field rbee does not honour; fields of [`NEUTRAL_FIELDS`]
/// with a value that changes nothing are dropped. `Err` holds the message and the offending
/// field.
pub fn parse_request<T: OpenAiRequest>(body: &[u8]) -> Result<T, InvalidField> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| InvalidField::new(format!("the body is not valid JSON: {e}"), None))?;
    let Some(map) = value.as_object_mut() else {
        return Err(InvalidField::new("the body must be a JSON object", None));
    };
    let fields: Vec<String> = map.keys().cloned().collect();
    for field in fields {
        if T::FIELDS.contains(&field.as_str()) || SAMPLING_FIELDS.contains(&field.as_str()) {
            continue;
        }
        let Some(neutral) = NEUTRAL_FIELDS.iter().find(|n| n.name == field) else {
            return Err(InvalidField::new(
                format!("`{field}` is not supported by rbee"),
                Some(&field),
            ));
        };
        if !neutral.is_neutral(&map[&field]) {
            return Err(InvalidField::new(
                format!(
                    "`{field}`: {} is not supported by rbee (accepted: {}, or null)",
                    map[&field], neutral.accepted
                ),
                Some(&field),
            ));
        }
        map.remove(&field);
    }
    serde_json::from_value(value)
        .map_err(|e| InvalidField::new(format!("invalid request: {e}"), None))
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// The newer name of `max_tokens`; wins when both are given.
    #[serde(default)]
    pub max_completion_tokens: Option<usize>,
    /// Return each generated token's log-probability.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// With `logprobs`: this many of the most likely tokens at each position too (0..=20).
    #[serde(default)]
    pub top_logprobs: Option<usize>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub tools: Option<Vec<ToolDefinition>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoiceOption>,
    /// Accepted either way; an answer holds at most one call.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// An rbee extension (vLLM's name for it): a Jinja chat template used instead of the
    /// model's own for this request.
    #[serde(default)]
    pub chat_template: Option<String>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `response_format`: free text, any JSON object, or JSON following a schema — the last two
/// enforced by constrained decoding in the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Without one, any JSON value.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// Enforced either way: the answer always follows the schema.
    #[serde(default)]
    pub strict: Option<bool>,
}

impl ResponseFormat {
    /// What the worker enforces; `None` for free text.
    pub fn output_format(&self) -> Option<crate::worker::OutputFormat> {
        use crate::worker::OutputFormat;
        match self {
            Self::Text => None,
            Self::JsonObject => Some(OutputFormat::JsonObject),
            Self::JsonSchema { json_schema } => Some(OutputFormat::JsonSchema {
                schema: (json_schema.schema.clone()).unwrap_or_else(|| serde_json::json!({})),
            }),
        }
    }
}

impl OpenAiRequest for ChatCompletionRequest {
    const FIELDS: &'static [&'static str] = &[
        "model",
        "messages",
        "max_completion_tokens",
        "logprobs",
        "top_logprobs",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "chat_template",
    ];
}

impl ChatCompletionRequest {
    /// The tools and choice as the worker takes them; `None` when the answer cannot call any.
    pub fn tools(
        &self,
    ) -> Result<Option<(Vec<crate::worker::Tool>, crate::worker::ToolChoice)>, InvalidField> {
        use crate::worker::{Tool, ToolChoice};
        let choice = match &self.tool_choice {
            None => ToolChoice::Auto,
            Some(ToolChoiceOption::Mode(m)) => match m.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(InvalidField::new(
                        format!("`tool_choice` `{other}` is not one of none, auto, required"),
                        Some("tool_choice"),
                    ));
                }
            },
            Some(ToolChoiceOption::Named { function }) => {
                ToolChoice::Function(function.name.clone())
            }
        };
        let mut tools = Vec::new();
        for t in self.tools.iter().flatten() {
            if t.kind != "function" {
                return Err(InvalidField::new(
                    format!("tools of type `{}` are not supported (function)", t.kind),
                    Some("tools"),
                ));
            }
            tools.push(Tool {
                name: t.function.name.clone(),
                description: t.function.description.clone(),
                parameters: t.function.parameters.clone(),
            });
        }
        if let ToolChoice::Function(name) = &choice
            && !tools.is_empty()
            && !tools.iter().any(|t| &t.name == name)
        {
            return Err(InvalidField::new(
                format!("`tool_choice` names `{name}`, which is not among the tools"),
                Some("tool_choice"),
            ));
        }
        if tools.is_empty() && !matches!(choice, ToolChoice::None | ToolChoice::Auto) {
            return Err(InvalidField::new(
                "`tool_choice` asks for a call, but no `tools` were given",
                Some("tool_choice"),
            ));
        }
        Ok((!tools.is_empty() && choice != ToolChoice::None).then_some((tools, choice)))
    }

    /// How many alternatives per token the worker reports; `None` without `logprobs`.
    pub fn logprobs(&self) -> Result<Option<usize>, InvalidField> {
        let top = self.top_logprobs.unwrap_or(0);
        crate::worker::check_logprobs(Some(top), "top_logprobs")
            .map_err(|e| InvalidField::new(e.message, Some(e.field)))?;
        match self.logprobs {
            Some(true) => Ok(Some(top)),
            _ if top > 0 => Err(InvalidField::new(
                "`top_logprobs` needs `logprobs: true`",
                Some("top_logprobs"),
            )),
            _ => Ok(None),
        }
    }
}

/// A completion's `prompt`: a string, or a list of one string (as some SDKs and tools send
/// it; one answer per request, so a longer list is refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    List(Vec<String>),
}

impl Prompt {
    /// The prompt's text; `Err` for a list of other than one string.
    pub fn into_text(self) -> Result<String, InvalidField> {
        match self {
            Self::One(text) => Ok(text),
            Self::List(mut list) if list.len() == 1 => Ok(list.remove(0)),
            Self::List(list) => Err(InvalidField::new(
                format!(
                    "a list of {} prompts is not supported (one prompt per request)",
                    list.len()
                ),
                Some("prompt"),
            )),
        }
    }
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    /// Only `false` is supported.
    #[serde(default)]
    pub echo: Option<bool>,
    /// Return each generated token's log-probability and this many of the most likely
    /// tokens at its position (0..=20).
    #[serde(default)]
    pub logprobs: Option<usize>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

impl OpenAiRequest for CompletionRequest {
    const FIELDS: &'static [&'static str] = &["model", "prompt", "echo", "logprobs"];
}

impl CompletionRequest {
    /// How many alternatives per token the worker reports; `None` without `logprobs`.
    pub fn logprobs(&self) -> Result<Option<usize>, InvalidField> {
        crate::worker::check_logprobs(self.logprobs, "logprobs")
            .map_err(|e| InvalidField::new(e.message, Some(e.field)))?;
        Ok(self.logprobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_values_sdks_send_are_accepted_and_change_nothing() {
        let plain: ChatCompletionRequest =
            parse_request(br#"{"model":"m","messages":[],"max_tokens":3}"#).unwrap();
        let with_defaults: ChatCompletionRequest = parse_request(
            br#"{"model":"m","messages":[],"max_tokens":3,"logprobs":false,
                "response_format":{"type":"text"},"tools":[],"store":false,
                "metadata":{"app":"x"},"parallel_tool_calls":false,"tool_choice":"none",
                "top_logprobs":0,"service_tier":"auto","modalities":["text"],
                "functions":null,"function_call":"auto"}"#,
        )
        .unwrap();
        assert_eq!(with_defaults.sampling, plain.sampling);
        assert_eq!(with_defaults.logprobs().unwrap(), None);
        assert_eq!(with_defaults.response_format, Some(ResponseFormat::Text));
        let completion: CompletionRequest = parse_request(
            br#"{"model":"m","prompt":"x","best_of":1,"suffix":null,"logprobs":null}"#,
        )
        .unwrap();
        assert_eq!(completion.prompt.into_text().unwrap(), "x");
        let listed: CompletionRequest =
            parse_request(br#"{"model":"m","prompt":["a prompt"]}"#).unwrap();
        assert_eq!(listed.prompt.into_text().unwrap(), "a prompt");
        let two: CompletionRequest = parse_request(br#"{"model":"m","prompt":["a","b"]}"#).unwrap();
        assert_eq!(
            two.prompt.into_text().unwrap_err().param.as_deref(),
            Some("prompt")
        );
    }

    #[test]
    fn response_formats_become_what_the_worker_enforces() {
        use crate::worker::OutputFormat;
        let format = |f: &str| {
            let body = format!(r#"{{"model":"m","messages":[],"response_format":{f}}}"#);
            parse_request::<ChatCompletionRequest>(body.as_bytes())
                .map(|r| r.response_format.and_then(|f| f.output_format()))
        };
        assert_eq!(format(r#"{"type":"text"}"#).unwrap(), None);
        assert_eq!(
            format(r#"{"type":"json_object"}"#).unwrap(),
            Some(OutputFormat::JsonObject)
        );
        let schema = r#"{"type":"json_schema","json_schema":{"name":"p","strict":true,
            "schema":{"type":"object","properties":{"a":{"type":"integer"}}}}}"#;
        assert_eq!(
            format(schema).unwrap(),
            Some(OutputFormat::JsonSchema {
                schema: serde_json::json!({"type":"object","properties":{"a":{"type":"integer"}}})
            })
        );
        assert!(format(r#"{"type":"yaml"}"#).is_err());
        assert!(format(r#"{"type":"json_schema"}"#).is_err());
    }

    #[test]
    fn logprobs_ask_the_worker_for_alternatives_up_to_twenty() {
        let chat = |extra: &str| {
            let body = format!(r#"{{"model":"m","messages":[]{extra}}}"#);
            parse_request::<ChatCompletionRequest>(body.as_bytes())
                .unwrap()
                .logprobs()
        };
        assert_eq!(chat(r#","logprobs":true"#).unwrap(), Some(0));
        assert_eq!(
            chat(r#","logprobs":true,"top_logprobs":5"#).unwrap(),
            Some(5)
        );
        let without = chat(r#","top_logprobs":2"#).unwrap_err();
        assert_eq!(without.param.as_deref(), Some("top_logprobs"));
        let many = chat(r#","logprobs":true,"top_logprobs":21"#).unwrap_err();
        assert_eq!(many.param.as_deref(), Some("top_logprobs"));
        let completion = |n: usize| {
            let body = format!(r#"{{"model":"m","prompt":"x","logprobs":{n}}}"#);
            parse_request::<CompletionRequest>(body.as_bytes())
                .unwrap()
                .logprobs()
        };
        assert_eq!(completion(3).unwrap(), Some(3));
        assert_eq!(
            completion(30).unwrap_err().param.as_deref(),
            Some("logprobs")
        );
    }

    #[test]
    fn a_value_that_would_change_the_request_is_refused_naming_the_field() {
        for (body, field) in [
            (r#""store":true"#, "store"),
            (r#""modalities":["text","audio"]"#, "modalities"),
        ] {
            let body = format!(r#"{{"model":"m","messages":[],{body}}}"#);
            let err = parse_request::<ChatCompletionRequest>(body.as_bytes()).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(field), "{body}: {err}");
            assert!(err.message.contains("accepted:"), "{err}");
        }
    }

    #[test]
    fn tools_and_tool_choice_become_what_the_worker_takes() {
        use crate::worker::ToolChoice;
        let tools = |extra: &str| {
            let body = format!(
                r#"{{"model":"m","messages":[],"tools":[{{"type":"function","function":
                    {{"name":"f","parameters":{{"type":"object"}}}}}}]{extra}}}"#
            );
            parse_request::<ChatCompletionRequest>(body.as_bytes())
                .unwrap()
                .tools()
        };
        let (list, choice) = tools("").unwrap().unwrap();
        assert_eq!((list[0].name.as_str(), choice), ("f", ToolChoice::Auto));
        assert_eq!(
            tools(r#","tool_choice":"required""#).unwrap().unwrap().1,
            ToolChoice::Required
        );
        let named = tools(r#","tool_choice":{"type":"function","function":{"name":"f"}}"#);
        assert_eq!(named.unwrap().unwrap().1, ToolChoice::Function("f".into()));
        assert_eq!(tools(r#","tool_choice":"none""#).unwrap(), None);
        let bad = tools(r#","tool_choice":"always""#).unwrap_err();
        assert_eq!(bad.param.as_deref(), Some("tool_choice"));
        let missing = tools(r#","tool_choice":{"type":"function","function":{"name":"g"}}"#);
        assert_eq!(missing.unwrap_err().param.as_deref(), Some("tool_choice"));
        let none: ChatCompletionRequest =
            parse_request(br#"{"model":"m","messages":[],"tool_choice":"required"}"#).unwrap();
        assert_eq!(
            none.tools().unwrap_err().param.as_deref(),
            Some("tool_choice")
        );
    }

    #[test]
    fn a_tool_round_trip_history_is_accepted() {
        let req: ChatCompletionRequest = parse_request(
            br#"{"model":"m","messages":[{"role":"user","content":"Weather?"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
                 "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"18 C"}]}"#,
        )
        .unwrap();
        let chat: Vec<ChatMessage> = req.messages.iter().map(|m| m.to_chat().unwrap()).collect();
        assert_eq!(chat[1].tool_calls[0].name, "get_weather");
        assert_eq!(chat[1].tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(chat[2].tool_call_id.as_deref(), Some("call_1"));
        let orphan = Message {
            role: "tool".into(),
            content: Some(Content::Text("x".into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        };
        assert!(orphan.to_chat().is_err());
    }

    #[test]
    fn unknown_fields_are_refused_not_ignored() {
        let err = parse_request::<ChatCompletionRequest>(
            br#"{"model":"m","messages":[],"frobnicate":true}"#,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("frobnicate"), "{err}");
        assert!(
            parse_request::<CompletionRequest>(br#"{"model":"m","prompt":"x","suffix":"y"}"#)
                .is_err()
        );
        let ok: ChatCompletionRequest = parse_request(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stop":"x","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(ok.sampling.max_tokens, Some(5));
        assert!(ok.sampling.include_usage());
        assert_eq!(ok.sampling.stop.unwrap().into_vec(), ["x"]);
    }

    #[test]
    fn n_above_one_and_out_of_range_penalties_and_biases_are_refused() {
        let s = Sampling {
            n: Some(2),
            ..Sampling::default()
        };
        assert_eq!(s.validate().unwrap_err().param.as_deref(), Some("n"));
        let s = Sampling {
            presence_penalty: Some(2.5),
            ..Sampling::default()
        };
        assert_eq!(
            s.validate().unwrap_err().param.as_deref(),
            Some("presence_penalty")
        );
        let ok: ChatCompletionRequest = parse_request(
            br#"{"model":"m","messages":[],"frequency_penalty":0.5,"logit_bias":{"42":-100}}"#,
        )
        .unwrap();
        assert!(ok.sampling.validate().is_ok());
        assert_eq!(ok.sampling.logit_bias.unwrap()[&42], -100.0);
        let s = Sampling {
            logit_bias: Some([(7, 101.0)].into()),
            ..Sampling::default()
        };
        assert_eq!(
            s.validate().unwrap_err().param.as_deref(),
            Some("logit_bias")
        );
    }
}
