//! Ollama's API (`/api/...`), on the queen's port and behind its key: the models of every
//! node, running workers, model details, pulls and deletes, and chat and generate as NDJSON
//! streams or single answers. A chat or generate request is a task like any other (placed by
//! the queen unless its model names a node), so it shares the worker's sampler, grammar and
//! queue with the OpenAI API. Errors use Ollama's shape, `{"error": "…"}`, with the status of
//! rbee's error code.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rbee_api::hive::{DownloadEvent, DownloadState, ModelEntry};
use rbee_api::ollama::{
    ChatRequest, ChatResponse, Done, ErrorResponse, GenerateRequest, GenerateResponse, Message,
    ModelDetails, ModelRequest, ModelTag, Options, PsResponse, PullProgress, RunningModel,
    ShowResponse, TagsResponse, VersionResponse, output_format, parameter_size,
};
use rbee_api::openai::{ModelId, ModelIdError};
use rbee_api::queen::{TaskEvent, TaskRequest};
use rbee_api::worker::{ChatMessage, EndEvent, StopReason, Tool, ToolCall, ToolChoice};
use rbee_api::{ErrorCode, ErrorEnvelope, NodeName};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::clients::HiveClient;
use crate::state::AppState;

/// The Ollama API version rbee answers like (its routes and fields).
pub const OLLAMA_VERSION: &str = "0.6.0";

/// An error in Ollama's shape.
pub struct OllamaError(ErrorEnvelope);

impl OllamaError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ErrorEnvelope::new(code, message))
    }
}

impl From<ErrorEnvelope> for OllamaError {
    fn from(e: ErrorEnvelope) -> Self {
        Self(e)
    }
}

impl From<crate::error::QueenError> for OllamaError {
    fn from(e: crate::error::QueenError) -> Self {
        Self(e.envelope())
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorResponse {
            error: self.0.error.message,
        };
        (status, Json(body)).into_response()
    }
}

fn invalid(message: impl Into<String>) -> OllamaError {
    OllamaError::new(ErrorCode::InvalidRequest, message)
}

/// Ollama answers a body that is not JSON, or not the endpoint's, with 400.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OllamaError> {
    serde_json::from_slice(body).map_err(|e| invalid(format!("invalid request body: {e}")))
}

fn model_id(name: &str) -> Result<ModelId, OllamaError> {
    ModelId::parse(name).map_err(|e| match e {
        ModelIdError::Unknown(_) => OllamaError::new(
            ErrorCode::ModelNotFound,
            format!("model '{name}' not found (see GET /api/tags)"),
        ),
        ModelIdError::Invalid(message) => invalid(message),
    })
}

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// `GET /api/version`.
pub async fn version() -> Json<VersionResponse> {
    Json(VersionResponse {
        version: OLLAMA_VERSION.into(),
    })
}

/// The hives that answer, with their catalogs.
async fn catalogs(state: &AppState) -> Vec<(HiveClient, Vec<ModelEntry>)> {
    let nodes = state.node_names().unwrap_or_default();
    let found = futures::future::join_all(nodes.iter().map(|node| async move {
        let hive = state.hives.client(node).await.ok()?;
        let list = tokio::time::timeout(Duration::from_secs(5), hive.models()).await;
        let models = list.ok()?.ok()?.models;
        Some((hive, models))
    }))
    .await;
    found.into_iter().flatten().collect()
}

fn details(entry: &ModelEntry) -> ModelDetails {
    ModelDetails {
        format: "gguf".into(),
        quantization_level: entry.quantization.clone().unwrap_or_default(),
        ..ModelDetails::default()
    }
}

fn tag(name: String, entry: &ModelEntry) -> ModelTag {
    ModelTag {
        model: name.clone(),
        name,
        modified_at: rfc3339(entry.downloaded_at_unix),
        size: entry.size_bytes,
        digest: entry.sha256.clone().unwrap_or_default(),
        details: details(entry),
    }
}

