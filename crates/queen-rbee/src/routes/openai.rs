//! The OpenAI-compatible API: `GET /v1/models`, `POST /v1/chat/completions`,
//! `POST /v1/completions`. Each request becomes a task (the same flow as `POST /v2/tasks`),
//! placed by the queen unless its model id names a node (`<node>/<model ref>`).
//!
//! The answer waits for the first token (or the failure) before it starts, so an error that
//! happens before any text — unknown node, download failure, no memory — arrives as an
//! HTTP error the SDKs raise. A failure mid-stream is sent as an `error` object in the stream.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use rbee_api::openai::{
    Answer, AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk,
    ChatCompletionRequest, ChoiceLogprobs, ChunkChoice, Completion, CompletionChoice,
    CompletionLogprobs, CompletionRequest, Delta, ErrorResponse, InvalidField, Model, ModelId,
    ModelIdError, ModelList, Sampling, StreamItem, ToolCall, ToolCallDelta, Usage, finish_reason,
    parse_request,
};
use rbee_api::queen::{TaskEvent, TaskRequest};
use rbee_api::worker::{EndEvent, TokenEvent, TokenLogprob};
use rbee_api::{ErrorCode, ErrorEnvelope, now_unix};
use tokio::sync::mpsc;

use crate::state::AppState;

/// An error answer of the OpenAI routes: rbee's envelope plus the offending field.
pub struct OpenAiError {
    envelope: Box<ErrorEnvelope>,
    param: Option<String>,
}

impl OpenAiError {
    fn new(envelope: ErrorEnvelope, param: Option<&str>) -> Self {
        Self {
            envelope: Box::new(envelope),
            param: param.map(str::to_owned),
        }
    }

    fn invalid(message: String, param: Option<&str>) -> Self {
        Self::new(
            ErrorEnvelope::new(ErrorCode::InvalidRequest, message),
            param,
        )
    }
}

impl From<InvalidField> for OpenAiError {
    fn from(e: InvalidField) -> Self {
        Self::invalid(e.message, e.param.as_deref())
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse::new(&self.envelope, self.param.as_deref());
        rbee_http::error::respond(self.envelope.error.code, Json(body))
    }
}

/// Middleware: an error on an OpenAI route that did not come from its handler (a refused key,
/// a wrong method, a body over the limit) gets OpenAI's `type` and `param` too, so the SDKs
/// read every error the same way.
pub async fn shape_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    let openai = [
        rbee_api::routes::queen::OPENAI_MODELS,
        rbee_api::routes::queen::CHAT_COMPLETIONS,
        rbee_api::routes::queen::COMPLETIONS,
    ]
    .contains(&path)
        || path.starts_with("/v1/models/");
    let resp = next.run(req).await;
    if !openai || !(resp.status().is_client_error() || resp.status().is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        // Not yet shaped: the rbee envelope alone.
        Ok(v) if v["error"].get("type").is_none() => {
            match serde_json::from_value::<ErrorEnvelope>(v) {
                Ok(envelope) => OpenAiError::new(envelope, None).into_response(),
                Err(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
            }
        }
        _ => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

/// `GET /v1/models`: the configured default, and every model in the catalog of every node
/// whose hive runs, both as `<model ref>` and as `<node>/<model ref>`.
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: listed(&state).await,
    })
}

