//! Bearer-key authentication for every route but health.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
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

/// A key as given on a command line or in the environment: not empty, no white space (for
/// `value_parser`; an empty key would guard nothing).
pub fn parse_key(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("the API key is empty; give a real one (e.g. `openssl rand -hex 24`)".into());
    }
    if text.chars().any(char::is_whitespace) {
        return Err("the API key holds white space".into());
    }
    Ok(text.to_owned())
}

/// A new random key (48 hex digits): for a hive's workers, and a queen's hives.
pub fn new_key() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of an `Authorization: Bearer <key>` header (the scheme in any case, as RFC 7235
/// says), if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim_start();
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Middleware: `Authorization: Bearer <key>` or `401 INVALID_API_KEY`.
pub async fn require_bearer(State(key): State<ApiKey>, req: Request, next: Next) -> Response {
    match bearer(req.headers()) {
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
    fn the_bearer_scheme_is_read_in_any_case() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, value.parse().unwrap());
            bearer(&headers).map(str::to_owned)
        };
        assert_eq!(with("Bearer k1").as_deref(), Some("k1"));
        assert_eq!(with("bearer k1").as_deref(), Some("k1"));
        assert_eq!(with("BEARER  k1 ").as_deref(), Some("k1"));
        assert_eq!(with("Basic k1"), None);
        assert_eq!(with("Bearer"), None);
    }

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
