//! The one place where an error envelope becomes an HTTP response.

use axum::Json;
use axum::http::StatusCode;
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
        let status = StatusCode::from_u16(self.0.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

/// Fallback handler: unknown routes answer in the envelope too.
pub async fn unknown_endpoint(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownEndpoint,
        format!("no such endpoint: {}", uri.path()),
    )
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
