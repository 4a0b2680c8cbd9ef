//! The hive's HTTP API (`docs/api.md`), one module per resource.

mod admin;
mod logs;
mod models;
mod status;
mod workers;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use rbee_api::routes::hive as paths;
use rbee_http::auth::{ApiKey, require_bearer};

use crate::state::AppState;

/// Every route. Health is open; the worker callbacks authenticate with the worker's own key;
/// everything else needs the hive key.
pub fn router(state: AppState, key: ApiKey) -> Router {
    let protected = Router::new()
        .route(paths::WORKERS_LIST, get(workers::list))
        .route(paths::WORKERS_SPAWN, post(workers::spawn))
        .route(paths::WORKERS_SHUTDOWN, post(workers::shutdown))
        .route(paths::WORKERS_KEEP_ALIVE, post(workers::keep_alive))
        .route(paths::MODELS, get(models::list))
        .route(paths::RESOURCES, get(models::resources))
        .route(paths::PREFLIGHT, post(models::preflight))
        .route(paths::MODELS_DOWNLOAD, post(models::download))
        .route(paths::MODELS_DOWNLOAD_PROGRESS, get(models::progress))
        .route(paths::MODELS_INFO, get(models::info))
        .route(paths::MODELS_DELETE, post(models::delete))
        .route(paths::MODELS_SETTINGS, post(models::settings))
        .route(paths::LOGS, get(logs::stream))
        .route(paths::ADMIN_SHUTDOWN, post(admin::shutdown))
        .route(paths::METRICS, get(workers::metrics))
        .route_layer(from_fn_with_state(key, require_bearer));
    Router::new()
        .route(paths::HEALTH, get(status::health))
        .route(paths::WORKERS_FAILED, post(workers::failed_callback))
        .merge(protected)
        .fallback(rbee_http::error::unknown_endpoint)
        .layer(axum::middleware::from_fn(
            rbee_http::error::envelope_every_error,
        ))
        .with_state(state)
}