/// `GET /v1/models/{id}`: one model of that list, or 404.
pub async fn model(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Model>, OpenAiError> {
    let found = listed(&state).await.into_iter().find(|m| m.id == id);
    found.map(Json).ok_or_else(|| {
        let message = format!("model `{id}` is not in any node's catalog (see GET /v1/models)");
        OpenAiError::new(
            ErrorEnvelope::new(ErrorCode::ModelNotFound, message),
            Some("model"),
        )
    })
}

/// The models [`models`] lists.
async fn listed(state: &AppState) -> Vec<Model> {
    let nodes = state.node_names().unwrap_or_default();
    let catalogs = futures::future::join_all(nodes.iter().map(|node| {
        let state = state.clone();
        async move {
            let hive = state.hives.client(node).await.ok()?;
            hive.models()
                .await
                .ok()
                .map(|list| (node.clone(), list.models))
        }
    }))
    .await;
    let created = now_unix();
    let mut data: Vec<Model> = Vec::new();
    let mut add = |id: String, owner: &str| match data.iter_mut().find(|m| m.id == id) {
        Some(m) => {
            if !m.owned_by.split(',').any(|o| o == owner) {
                m.owned_by = format!("{},{owner}", m.owned_by);
            }
        }
        None => data.push(Model {
            id,
            object: "model".into(),
            created,
            owned_by: owner.to_owned(),
        }),
    };
    if let Some(default) = &state.default_model {
        add(default.to_string(), "rbee");
    }
    for (node, models) in catalogs.into_iter().flatten() {
        for m in models {
            let pinned = ModelId {
                node: Some(node.clone()),
                model_ref: m.reference.clone(),
            };
            add(m.reference.to_string(), node.as_str());
            add(pinned.to_string(), node.as_str());
        }
    }
    data
}

/// Which of the two endpoints an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// The parts of a request both endpoints share, checked.
fn task_for(
    model: &str,
    sampling: &Sampling,
    max_tokens: Option<usize>,
) -> Result<TaskRequest, OpenAiError> {
    sampling.validate()?;
    let id = ModelId::parse(model).map_err(|e| match e {
        ModelIdError::Unknown(_) => OpenAiError::new(
            ErrorEnvelope::new(ErrorCode::ModelNotFound, e.to_string()),
            Some("model"),
        ),
        ModelIdError::Invalid(message) => OpenAiError::invalid(message, Some("model")),
    })?;
    if let Some(user) = &sampling.user {
        tracing::info!("OpenAI request for {model} from user `{user}`");
    }
    Ok(TaskRequest {
        node: id.node,
        max_tokens: max_tokens.or(sampling.max_tokens),
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        seed: sampling.seed,
        stop: sampling.stop.clone().map(rbee_api::openai::Stop::into_vec),
        frequency_penalty: sampling.frequency_penalty,
        presence_penalty: sampling.presence_penalty,
        logit_bias: sampling.logit_bias.clone().filter(|b| !b.is_empty()),
        keep_alive: rbee_api::ollama::keep_alive_secs(sampling.keep_alive.as_ref())
            .map_err(|e| OpenAiError::invalid(e, Some("keep_alive")))?,
        ..TaskRequest::for_model(id.model_ref)
    })
}

pub async fn chat(State(state): State<AppState>, body: Bytes) -> Result<Response, OpenAiError> {
    let req: ChatCompletionRequest = parse_request(&body)?;
    let mut task = task_for(&req.model, &req.sampling, req.max_completion_tokens)?;
    task.logprobs = req.logprobs()?;
    task.format = (req.response_format.as_ref()).and_then(|f| f.output_format());
    task.chat_template = req.chat_template.clone();
    if let Some((tools, choice)) = req.tools()? {
        task.tools = Some(tools);
        task.tool_choice = Some(choice);
    }
    if req.messages.is_empty() {
        return Err(OpenAiError::invalid(
            "`messages` is empty".into(),
            Some("messages"),
        ));
    }
    let messages = req
        .messages
        .iter()
        .map(|m| m.to_chat())
        .collect::<Result<_, _>>()?;
    task.messages = Some(messages);
    answer(state, Kind::Chat, req.model, task, &req.sampling).await
}

pub async fn completions(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let req: CompletionRequest = parse_request(&body)?;
    if req.echo == Some(true) {
        return Err(OpenAiError::invalid(
            "echo is not supported".into(),
            Some("echo"),
        ));
    }
    let mut task = task_for(&req.model, &req.sampling, None)?;
    task.logprobs = req.logprobs()?;
    task.prompt = Some(req.prompt.into_text()?);
    answer(state, Kind::Completion, req.model, task, &req.sampling).await
}

/// Names and shapes the answer's pieces for one request.
struct Shaper {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    /// Whether log-probabilities were asked for.
    logprobs: bool,
    /// Whether the answer may call tools: its text and calls then come from the task's end
    /// (the tokens before it are the model's raw call syntax).
    tools: bool,
    /// Bytes of answer text sent so far (a completion's `text_offset`).
    sent: usize,
}

impl Shaper {
    fn chunk(
        &mut self,
        delta: Delta,
        lp: &[TokenLogprob],
        finish: Option<&str>,
        usage: Option<Usage>,
    ) -> StreamItem {
        // A chunk that carries only the usage has no choices.
        let choice = (delta != Delta::default() || finish.is_some()).then_some(delta);
        let with_text = self.logprobs && !lp.is_empty();
        match self.kind {
            Kind::Chat => StreamItem::Chat(ChatCompletionChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk".into(),
                created: self.created,
                model: self.model.clone(),
                choices: (choice.into_iter())
                    .map(|delta| ChunkChoice {
                        index: 0,
                        delta,
                        finish_reason: finish.map(str::to_owned),
                        logprobs: with_text.then(|| ChoiceLogprobs::new(lp)),
                    })
                    .collect(),
                usage,
            }),
            Kind::Completion => {
                let text = choice.map(|d| d.content.unwrap_or_default());
                let lp = with_text.then(|| CompletionLogprobs::new(lp, self.sent));
                self.sent += text.as_ref().map_or(0, String::len);
                StreamItem::Completion(self.completion(text, lp, finish, usage))
            }
        }
    }

    fn completion(
        &self,
        text: Option<String>,
        logprobs: Option<CompletionLogprobs>,
        finish: Option<&str>,
        usage: Option<Usage>,
    ) -> Completion {
        Completion {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: (text.into_iter())
                .map(|text| CompletionChoice {
                    index: 0,
                    text,
                    finish_reason: finish.map(str::to_owned),
                    logprobs: logprobs.clone(),
                })
                .collect(),
            usage,
        }
    }

    fn text(text: String) -> Delta {
        Delta {
            content: Some(text),
            ..Delta::default()
        }
    }

    /// The answer's text and calls when tools were offered, read by the worker.
    fn outcome(end: &EndEvent) -> (Option<String>, Vec<ToolCall>) {
        let outcome = end.tools.clone().unwrap_or_default();
        let calls: Vec<ToolCall> = outcome.tool_calls.iter().map(ToolCall::from).collect();
        let content = (!outcome.content.is_empty() || calls.is_empty()).then_some(outcome.content);
        (content, calls)
    }

    fn finish(&self, end: &EndEvent, calls: &[ToolCall]) -> &'static str {
        if calls.is_empty() {
            finish_reason(end.stop_reason)
        } else {
            "tool_calls"
        }
    }

    fn whole(&self, text: String, lp: &[TokenLogprob], end: &EndEvent) -> Answer {
        let usage = Usage::new(end.tokens_in, end.tokens_out);
        if self.kind == Kind::Completion {
            // A finished completion is its last chunk with all the text and the usage.
            let finish = finish_reason(end.stop_reason);
            let lp = self.logprobs.then(|| CompletionLogprobs::new(lp, 0));
            return Answer::Completion(self.completion(Some(text), lp, Some(finish), Some(usage)));
        }
        let (content, tool_calls) = if self.tools {
            Self::outcome(end)
        } else {
            (Some(text), Vec::new())
        };
        let finish = self.finish(end, &tool_calls);
        Answer::Chat(ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content,
                    tool_calls,
                },
                finish_reason: finish.to_owned(),
                logprobs: self.logprobs.then(|| ChoiceLogprobs::new(lp)),
            }],
            usage,
        })
    }
}

