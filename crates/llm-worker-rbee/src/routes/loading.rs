//! `GET /v1/loading/progress`: the loading log replayed, then followed until ready or failed.

use axum::extract::State;
use axum::response::Response;
use rbee_api::worker::LoadingEvent;

use crate::state::AppState;

pub async fn progress(State(state): State<AppState>) -> Response {
    let shutdown = state.shutdown.clone();
    rbee_http::sse::replay(
        state.loading.subscribe(),
        LoadingEvent::is_final,
        async move { shutdown.cancelled().await },
    )
}
