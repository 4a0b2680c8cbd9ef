//! Bearer-key authentication for every route but health.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rbee_api::ErrorCode;

use crate::ApiError;

/// The key a daemon accepts, shared with the middleware.
#[derive(Clone)]
pub struct ApiKey(Arc<str>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    pub fn new(key: &str) -> Self {
        Self(Arc::from(key))
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// A new random key (48 hex digits): for a hive's workers, and a queen's hives.
pub fn new_key() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Middleware: `Authorization: Bearer <key>` or `401 INVALID_API_KEY`.
pub async fn require_bearer(State(key): State<ApiKey>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(k) if key.matches(k) => next.run(req).await,
        Some(_) => {
            ApiError::new(ErrorCode::InvalidApiKey, "the API key is not valid").into_response()
        }
        None => ApiError::new(
            ErrorCode::InvalidApiKey,
            "missing API key: send `Authorization: Bearer <key>`",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_only_itself() {
        let k = ApiKey::new("secret");
        assert!(k.matches("secret"));
        assert!(!k.matches("secreT"));
        assert!(!k.matches("secret2"));
        assert!(!k.matches(""));
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
    }
}
