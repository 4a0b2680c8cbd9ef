//! The one place where an error envelope becomes an HTTP response.

use axum::Json;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rbee_api::{ErrorCode, ErrorEnvelope};

/// An error envelope on its way to the client, with the status its code prescribes.
#[derive(Debug, Clone)]
pub struct ApiError(pub ErrorEnvelope);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ErrorEnvelope::new(code, message))
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
}

impl From<ErrorEnvelope> for ApiError {
    fn from(e: ErrorEnvelope) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.error.code;
        respond(code, Json(self.0))
    }
}

/// Seconds a client refused with `ALL_SLOTS_BUSY` is told to wait before trying again.
pub const RETRY_AFTER_SECS: u64 = 2;

/// The response for an error of `code` with `body` (the envelope, or a shape of it): the
/// status the code prescribes, and `Retry-After` when waiting is the remedy.
pub fn respond(code: ErrorCode, body: impl IntoResponse) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body).into_response();
    if code == ErrorCode::AllSlotsBusy {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

/// Fallback handler: unknown routes answer in the envelope too.
pub async fn unknown_endpoint(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownEndpoint,
        format!("no such endpoint: {}", uri.path()),
    )
}

/// Middleware: an error answer that is not already JSON — axum's own 405, a body over the
/// size limit (413), a query or path that does not parse (400) — is rewritten into the
/// envelope, so every error of every route has the same shape.
pub async fn envelope_every_error(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let code = match status.as_u16() {
        401 => ErrorCode::InvalidApiKey,
        404 => ErrorCode::UnknownEndpoint,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        500.. => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let allow = resp.headers().get(ALLOW).cloned();
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match (text.is_empty(), code) {
        (false, _) => text,
        (true, ErrorCode::MethodNotAllowed) => format!(
            "this endpoint does not answer that method (it accepts {})",
            allow
                .as_ref()
                .and_then(|a| a.to_str().ok())
                .unwrap_or("another")
        ),
        (true, _) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut answer = ApiError::new(code, message).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(ALLOW, allow);
    }
    answer
}

/// An error and every cause under it, as one line: `outer: inner: innermost`.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}
