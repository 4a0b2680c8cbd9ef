//! Getting a task's model into the node's catalog, relaying the download's progress.

use futures::StreamExt;
use rbee_api::ModelRef;
use rbee_api::hive::{DownloadEvent, DownloadState};
use rbee_api::queen::TaskEvent;
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
    let mut progress = Box::pin(crate::downloads::follow(hive, model, &started.download_id).await?);
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return Err(cancelled()),
            event = progress.next() => event,
        };
        match event {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(complete @ DownloadEvent::Complete { .. })) => {
                events.send(TaskEvent::Download(complete)).await;
                events
                    .say("download_done", format!("{model} downloaded"))
                    .await;
                return Ok(());
            }
            Some(Ok(progress)) => events.send(TaskEvent::Download(progress)).await,
        }
    }
}
