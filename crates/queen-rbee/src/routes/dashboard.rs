//! The web dashboard: `GET /` is its page, `GET /ui/{file}` its script and styles, all built
//! into the binary from `web/` (plain HTML, CSS and JavaScript: no build step, nothing
//! fetched from elsewhere). They are served without the key; the page asks for it, keeps it
//! for the browser tab and sends it as a bearer header with every call it makes.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use rbee_http::error::ApiError;

const PAGE: &str = include_str!("../../web/index.html");

/// The files under `/ui/`, with their content types.
const ASSETS: [(&str, &str, &str); 2] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
];

/// Only this queen's own files and calls; no inline script, no plug-ins, no forms sent
/// anywhere, no framing.
const POLICY: &str = "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> Response {
    served("text/html; charset=utf-8", PAGE)
}

pub async fn asset(Path(file): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => Ok(served(kind, body)),
        None => Err(rbee_http::error::unknown_endpoint(uri).await),
    }
}

fn served(kind: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    // A new binary serves new files: the browser asks again rather than keep an old copy.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}
