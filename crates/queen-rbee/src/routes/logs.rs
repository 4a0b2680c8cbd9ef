//! `GET /v2/logs?node=&follow=`: the node's hive and worker logs, relayed.

use axum::extract::{Query, State};
use axum::response::Response;
use futures::StreamExt;
use rbee_api::hive::LogLine;
use rbee_api::queen::LOCALHOST;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::clients::CallError;
use crate::error::QueenError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default = "localhost")]
    node: String,
    #[serde(default)]
    follow: bool,
}

fn localhost() -> String {
    LOCALHOST.to_owned()
}

pub async fn stream(
    State(state): State<AppState>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, QueenError> {
    let hive = state.hives.client(&q.node).await?;
    let resp = hive.logs(q.follow).await.map_err(|e| match e {
        CallError::Refused(env) => QueenError::Remote(env),
        CallError::Unreachable(reason) => QueenError::ConnectionTimeout {
            node: q.node.clone(),
            url: hive.url.clone(),
            attempts: 1,
            reason,
        },
    })?;
    let (tx, rx) = mpsc::channel::<LogLine>(256);
    tokio::spawn(async move {
        let mut frames = Box::pin(rbee_http::client::frames(resp));
        while let Some(Ok(frame)) = frames.next().await {
            if let Ok(line) = serde_json::from_str::<LogLine>(&frame.data)
                && tx.send(line).await.is_err()
            {
                return;
            }
        }
    });
    Ok(rbee_http::sse::stream(rx))
}
