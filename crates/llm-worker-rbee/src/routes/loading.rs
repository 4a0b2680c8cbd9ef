//! `GET /v1/loading/progress`: the loading log replayed, then followed until ready or failed.

use axum::extract::State;
use axum::response::Response;
use tokio::sync::mpsc;

use crate::state::AppState;

pub async fn progress(State(state): State<AppState>) -> Response {
    let (tx, rx) = mpsc::channel(64);
    let mut log = state.loading.subscribe();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let mut sent = 0;
        loop {
            let fresh: Vec<_> = log.borrow_and_update()[sent..].to_vec();
            sent += fresh.len();
            for event in fresh {
                let last = event.is_final();
                if tx.send(event).await.is_err() || last {
                    return;
                }
            }
            tokio::select! {
                changed = log.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
            }
        }
    });
    rbee_http::sse::stream(rx)
}
