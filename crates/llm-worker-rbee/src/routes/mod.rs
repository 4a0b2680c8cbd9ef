//! The worker's HTTP API (`docs/api.md`), one module per resource.

mod admin;
mod inference;
mod loading;
mod status;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use rbee_api::routes::worker as paths;
use rbee_http::auth::{ApiKey, require_bearer};

use crate::state::AppState;

/// Every route; all but health require the worker's API key.
pub fn router(state: AppState, key: ApiKey) -> Router {
    let protected = Router::new()
        .route(paths::READY, get(status::ready))
        .route(paths::LOADING_PROGRESS, get(loading::progress))
        .route(paths::INFERENCE, post(inference::start))
        .route(paths::INFERENCE_JOB, delete(inference::cancel))
        .route(paths::ADMIN_SHUTDOWN, post(admin::shutdown))
        .route(paths::METRICS, get(inference::metrics))
        .route_layer(from_fn_with_state(key, require_bearer));
    Router::new()
        .route(paths::HEALTH, get(status::health))
        .merge(protected)
        .fallback(rbee_http::error::unknown_endpoint)
        .layer(axum::middleware::from_fn(
            rbee_http::error::envelope_every_error,
        ))
        .with_state(state)
}