/// What the task produced before the answer could start.
enum Opening {
    Token(TokenEvent),
    End(EndEvent),
}

async fn opening(rx: &mut mpsc::Receiver<TaskEvent>) -> Result<Opening, ErrorEnvelope> {
    while let Some(event) = rx.recv().await {
        match event {
            TaskEvent::Token(t) => return Ok(Opening::Token(t)),
            TaskEvent::End(end) => return Ok(Opening::End(end)),
            TaskEvent::Error(e) => return Err(e),
            _ => {}
        }
    }
    Err(ended_early())
}

/// A task's events stopped before its `end` or `error`: never a success.
fn ended_early() -> ErrorEnvelope {
    ErrorEnvelope::new(ErrorCode::Internal, "the task ended without an `end` event")
}

async fn answer(
    state: AppState,
    kind: Kind,
    model: String,
    task: TaskRequest,
    sampling: &Sampling,
) -> Result<Response, OpenAiError> {
    let logprobs = task.logprobs.is_some();
    let tools = task.tools.is_some();
    let (_, mut rx) =
        crate::tasks::launch(&state, task).map_err(|e| OpenAiError::new(e.envelope(), None))?;
    let shaper = Shaper {
        kind,
        id: format!(
            "{}-{}",
            if kind == Kind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            uuid::Uuid::new_v4().simple()
        ),
        created: now_unix(),
        model,
        logprobs,
        tools,
        sent: 0,
    };
    let first = opening(&mut rx).await.map_err(|e| {
        // The worker names `format` or `tools` when it cannot enforce what they ask.
        let param = match e.error.details.get("field").and_then(|f| f.as_str()) {
            Some("format") => Some("response_format"),
            Some("tools") => Some("tools"),
            _ => None,
        };
        OpenAiError::new(e, param)
    })?;
    Ok(if sampling.streaming() {
        stream(shaper, first, rx, sampling.include_usage())
    } else {
        whole(shaper, first, rx)
            .await
            .map_err(|e| OpenAiError::new(e, None))?
    })
}

