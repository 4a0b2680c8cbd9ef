//! Getting a task's model into the node's catalog, relaying the download's progress.

use futures::StreamExt;
use rbee_api::ModelRef;
use rbee_api::hive::{DownloadEvent, DownloadState};
use rbee_api::queen::TaskEvent;
use rbee_api::sse::SseEvent;
use tokio_util::sync::CancellationToken;

use super::{Events, cancelled};
use crate::clients::HiveClient;
use crate::error::QueenError;

/// Makes sure `hive` has `model`, relaying download progress.
pub(super) async fn provision(
    hive: &HiveClient,
    model: &ModelRef,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<(), QueenError> {
    let started = hive.download(model).await.map_err(|e| e.from_hive(hive))?;
    if started.state == DownloadState::Present {
        events
            .say(
                "model_present",
                format!("{model} is in the catalog of {}", hive.node),
            )
            .await;
        return Ok(());
    }
    events
        .say(
            "download_start",
            format!("Downloading {model} on {}", hive.node),
        )
        .await;
    let progress = hive
        .download_progress(&started.download_id)
        .await
        .map_err(|e| e.from_hive(hive))?;
    let mut stream = Box::pin(rbee_http::client::frames(progress));
    loop {
        let frame = tokio::select! {
            () = cancel.cancelled() => return Err(cancelled()),
            frame = stream.next() => frame,
        };
        let broken = |reason: String| QueenError::StreamBroken {
            what: format!("the download progress of {model} from {}", hive.node),
            reason,
        };
        let frame = frame
            .ok_or_else(|| broken("it ended without an outcome".into()))?
            .map_err(|e| broken(e.to_string()))?;
        let event = match DownloadEvent::from_frame(&frame) {
            Some(Ok(event)) => event,
            Some(Err(e)) => return Err(broken(format!("unreadable event: {e}"))),
            None => continue,
        };
        match event {
            DownloadEvent::Failed { error } => return Err(QueenError::Remote(error)),
            complete @ DownloadEvent::Complete { .. } => {
                events.send(TaskEvent::Download(complete)).await;
                events
                    .say("download_done", format!("{model} downloaded"))
                    .await;
                return Ok(());
            }
            progress => events.send(TaskEvent::Download(progress)).await,
        }
    }
}
