//! Tool calls: offering functions to the model through its chat template, keeping its answer
//! to a call where one is required, and reading the calls out of what it wrote.
//!
//! A template that renders `tools` itself (Qwen, Hermes and their like) gets them as the
//! OpenAI-shaped list such templates expect, and the model writes each call as
//! `<tool_call>{"name": …, "arguments": {…}}</tool_call>`. Any other template gets a system
//! instruction listing the tools, and the whole answer is one JSON object —
//! `{"tool_call": {"name": …, "arguments": {…}}}` or `{"response": "…"}` — which the grammar
//! enforces, so even a model never trained for tools calls them with valid arguments (the
//! generic format of llama.cpp's server). With `required` or a named function the grammar
//! admits only calls, and a call's arguments always satisfy its function's schema.

use rbee_api::worker::{ChatMessage, Tool, ToolCall, ToolChoice, ToolOutcome};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// A message as a chat template reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateMessage {
    pub role: String,
    pub content: String,
    /// An assistant message's calls, for a template that renders them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<TemplateCall>,
    /// A tool's result, for a template that renders them: the call it answers.
    #[serde(flatten)]
    pub answers: Option<AnsweredCall>,
}

impl TemplateMessage {
    fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
            tool_calls: Vec::new(),
            answers: None,
        }
    }
}

/// A call in the history, in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: TemplateFunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateFunctionCall {
    pub name: String,
    /// JSON, or the text when the call's arguments are not JSON.
    pub arguments: Value,
}

/// The call a tool's result answers, and the function it called (`null` when the history
/// does not have the call).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnsweredCall {
    pub tool_call_id: String,
    pub name: Option<String>,
}

/// A tool as a template that renders tools reads it, in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateTool {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: TemplateFunction,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateFunction {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// How a model is told about tools and how its calls are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStyle {
    /// The template renders `tools`; calls are `<tool_call>` blocks of JSON.
    Template,
    /// A system instruction, and the answer is one JSON object kept so by the grammar.
    Generic,
}

/// The grammar a request's tools put on the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolGrammar {
    Schema(Value),
    Lark(String),
}

/// One request's tools, checked.
#[derive(Debug, Clone)]
pub struct ToolUse {
    style: ToolStyle,
    tools: Vec<Tool>,
    choice: ToolChoice,
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

impl ToolUse {
    /// `Err` says what is wrong with the tools or the choice.
    pub fn new(style: ToolStyle, tools: &[Tool], choice: ToolChoice) -> Result<Self, String> {
        for (i, tool) in tools.iter().enumerate() {
            if tool.name.is_empty() {
                return Err(format!("tool {i} has no name"));
            }
            if tools[..i].iter().any(|t| t.name == tool.name) {
                return Err(format!("two tools are named `{}`", tool.name));
            }
            if let Some(p) = &tool.parameters
                && !p.is_object()
            {
                return Err(format!(
                    "the parameters of tool `{}` are not a JSON schema object",
                    tool.name
                ));
            }
        }
        if let ToolChoice::Function(name) = &choice
            && !tools.iter().any(|t| &t.name == name)
        {
            return Err(format!(
                "`tool_choice` names `{name}`, which is not among the tools"
            ));
        }
        Ok(Self {
            style,
            tools: tools.to_vec(),
            choice,
        })
    }

    /// The tools a call may name: all of them, or the one `tool_choice` names.
    fn callable(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter().filter(|t| match &self.choice {
            ToolChoice::Function(name) => &t.name == name,
            _ => true,
        })
    }

    fn must_call(&self) -> bool {
        matches!(self.choice, ToolChoice::Required | ToolChoice::Function(_))
    }

    /// The messages as the template receives them: with the generic style, the instruction
    /// opens (or joins) the system message.
    pub fn template_messages(&self, messages: &[ChatMessage]) -> Vec<TemplateMessage> {
        let mut out = template_messages(messages, self.style);
        if self.style == ToolStyle::Generic {
            let instruction = self.instruction();
            match out.first_mut() {
                Some(first) if first.role == "system" => {
                    first.content = format!("{}\n\n{instruction}", first.content);
                }
                _ => out.insert(0, TemplateMessage::new("system", instruction)),
            }
        }
        out
    }

