//! Sending a request, and the rules its answer must keep.

use rbee_api::openai::ErrorResponse;
use rbee_api::routes::{queen, worker};
use rbee_api::{ErrorCode, ErrorEnvelope};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use tokio::time::{Instant, timeout_at};

use super::generate::{BODY_LIMIT, FuzzRequest, snippet};
use super::{ANSWER_WITHIN, Daemon};

/// The 5xx answers `docs/api.md` documents for a route, and this setup could meet. Any
/// other 5xx breaks the rules.
pub const DOCUMENTED_5XX: &[(Daemon, &str, u16, ErrorCode)] = &[
    // The worker refuses inference while its model loads or its slots are taken.
    (
        Daemon::Worker,
        worker::INFERENCE,
        503,
        ErrorCode::ModelNotReady,
    ),
    (
        Daemon::Worker,
        worker::INFERENCE,
        503,
        ErrorCode::AllSlotsBusy,
    ),
    // The queen asked about `localhost` before its hive has started.
    (
        Daemon::Queen,
        queen::WORKERS_HEALTH,
        504,
        ErrorCode::ConnectionTimeout,
    ),
    (
        Daemon::Queen,
        queen::LOGS,
        504,
        ErrorCode::ConnectionTimeout,
    ),
];

/// The queen's OpenAI-compatible routes, whose errors are `openai::ErrorResponse`.
const OPENAI_PATHS: &[&str] = &[
    queen::OPENAI_MODELS,
    queen::OPENAI_MODEL,
    queen::CHAT_COMPLETIONS,
    queen::COMPLETIONS,
];

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    /// Empty for an event stream, whose body is not read.
    pub body: Vec<u8>,
}

impl Answer {
    pub fn describe(&self) -> String {
        format!(
            "{} {:?}: {}",
            self.status,
            self.content_type,
            snippet(&self.body)
        )
    }
}

/// A rule an answer broke, and what was seen.
pub struct Verdict {
    pub rule: String,
    pub detail: String,
}

impl Verdict {
    fn new(rule: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            detail: detail.into(),
        }
    }
}

pub enum Exchange {
    Answered(Answer),
    /// No answer: too slow, or the connection failed.
    Failed(Verdict),
    /// The HTTP client refused to build the request.
    Unsendable(String),
    /// An oversized body the daemon stopped reading: the connection closed under the
    /// client's write (no hang, no crash; checked by liveness after every request).
    ClosedEarly,
}

/// Sends `request` and reads its answer, all within [`ANSWER_WITHIN`]; of an event
/// stream, only the headers (a followed log stays open).
pub async fn exchange(client: &reqwest::Client, request: &FuzzRequest) -> Exchange {
    let built = match request.build(client) {
        Ok(built) => built,
        Err(e) => return Exchange::Unsendable(causes(&e)),
    };
    let deadline = Instant::now() + ANSWER_WITHIN;
    let response = match timeout_at(deadline, client.execute(built)).await {
        Err(_) => return Exchange::Failed(Verdict::new("no answer within 5 s", "")),
        Ok(Err(e)) => {
            let why = causes(&e);
            let oversized = request.body.as_ref().is_some_and(|b| b.len() > BODY_LIMIT);
            if oversized && why.contains("error writing a body") {
                return Exchange::ClosedEarly;
            }
            return Exchange::Failed(Verdict::new("a connection error instead of an answer", why));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status < 400 && content_type.starts_with("text/event-stream") {
        return Exchange::Answered(Answer {
            status,
            content_type,
            body: Vec::new(),
        });
    }
    match timeout_at(deadline, response.bytes()).await {
        Err(_) => Exchange::Failed(Verdict::new(
            format!("{status}, but its body not complete within 5 s"),
            "",
        )),
        Ok(Err(e)) => Exchange::Failed(Verdict::new(
            format!("{status}, but its body broke off"),
            causes(&e),
        )),
        Ok(Ok(body)) => Exchange::Answered(Answer {
            status,
            content_type,
            body: body.to_vec(),
        }),
    }
}

/// No undocumented 5xx; every error in the envelope (HEAD answers have no body).
pub fn judge(daemon: Daemon, request: &FuzzRequest, answer: &Answer) -> Result<(), Verdict> {
    let status = answer.status;
    if status < 400 {
        return Ok(());
    }
    let path = request.url.path();
    let code = if request.method == Method::HEAD {
        None
    } else {
        Some(error_code(daemon, path, answer)?)
    };
    let documented = DOCUMENTED_5XX.iter().any(|(d, p, s, c)| {
        *d == daemon && *p == path && *s == status && code.is_none_or(|code| code == *c)
    });
    if status >= 500 && !documented {
        let code = code.map_or_else(String::new, |c| c.to_string());
        return Err(Verdict::new(format!("an undocumented {status}"), code));
    }
    Ok(())
}

/// The code of an error answer, which must be the rbee envelope, or on the OpenAI routes
/// `openai::ErrorResponse` (the envelope plus `type` and `param`), whatever refused it.
fn error_code(daemon: Daemon, path: &str, answer: &Answer) -> Result<ErrorCode, Verdict> {
    let status = answer.status;
    let openai = daemon == Daemon::Queen && OPENAI_PATHS.contains(&path);
    if openai {
        let e = serde_json::from_slice::<ErrorResponse>(&answer.body).map_err(|e| {
            Verdict::new(
                format!("{status} without the OpenAI error object"),
                e.to_string(),
            )
        })?;
        if e.error.message.is_empty() {
            return Err(Verdict::new(
                format!("{status} with an empty error message"),
                e.error.code.to_string(),
            ));
        }
        return Ok(e.error.code);
    }
    let envelope: ErrorEnvelope = serde_json::from_slice(&answer.body).map_err(|e| {
        Verdict::new(
            format!("{status} without the rbee error envelope"),
            e.to_string(),
        )
    })?;
    let code = envelope.error.code;
    if envelope.error.message.is_empty() {
        return Err(Verdict::new(
            format!("{status} with an empty error message"),
            code.to_string(),
        ));
    }
    Ok(code)
}

/// An error with every cause under it, on one line.
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