/// `GET /api/tags`: every node's models, each as `<model ref>` (placed by the queen) and as
/// `<node>/<model ref>` (that node's copy).
pub async fn tags(State(state): State<AppState>) -> Json<TagsResponse> {
    let mut models: Vec<ModelTag> = Vec::new();
    for (hive, entries) in catalogs(&state).await {
        for entry in &entries {
            let bare = entry.reference.to_string();
            if !models.iter().any(|m| m.name == bare) {
                models.push(tag(bare, entry));
            }
            let pinned = ModelId {
                node: Some(hive.node.clone()),
                model_ref: entry.reference.clone(),
            };
            models.push(tag(pinned.to_string(), entry));
        }
    }
    Json(TagsResponse { models })
}

/// `GET /api/ps`: the workers running on every node.
pub async fn ps(State(state): State<AppState>) -> Json<PsResponse> {
    let mut models = Vec::new();
    for (hive, entries) in catalogs(&state).await {
        let Ok(Ok(list)) = tokio::time::timeout(Duration::from_secs(5), hive.workers()).await
        else {
            continue;
        };
        for worker in list.workers {
            let entry = entries.iter().find(|e| e.reference == worker.model_ref);
            let name = ModelId {
                node: Some(hive.node.clone()),
                model_ref: worker.model_ref.clone(),
            }
            .to_string();
            models.push(RunningModel {
                model: name.clone(),
                name,
                size: entry.map_or(0, |e| e.size_bytes),
                digest: entry.and_then(|e| e.sha256.clone()).unwrap_or_default(),
                details: entry.map(details).unwrap_or_default(),
                // Its last activity plus a client's keep-alive (without one, the hive's
                // idle timeout applies, which the hive does not report).
                expires_at: rfc3339(
                    (worker.last_activity_unix)
                        .saturating_add(worker.keep_alive_secs.unwrap_or(0).min(1 << 40)),
                ),
                size_vram: 0,
            });
        }
    }
    Json(PsResponse { models })
}

/// The node holding `id`'s model: the one it names, else the first whose catalog has it.
async fn holder(state: &AppState, name: &str) -> Result<(HiveClient, ModelEntry), OllamaError> {
    let id = model_id(name)?;
    for (hive, entries) in catalogs(state).await {
        if id.node.as_ref().is_some_and(|n| n != &hive.node) {
            continue;
        }
        if let Some(entry) = entries.into_iter().find(|e| e.reference == id.model_ref) {
            return Ok((hive, entry));
        }
    }
    Err(OllamaError::new(
        ErrorCode::ModelNotFound,
        format!("model '{name}' not found (see GET /api/tags)"),
    ))
}

fn name_of(req: &ModelRequest) -> Result<&str, OllamaError> {
    req.model_name()
        .ok_or_else(|| invalid("`model` is required"))
}

/// `POST /api/show`: what the node's worker binary reads from the model's GGUF header.
pub async fn show(State(state): State<AppState>, body: Bytes) -> Result<Response, OllamaError> {
    let req: ModelRequest = parse(&body)?;
    let name = name_of(&req)?;
    let (hive, entry) = holder(&state, name).await?;
    let info = hive
        .model_info(&entry.reference)
        .await
        .map_err(|e| OllamaError::from(e.from_hive(&hive)))?;
    let arch = info.architecture.clone();
    let mut model_info = std::collections::BTreeMap::new();
    let mut put = |key: String, value: serde_json::Value| {
        model_info.insert(key, value);
    };
    put("general.architecture".into(), arch.clone().into());
    put(
        "general.name".into(),
        info.name.clone().unwrap_or_default().into(),
    );
    put("general.parameter_count".into(), info.parameters.into());
    put(format!("{arch}.context_length"), info.context_length.into());
    put(
        format!("{arch}.embedding_length"),
        info.embedding_length.into(),
    );
    put(format!("{arch}.block_count"), info.layers.into());
    put("tokenizer.ggml.model".into(), info.tokenizer.clone().into());
    put("tokenizer.ggml.vocab_size".into(), info.vocab_size.into());
    let template = info.chat_template.clone().unwrap_or_default();
    let mut capabilities = vec!["completion".to_owned()];
    if info.chat_template.is_some() {
        capabilities.push("tools".into());
    }
    let answer = ShowResponse {
        modelfile: format!("# rbee: {}\nFROM {}\n", entry.reference, entry.local_path),
        parameters: String::new(),
        template,
        details: ModelDetails {
            family: arch.clone(),
            families: vec![arch],
            parameter_size: parameter_size(info.parameters),
            quantization_level: info.quantization.clone(),
            ..details(&entry)
        },
        model_info,
        capabilities,
        modified_at: rfc3339(entry.downloaded_at_unix),
    };
    Ok(Json(answer).into_response())
}