    /// The `tools` the template receives (only a template that renders them).
    pub fn template_tools(&self) -> Option<Vec<TemplateTool>> {
        (self.style == ToolStyle::Template).then(|| {
            (self.tools.iter())
                .map(|t| TemplateTool {
                    kind: "function",
                    function: TemplateFunction {
                        name: t.name.clone(),
                        description: t.description.clone().unwrap_or_default(),
                        parameters: parameters(t),
                    },
                })
                .collect()
        })
    }

    fn instruction(&self) -> String {
        let list: Vec<String> = (self.callable())
            .map(|t| {
                json!({"name": t.name, "description": t.description.clone().unwrap_or_default(),
                       "parameters": parameters(t)})
                .to_string()
            })
            .collect();
        let call = r#"{"tool_call": {"name": "<tool name>", "arguments": {<its arguments>}}}"#;
        if self.must_call() {
            format!(
                "Call this tool:\n{}\n\nAnswer with one JSON object: {call}.",
                list.join("\n")
            )
        } else {
            format!(
                "You can call these tools:\n{}\n\nAnswer with one JSON object: {call} to call a \
                 tool, or {{\"response\": \"<your answer>\"}} to answer. A tool's result comes \
                 back as {{\"tool_response\": ...}}.",
                list.join("\n")
            )
        }
    }

    /// The grammar on the answer, if any.
    pub fn grammar(&self) -> Option<ToolGrammar> {
        let mut defs = Map::new();
        let calls: Vec<Value> = (self.callable())
            .map(|t| {
                let mut args = parameters(t);
                // The arguments' own definitions move to the root, where `#/$defs/…` points.
                for key in ["$defs", "definitions"] {
                    if let Some(Value::Object(d)) = args.as_object_mut().and_then(|a| a.remove(key))
                        && let Value::Object(at) = defs.entry(key).or_insert_with(|| json!({}))
                    {
                        at.extend(d);
                    }
                }
                object(json!({"name": {"const": t.name}, "arguments": args}))
            })
            .collect();
        match self.style {
            ToolStyle::Generic => {
                let mut options: Vec<Value> = (calls.into_iter())
                    .map(|call| object(json!({"tool_call": call})))
                    .collect();
                if !self.must_call() {
                    options.push(object(json!({"response": {"type": "string"}})));
                }
                Some(ToolGrammar::Schema(with_defs(
                    json!({"anyOf": options}),
                    defs,
                )))
            }
            ToolStyle::Template if self.must_call() => {
                let schema = with_defs(json!({"anyOf": calls}), defs);
                Some(ToolGrammar::Lark(format!(
                    "start: {open:?} call {close:?}\ncall: %json {schema}\n",
                    open = format!("{OPEN}\n"),
                    close = format!("\n{CLOSE}"),
                )))
            }
            ToolStyle::Template => None,
        }
    }

