//! The queen's HTTP API (`docs/api.md`), one module per resource.

mod beehives;
mod dashboard;
mod lab;
mod logs;
mod models;
mod ollama;
mod openai;
mod status;
mod tasks;
mod workers;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use rbee_api::routes::queen as paths;
use rbee_http::auth::{ApiKey, require_bearer};

use crate::state::AppState;

/// Every route; with a key configured, all but health and the dashboard's files require it.
pub fn router(state: AppState, key: Option<ApiKey>) -> Router {
    let mut api = Router::new()
        .route(paths::BEEHIVES_ADD, post(beehives::add))
        .route(paths::BEEHIVES_LIST, get(beehives::list))
        .route(paths::BEEHIVES_REMOVE, post(beehives::remove))
        .route(paths::BEEHIVES_INSTALL, post(beehives::install))
        .route(paths::BEEHIVES_SETTINGS, post(beehives::settings))
        .route(paths::BEEHIVES_STOP, post(beehives::stop))
        .route(paths::LAB_EVENTS, get(lab::events))
        .route(paths::TASKS, post(tasks::start))
        .route(paths::TASK, delete(tasks::cancel))
        .route(paths::WORKERS_LIST, get(workers::list))
        .route(paths::WORKERS_HEALTH, get(workers::health))
        .route(paths::WORKERS_SHUTDOWN, post(workers::shutdown))
        .route(paths::LOGS, get(logs::stream))
        .route(paths::MODELS_LIST, get(models::list))
        .route(paths::MODELS_PULL, post(models::pull))
        .route(paths::MODELS_REMOVE, post(models::remove))
        .route(paths::MODELS_SETTINGS, post(models::settings))
        .route(paths::MODELS_SHOW, get(models::show))
        .route(paths::METRICS, get(status::metrics))
        .route(paths::OPENAI_MODELS, get(openai::models))
        .route(paths::OPENAI_MODEL, get(openai::model))
        .route(paths::CHAT_COMPLETIONS, post(openai::chat))
        .route(paths::COMPLETIONS, post(openai::completions))
        .route(paths::OLLAMA_VERSION, get(ollama::version))
        .route(paths::OLLAMA_TAGS, get(ollama::tags))
        .route(paths::OLLAMA_PS, get(ollama::ps))
        .route(paths::OLLAMA_SHOW, post(ollama::show))
        .route(paths::OLLAMA_PULL, post(ollama::pull))
        .route(paths::OLLAMA_DELETE, delete(ollama::delete))
        .route(paths::OLLAMA_CHAT, post(ollama::chat))
        .route(paths::OLLAMA_GENERATE, post(ollama::generate));
    if let Some(key) = key {
        api = api.route_layer(from_fn_with_state(key, require_bearer));
    }
    Router::new()
        .route(paths::HEALTH, get(status::health))
        .route(paths::DASHBOARD, get(dashboard::page))
        .route(paths::DASHBOARD_ASSET, get(dashboard::asset))
        .merge(api)
        .fallback(rbee_http::error::unknown_endpoint)
        .layer(axum::middleware::from_fn(
            rbee_http::error::envelope_every_error,
        ))
        .layer(axum::middleware::from_fn(openai::shape_errors))
        .with_state(state)
}