async fn whole(
    shaper: Shaper,
    first: Opening,
    mut rx: mpsc::Receiver<TaskEvent>,
) -> Result<Response, ErrorEnvelope> {
    let mut text = String::new();
    let mut lp = Vec::new();
    let mut take = |t: TokenEvent| {
        text.push_str(&t.t);
        lp.extend(t.lp);
    };
    let mut end = match first {
        Opening::End(end) => Some(end),
        Opening::Token(t) => {
            take(t);
            None
        }
    };
    while end.is_none() {
        match rx.recv().await {
            Some(TaskEvent::Token(t)) => take(t),
            Some(TaskEvent::End(e)) => end = Some(e),
            Some(TaskEvent::Error(e)) => return Err(e),
            Some(_) => {}
            None => return Err(ended_early()),
        }
    }
    let end = end.unwrap_or_else(|| unreachable!("the loop ends with an end event"));
    Ok(Json(shaper.whole(text, &lp, &end)).into_response())
}

fn stream(
    mut shaper: Shaper,
    first: Opening,
    mut rx: mpsc::Receiver<TaskEvent>,
    include_usage: bool,
) -> Response {
    let (tx, out) = mpsc::channel::<StreamItem>(64);
    tokio::spawn(async move {
        let send = |v: StreamItem| {
            let tx = tx.clone();
            async move { tx.send(v).await.is_ok() }
        };
        if shaper.kind == Kind::Chat {
            let role = Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                tool_calls: None,
            };
            if !send(shaper.chunk(role, &[], None, None)).await {
                return;
            }
        }
        let mut next = Some(match first {
            Opening::Token(t) => TaskEvent::Token(t),
            Opening::End(end) => TaskEvent::End(end),
        });
        loop {
            let event = match next.take() {
                Some(e) => e,
                None => match rx.recv().await {
                    Some(e) => e,
                    None => TaskEvent::Error(ended_early()),
                },
            };
            match event {
                // With tools, the text and calls come whole with the end.
                TaskEvent::Token(_) if shaper.tools => {}
                TaskEvent::Token(t) => {
                    let delivered = send(shaper.chunk(Shaper::text(t.t), &t.lp, None, None)).await;
                    if !delivered {
                        // The client went away: dropping `rx` cancels the task.
                        return;
                    }
                }
                TaskEvent::End(end) => {
                    let mut finish = finish_reason(end.stop_reason);
                    if shaper.tools {
                        let (content, calls) = Shaper::outcome(&end);
                        finish = shaper.finish(&end, &calls);
                        if let Some(text) = content.filter(|c| !c.is_empty()) {
                            let _ = send(shaper.chunk(Shaper::text(text), &[], None, None)).await;
                        }
                        if !calls.is_empty() {
                            let deltas = (calls.into_iter().enumerate())
                                .map(|(index, c)| ToolCallDelta {
                                    index,
                                    id: c.id,
                                    kind: c.kind,
                                    function: c.function,
                                })
                                .collect();
                            let delta = Delta {
                                tool_calls: Some(deltas),
                                ..Delta::default()
                            };
                            let _ = send(shaper.chunk(delta, &[], None, None)).await;
                        }
                    }
                    let last = Shaper::text(String::new());
                    let _ = send(shaper.chunk(last, &[], Some(finish), None)).await;
                    if include_usage {
                        let usage = Usage::new(end.tokens_in, end.tokens_out);
                        let _ = send(shaper.chunk(Delta::default(), &[], None, Some(usage))).await;
                    }
                    return;
                }
                TaskEvent::Error(e) => {
                    let _ = send(StreamItem::Error(ErrorResponse::new(&e, None))).await;
                    return;
                }
                _ => {}
            }
        }
    });
    rbee_http::sse::data_stream(out)
}