/// `DELETE /api/delete`: removes the model from the catalog of the node that holds it (or
/// the one its name pins), and its file when the hive downloaded it.
pub async fn delete(State(state): State<AppState>, body: Bytes) -> Result<Response, OllamaError> {
    let req: ModelRequest = parse(&body)?;
    let name = name_of(&req)?;
    let (hive, entry) = holder(&state, name).await?;
    hive.delete_model(&entry.reference)
        .await
        .map_err(|e| OllamaError::from(e.from_hive(&hive)))?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /api/pull`: downloads the model onto the node its name pins, else the first node
/// (the queen's own when it runs a hive), streaming Ollama's progress lines.
pub async fn pull(State(state): State<AppState>, body: Bytes) -> Result<Response, OllamaError> {
    let req: ModelRequest = parse(&body)?;
    let name = name_of(&req)?;
    let id = model_id(name)?;
    let node = match &id.node {
        Some(node) => node.clone(),
        None => (state.node_names()?.into_iter().next()).unwrap_or_else(NodeName::localhost),
    };
    let hive = (state.hives)
        .ensure(&node, &crate::narration::Narrator::log_only())
        .await?;
    let started = hive
        .download(&id.model_ref)
        .await
        .map_err(|e| OllamaError::from(e.from_hive(&hive)))?;
    let (tx, rx) = mpsc::channel::<Result<PullProgress, ErrorEnvelope>>(64);
    let line = |status: &str| PullProgress {
        status: status.into(),
        digest: None,
        total: None,
        completed: None,
    };
    let model = id.model_ref.clone();
    tokio::spawn(async move {
        let _ = tx.send(Ok(line("pulling manifest"))).await;
        if started.state == DownloadState::Present {
            let _ = tx.send(Ok(line("success"))).await;
            return;
        }
        let progress = crate::downloads::follow(&hive, &model, &started.download_id).await;
        let mut progress = match progress {
            Ok(p) => Box::pin(p),
            Err(e) => {
                let _ = tx.send(Err(e.envelope())).await;
                return;
            }
        };
        let digest = model.to_string();
        while let Some(event) = progress.next().await {
            let sent = match event {
                Ok(DownloadEvent::Downloading {
                    bytes_downloaded,
                    bytes_total,
                    ..
                }) => Ok(PullProgress {
                    status: format!("pulling {model}"),
                    digest: Some(digest.clone()),
                    total: Some(bytes_total),
                    completed: Some(bytes_downloaded),
                }),
                Ok(DownloadEvent::Verifying) => Ok(line("verifying sha256 digest")),
                Ok(DownloadEvent::Complete { .. }) => {
                    let _ = tx.send(Ok(line("writing manifest"))).await;
                    Ok(line("success"))
                }
                Ok(_) => continue,
                Err(e) => Err(e.envelope()),
            };
            if tx.send(sent).await.is_err() {
                return;
            }
        }
    });
    if req.stream == Some(false) {
        return whole_pull(rx).await;
    }
    Ok(ndjson(ReceiverStream::new(rx).map(|item| match item {
        Ok(p) => serde_json::to_value(p).unwrap_or_default(),
        Err(e) => serde_json::json!({"error": e.error.message}),
    })))
}

async fn whole_pull(
    mut rx: mpsc::Receiver<Result<PullProgress, ErrorEnvelope>>,
) -> Result<Response, OllamaError> {
    let mut last = None;
    while let Some(item) = rx.recv().await {
        last = Some(item?);
    }
    let last = last.ok_or_else(|| OllamaError::new(ErrorCode::Internal, "the pull ended early"))?;
    Ok(Json(last).into_response())
}

/// A response of newline-delimited JSON, one line per value.
fn ndjson(lines: impl futures::Stream<Item = serde_json::Value> + Send + 'static) -> Response {
    let lines = lines.map(|v| Ok::<_, Infallible>(format!("{v}\n")));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The task for a chat or generate request: its model, options and format.
fn task_for(
    model: &str,
    options: Option<&Options>,
    format: Option<&serde_json::Value>,
) -> Result<TaskRequest, OllamaError> {
    let id = model_id(model)?;
    let o = options.cloned().unwrap_or_default();
    if !o.ignored.is_empty() {
        let names: Vec<&String> = o.ignored.keys().collect();
        tracing::info!("Ollama options rbee does not act on, ignored: {names:?}");
    }
    Ok(TaskRequest {
        node: id.node,
        max_tokens: o.num_predict.filter(|&n| n > 0).map(|n| n as usize),
        temperature: o.temperature,
        top_p: o.top_p,
        top_k: o.top_k.filter(|&k| k > 0),
        seed: o.seed,
        stop: o.stop.filter(|s| !s.is_empty()),
        frequency_penalty: o.frequency_penalty,
        presence_penalty: o.presence_penalty,
        format: output_format(format).map_err(invalid)?,
        context_length: o.num_ctx.filter(|&n| n > 0),
        ..TaskRequest::for_model(id.model_ref)
    })
}

/// Ollama's messages as rbee's; a tool result names its function, so it answers that
/// function's last call.
fn chat_messages(messages: &[Message]) -> Result<Vec<ChatMessage>, OllamaError> {
    let mut out: Vec<ChatMessage> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if m.images.as_ref().is_some_and(|i| !i.is_empty()) {
            return Err(invalid(
                "images are not supported: rbee's models read text only",
            ));
        }
        let calls: Vec<ToolCall> = (m.tool_calls.iter().enumerate())
            .map(|(j, c)| ToolCall {
                id: format!("call_{i}_{j}"),
                name: c.function.name.clone(),
                arguments: c.function.arguments.to_string(),
            })
            .collect();
        let answers = (m.role == "tool").then(|| {
            let named = |c: &&ToolCall| m.tool_name.as_ref().is_none_or(|n| &c.name == n);
            (out.iter().rev())
                .flat_map(|p| p.tool_calls.iter().rev())
                .find(named)
                .map_or_else(|| format!("call_{i}"), |c| c.id.clone())
        });
        out.push(ChatMessage {
            role: m.role.clone(),
            content: m.content.clone(),
            tool_calls: calls,
            tool_call_id: answers,
        });
    }
    Ok(out)
}

/// `POST /api/chat`.
pub async fn chat(State(state): State<AppState>, body: Bytes) -> Result<Response, OllamaError> {
    let req: ChatRequest = parse(&body)?;
    let mut task = task_for(&req.model, req.options.as_ref(), req.format.as_ref())?;
    if req.messages.is_empty() {
        // Ollama loads the model for an empty chat; rbee starts nothing for it.
        return Ok(Json(ChatResponse {
            model: req.model,
            created_at: now(),
            message: assistant(String::new(), Vec::new()),
            done: true,
            finished: Some(Done {
                done_reason: "load".into(),
                ..Done::default()
            }),
        })
        .into_response());
    }
    task.messages = Some(chat_messages(&req.messages)?);
    let tools: Vec<Tool> = (req.tools.iter().flatten())
        .map(|t| Tool {
            name: t.function.name.clone(),
            description: t.function.description.clone(),
            parameters: t.function.parameters.clone(),
        })
        .collect();
    let with_tools = !tools.is_empty();
    if with_tools {
        task.tools = Some(tools);
        task.tool_choice = Some(ToolChoice::Auto);
    }
    task.keep_alive = keep_alive(req.keep_alive.as_ref())?;
    let answer = Answer {
        kind: Kind::Chat,
        model: req.model,
        tools: with_tools,
    };
    respond(state, task, answer, req.stream != Some(false)).await
}

/// `POST /api/generate`.
pub async fn generate(State(state): State<AppState>, body: Bytes) -> Result<Response, OllamaError> {
    let req: GenerateRequest = parse(&body)?;
    if req.images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(invalid(
            "images are not supported: rbee's models read text only",
        ));
    }
    for (field, given) in [
        ("suffix", req.suffix.as_ref().is_some_and(|s| !s.is_empty())),
        (
            "template",
            req.template.as_ref().is_some_and(|t| !t.is_empty()),
        ),
        (
            "context",
            req.context.as_ref().is_some_and(|c| !c.is_empty()),
        ),
    ] {
        if given && field == "template" {
            return Err(invalid(
                "`template` (a Go template) is not supported by rbee; a Jinja chat template can be given with the OpenAI API's `chat_template`, or set for the model with `rbee models set <model> --chat-template <file>`",
            ));
        }
        if given {
            return Err(invalid(format!("`{field}` is not supported by rbee")));
        }
    }
    let mut task = task_for(&req.model, req.options.as_ref(), req.format.as_ref())?;
    let prompt = req.prompt.clone().unwrap_or_default();
    if prompt.is_empty() {
        return Ok(Json(GenerateResponse {
            model: req.model,
            created_at: now(),
            response: String::new(),
            done: true,
            finished: Some(Done {
                done_reason: "load".into(),
                ..Done::default()
            }),
        })
        .into_response());
    }
    if req.raw == Some(true) {
        task.prompt = Some(prompt);
    } else {
        let mut messages = Vec::new();
        if let Some(system) = req.system.filter(|s| !s.is_empty()) {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", prompt));
        task.messages = Some(messages);
    }
    task.keep_alive = keep_alive(req.keep_alive.as_ref())?;
    let answer = Answer {
        kind: Kind::Generate,
        model: req.model,
        tools: false,
    };
    respond(state, task, answer, req.stream != Some(false)).await
}

/// `keep_alive` in whole seconds for the task; forever (negative) as the longest there is.
fn keep_alive(value: Option<&serde_json::Value>) -> Result<Option<u64>, OllamaError> {
    rbee_api::ollama::keep_alive_secs(value).map_err(invalid)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

/// How one request's lines are shaped.
struct Answer {
    kind: Kind,
    model: String,
    tools: bool,
}

fn assistant(content: String, tool_calls: Vec<rbee_api::ollama::ToolCall>) -> Message {
    Message {
        role: "assistant".into(),
        content,
        images: None,
        tool_calls,
        tool_name: None,
    }
}

impl Answer {
    fn line(
        &self,
        text: String,
        calls: Vec<rbee_api::ollama::ToolCall>,
        done: Option<Done>,
    ) -> serde_json::Value {
        let created_at = now();
        let done_flag = done.is_some();
        let value = match self.kind {
            Kind::Chat => serde_json::to_value(ChatResponse {
                model: self.model.clone(),
                created_at,
                message: assistant(text, calls),
                done: done_flag,
                finished: done,
            }),
            Kind::Generate => serde_json::to_value(GenerateResponse {
                model: self.model.clone(),
                created_at,
                response: text,
                done: done_flag,
                finished: done,
            }),
        };
        value.unwrap_or_default()
    }

    /// The text and calls read by the worker when tools were offered.
    fn outcome(end: &EndEvent) -> (String, Vec<rbee_api::ollama::ToolCall>) {
        let outcome = end.tools.clone().unwrap_or_default();
        let calls = (outcome.tool_calls.iter())
            .map(|c| rbee_api::ollama::ToolCall {
                function: rbee_api::ollama::FunctionCall {
                    name: c.name.clone(),
                    arguments: serde_json::from_str(&c.arguments)
                        .unwrap_or(serde_json::Value::String(c.arguments.clone())),
                },
            })
            .collect();
        (outcome.content, calls)
    }
}

fn done(end: &EndEvent) -> Done {
    let ns = |ms: u64| ms * 1_000_000;
    let decode_ms = end.duration_ms.saturating_sub(end.prompt_ms);
    Done {
        done_reason: match end.stop_reason {
            StopReason::MaxTokens => "length",
            _ => "stop",
        }
        .into(),
        total_duration: ns(end.duration_ms),
        load_duration: 0,
        prompt_eval_count: end.tokens_in,
        prompt_eval_duration: ns(end.prompt_ms),
        eval_count: end.tokens_out,
        eval_duration: ns(decode_ms),
    }
}

/// Starts the task and answers: the first token (or failure) decides the status, then
/// lines follow, or one answer when not streaming.
async fn respond(
    state: AppState,
    task: TaskRequest,
    answer: Answer,
    streaming: bool,
) -> Result<Response, OllamaError> {
    let (_, mut rx) = crate::tasks::launch(&state, task)?;
    // Wait for the first piece of the answer, so errors before it are HTTP errors.
    let mut first = Vec::new();
    loop {
        match rx.recv().await {
            Some(e @ (TaskEvent::Token(_) | TaskEvent::End(_))) => {
                first.push(e);
                break;
            }
            Some(TaskEvent::Error(e)) => return Err(e.into()),
            Some(_) => {}
            None => {
                return Err(OllamaError::new(
                    ErrorCode::Internal,
                    "the task ended without an answer",
                ));
            }
        }
    }
    let (tx, out) = mpsc::channel::<serde_json::Value>(64);
    let streamed = tokio::spawn(async move {
        let mut text = String::new();
        let mut pending = first.into_iter();
        loop {
            let event = match pending.next() {
                Some(e) => e,
                None => match rx.recv().await {
                    Some(e) => e,
                    None => {
                        let _ = tx
                            .send(serde_json::json!({"error": "the task ended early"}))
                            .await;
                        return;
                    }
                },
            };
            match event {
                TaskEvent::Token(t) if answer.tools => text.push_str(&t.t),
                TaskEvent::Token(t) => {
                    if !streaming {
                        text.push_str(&t.t);
                    } else if tx.send(answer.line(t.t, Vec::new(), None)).await.is_err() {
                        return;
                    }
                }
                TaskEvent::End(end) => {
                    let (content, calls) = if answer.tools {
                        Answer::outcome(&end)
                    } else if streaming {
                        (String::new(), Vec::new())
                    } else {
                        (std::mem::take(&mut text), Vec::new())
                    };
                    let _ = tx.send(answer.line(content, calls, Some(done(&end)))).await;
                    return;
                }
                TaskEvent::Error(e) => {
                    let _ = tx.send(serde_json::json!({"error": e.error.message})).await;
                    return;
                }
                _ => {}
            }
        }
    });
    if streaming {
        return Ok(ndjson(ReceiverStream::new(out)));
    }
    let mut out = out;
    let mut last = None;
    while let Some(line) = out.recv().await {
        last = Some(line);
    }
    let _ = streamed.await;
    let last = last.ok_or_else(|| OllamaError::new(ErrorCode::Internal, "no answer"))?;
    if let Some(message) = last.get("error").and_then(|e| e.as_str()) {
        return Err(OllamaError::new(ErrorCode::Internal, message));
    }
    Ok(Json(last).into_response())
}
