//! `GET /v2/logs?node=&follow=`: the node's hive and worker logs, relayed.

use axum::extract::{Query, State};
use axum::response::Response;
use futures::StreamExt;
use rbee_api::NodeName;
use rbee_api::hive::LogLine;
use rbee_api::sse::SseEvent;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::error::QueenError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default = "NodeName::localhost")]
    node: NodeName,
    #[serde(default)]
    follow: bool,
}

pub async fn stream(
    State(state): State<AppState>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, QueenError> {
    let hive = state.hives.client(&q.node).await?;
    let resp = hive.logs(q.follow).await.map_err(|e| e.from_hive(&hive))?;
    let (tx, rx) = mpsc::channel::<LogLine>(256);
    tokio::spawn(async move {
        let mut frames = Box::pin(rbee_http::client::frames(resp));
        loop {
            // A client that leaves closes the hive's stream at once, even a quiet one.
            let frame = tokio::select! {
                frame = frames.next() => frame,
                () = tx.closed() => return,
            };
            let Some(Ok(frame)) = frame else { return };
            if let Some(Ok(line)) = LogLine::from_frame(&frame)
                && tx.send(line).await.is_err()
            {
                return;
            }
        }
    });
    Ok(rbee_http::sse::stream(rx))
}
