//! `GET /v1/logs?follow=true&source=worker:<id>`: captured hive and worker log lines.

use axum::extract::{Query, State};
use axum::response::Response;
use rbee_api::hive::LogSource;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use crate::state::AppState;

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    follow: bool,
    /// Only lines of this source (`hive`, `worker:<id>`).
    source: Option<LogSource>,
}

pub async fn stream(State(state): State<AppState>, Query(q): Query<LogsQuery>) -> Response {
    let (history, mut live) = state.logs.subscribe();
    let (tx, rx) = mpsc::channel(256);
    let shutdown = state.shutdown.clone();
    let wanted =
        move |line: &rbee_api::hive::LogLine| q.source.as_ref().is_none_or(|s| *s == line.source);
    let follow = q.follow;
    tokio::spawn(async move {
        for line in history.into_iter().filter(|l| wanted(l)) {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            let line = tokio::select! {
                line = live.recv() => line,
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
            };
            match line {
                Ok(line) if wanted(&line) => {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    rbee_http::sse::stream(rx)
}