    /// The answer's text and calls, read from everything the model wrote.
    pub fn read(&self, text: &str) -> ToolOutcome {
        match self.style {
            ToolStyle::Generic => read_generic(text),
            ToolStyle::Template => read_blocks(text),
        }
    }
}

fn with_defs(mut schema: Value, defs: Map<String, Value>) -> Value {
    if let Some(s) = schema.as_object_mut() {
        s.extend(defs);
    }
    schema
}

/// A schema object with exactly these properties, all required.
fn object(properties: Value) -> Value {
    let required: Vec<String> = (properties.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    json!({"type": "object", "properties": properties, "required": required,
           "additionalProperties": false})
}

fn parameters(tool: &Tool) -> Value {
    (tool.parameters.clone()).unwrap_or_else(|| json!({"type": "object"}))
}

/// `messages` as a template receives them. Calls and results in the history are written the
/// way the style has the model write and read them.
pub fn template_messages(messages: &[ChatMessage], style: ToolStyle) -> Vec<TemplateMessage> {
    let name_of = |id: &str| {
        (messages.iter())
            .flat_map(|m| &m.tool_calls)
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
    };
    (messages.iter())
        .map(|m| match style {
            ToolStyle::Template => TemplateMessage {
                tool_calls: (m.tool_calls.iter())
                    .map(|c| TemplateCall {
                        id: c.id.clone(),
                        kind: "function",
                        function: TemplateFunctionCall {
                            name: c.name.clone(),
                            arguments: arguments(c),
                        },
                    })
                    .collect(),
                answers: (m.tool_call_id.as_ref()).map(|id| AnsweredCall {
                    tool_call_id: id.clone(),
                    name: name_of(id),
                }),
                ..TemplateMessage::new(&m.role, m.content.clone())
            },
            ToolStyle::Generic if !m.tool_calls.is_empty() => {
                let calls: Vec<Value> = (m.tool_calls.iter())
                    .map(|c| json!({"name": c.name, "arguments": arguments(c)}))
                    .collect();
                let content = match calls.as_slice() {
                    [one] => json!({"tool_call": one}),
                    _ => json!({"tool_calls": calls}),
                };
                TemplateMessage::new("assistant", content.to_string())
            }
            ToolStyle::Generic if m.role == "tool" => {
                let name = m.tool_call_id.as_deref().and_then(name_of);
                let response = json!({"tool_response": {"name": name, "content": m.content}});
                TemplateMessage::new("user", response.to_string())
            }
            ToolStyle::Generic => TemplateMessage::new(&m.role, m.content.clone()),
        })
        .collect()
}

/// A call's arguments as JSON (templates print them), or the text when it is not JSON.
fn arguments(call: &ToolCall) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or_else(|_| Value::String(call.arguments.clone()))
}

fn call(name: &str, arguments: &Value) -> ToolCall {
    let id = uuid::Uuid::new_v4().simple().to_string();
    ToolCall {
        id: format!("call_{}", &id[..24]),
        name: name.to_owned(),
        arguments: arguments.to_string(),
    }
}

/// Reads `{"tool_call": …}`, `{"tool_calls": […]}` or `{"response": …}`; anything else (an
/// answer cut by `max_tokens`) is text.
fn read_generic(text: &str) -> ToolOutcome {
    let text_only = || ToolOutcome {
        content: text.to_owned(),
        tool_calls: Vec::new(),
    };
    let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(text) else {
        return text_only();
    };
    let one = answer.get("tool_call").map(std::slice::from_ref);
    let many = answer.get("tool_calls").and_then(Value::as_array);
    let calls: Vec<ToolCall> = (one.or(many.map(Vec::as_slice)).unwrap_or_default().iter())
        .filter_map(|c| Some(call(c.get("name")?.as_str()?, c.get("arguments")?)))
        .collect();
    match answer.get("response").and_then(Value::as_str) {
        Some(response) if calls.is_empty() => ToolOutcome {
            content: response.to_owned(),
            tool_calls: calls,
        },
        _ if calls.is_empty() => text_only(),
        _ => ToolOutcome {
            content: String::new(),
            tool_calls: calls,
        },
    }
}

/// Reads `<tool_call>{"name": …, "arguments": …}</tool_call>` blocks (the last may be
/// unclosed); the text around them is the content.
fn read_blocks(text: &str) -> ToolOutcome {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        content.push_str(&rest[..at]);
        let inside = &rest[at + OPEN.len()..];
        let (block, after) = inside.split_once(CLOSE).unwrap_or((inside, ""));
        match serde_json::from_str::<Value>(block.trim()) {
            Ok(c) if c.get("name").and_then(Value::as_str).is_some() => {
                let name = c["name"].as_str().unwrap_or_default();
                let args = (c.get("arguments").or(c.get("parameters")).cloned())
                    .unwrap_or_else(|| json!({}));
                calls.push(call(name, &args));
            }
            _ => content.push_str(&rest[at..rest.len() - after.len()]),
        }
        rest = after;
    }
    content.push_str(rest);
    ToolOutcome {
        content: content.trim().to_owned(),
        tool_calls: calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("The weather in a city".into()),
            parameters: Some(
                json!({"type": "object", "properties": {"city": {"$ref": "#/$defs/City"}},
                "required": ["city"], "$defs": {"City": {"type": "string"}}}),
            ),
        }
    }

    #[test]
    fn a_generic_answer_is_a_call_or_a_response() {
        let out = read_generic(
            r#"{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}"#,
        );
        assert_eq!(out.tool_calls.len(), 1);
        assert_eq!(out.tool_calls[0].name, "get_weather");
        assert_eq!(out.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert!(out.tool_calls[0].id.starts_with("call_"));
        assert_eq!(read_generic(r#"{"response": "Hi"}"#).content, "Hi");
        let cut = read_generic(r#"{"response": "Hi"#);
        assert_eq!(
            (cut.content.as_str(), cut.tool_calls.len()),
            (r#"{"response": "Hi"#, 0)
        );
    }

    #[test]
    fn tool_call_blocks_are_read_and_the_text_around_them_kept() {
        let out = read_blocks(
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>{\"name\": \"f\", \"arguments\": {}}",
        );
        assert_eq!(out.content, "Let me check.");
        let names: Vec<&str> = out.tool_calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["get_weather", "f"]);
        let broken = read_blocks("<tool_call>not json</tool_call> ok");
        assert_eq!(broken.content, "<tool_call>not json</tool_call> ok");
        assert!(broken.tool_calls.is_empty());
    }

    #[test]
    fn the_generic_grammar_admits_calls_and_a_response_unless_a_call_is_required() {
        let auto = ToolUse::new(ToolStyle::Generic, &[weather()], ToolChoice::Auto).unwrap();
        let Some(ToolGrammar::Schema(schema)) = auto.grammar() else {
            panic!("a schema")
        };
        assert_eq!(schema["anyOf"].as_array().map(Vec::len), Some(2));
        // The arguments' definitions moved to the root, where their `$ref` points.
        assert_eq!(schema["$defs"]["City"], json!({"type": "string"}));
        let required =
            ToolUse::new(ToolStyle::Generic, &[weather()], ToolChoice::Required).unwrap();
        let Some(ToolGrammar::Schema(schema)) = required.grammar() else {
            panic!("a schema")
        };
        assert_eq!(schema["anyOf"].as_array().map(Vec::len), Some(1));
        let native = ToolUse::new(ToolStyle::Template, &[weather()], ToolChoice::Auto).unwrap();
        assert_eq!(native.grammar(), None);
        let named = ToolUse::new(
            ToolStyle::Template,
            &[weather()],
            ToolChoice::Function("get_weather".into()),
        )
        .unwrap();
        let Some(ToolGrammar::Lark(lark)) = named.grammar() else {
            panic!("lark")
        };
        assert!(lark.starts_with("start: \"<tool_call>\\n\" call"), "{lark}");
    }

    #[test]
    fn unknown_named_functions_and_duplicate_names_are_refused() {
        let e = ToolUse::new(
            ToolStyle::Generic,
            &[weather()],
            ToolChoice::Function("x".into()),
        );
        assert!(e.unwrap_err().contains("`x`"));
        let e = ToolUse::new(
            ToolStyle::Generic,
            &[weather(), weather()],
            ToolChoice::Auto,
        );
        assert!(e.unwrap_err().contains("two tools"));
    }

    #[test]
    fn history_calls_and_results_are_written_in_the_style_of_the_template() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        };
        let messages = [
            ChatMessage::new("user", "Weather in Paris?"),
            ChatMessage {
                role: "assistant".into(),
                tool_calls: vec![call],
                ..ChatMessage::default()
            },
            ChatMessage {
                role: "tool".into(),
                content: "18 C".into(),
                tool_call_id: Some("call_1".into()),
                ..ChatMessage::default()
            },
        ];
        let generic = template_messages(&messages, ToolStyle::Generic);
        let written: Value = serde_json::from_str(&generic[1].content).unwrap();
        assert_eq!(
            written,
            json!({"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}})
        );
        assert_eq!(generic[2].role, "user");
        assert!(generic[2].content.contains("get_weather"));
        let native = template_messages(&messages, ToolStyle::Template);
        assert_eq!(native[1].tool_calls[0].function.arguments["city"], "Paris");
        let answered = native[2].answers.as_ref().unwrap();
        assert_eq!(answered.name.as_deref(), Some("get_weather"));
        assert_eq!(native[2].role, "tool");
    }
}
