//! `GET /v2/lab/events`: the lab's state, pushed to the web dashboard (and any client) as a
//! [`LabSnapshot`] at once and then every [`LabSnapshot::EVERY_MS`], from the queen's one
//! poller ([`crate::lab`]).

use axum::extract::State;
use axum::response::Response;
use rbee_api::queen::LabSnapshot;
use tokio::sync::mpsc;

use crate::error::QueenError;
use crate::state::AppState;

pub async fn events(State(state): State<AppState>) -> Result<Response, QueenError> {
    let mut lab = crate::lab::watch(&state);
    let (tx, rx) = mpsc::channel::<LabSnapshot>(1);
    tokio::spawn(async move {
        loop {
            let snapshot = tokio::select! {
                snapshot = lab.next() => snapshot,
                () = tx.closed() => return,
            };
            let Some(snapshot) = snapshot else { return };
            if tx.send(LabSnapshot::clone(&snapshot)).await.is_err() {
                return;
            }
        }
    });
    Ok(rbee_http::sse::stream(rx))
}
