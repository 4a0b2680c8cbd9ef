//! Following a hive's download of a model: the progress a task, a pull (`rbee models pull`)
//! and Ollama's `/api/pull` each relay in their own shape.

use futures::{Stream, StreamExt};
use rbee_api::ModelRef;
use rbee_api::hive::DownloadEvent;
use rbee_api::sse::SseEvent;

use crate::clients::HiveClient;
use crate::error::QueenError;

/// The events of the download `download_id` of `model` on `hive`, from the first to
/// `complete` (the last item); a failed download, or a stream that breaks or ends early,
/// ends with an error instead.
pub async fn follow(
    hive: &HiveClient,
    model: &ModelRef,
    download_id: &str,
) -> Result<impl Stream<Item = Result<DownloadEvent, QueenError>> + Send + use<>, QueenError> {
    let progress = hive
        .download_progress(download_id)
        .await
        .map_err(|e| e.from_hive(hive))?;
    let what = format!("the download progress of {model} from {}", hive.node);
    let frames = Box::pin(rbee_http::client::frames(progress));
    Ok(futures::stream::unfold(
        Some((frames, what)),
        |reading| async move {
            let (mut frames, what) = reading?;
            let broken = |reason: String| QueenError::StreamBroken {
                what: what.clone(),
                reason,
            };
            loop {
                let frame = match frames.next().await {
                    None => return Some((Err(broken("it ended without an outcome".into())), None)),
                    Some(Err(e)) => return Some((Err(broken(e.to_string())), None)),
                    Some(Ok(frame)) => frame,
                };
                match DownloadEvent::from_frame(&frame) {
                    None => continue,
                    Some(Err(e)) => {
                        return Some((Err(broken(format!("unreadable event: {e}"))), None));
                    }
                    Some(Ok(DownloadEvent::Failed { error })) => {
                        return Some((Err(QueenError::Remote(error)), None));
                    }
                    Some(Ok(complete @ DownloadEvent::Complete { .. })) => {
                        return Some((Ok(complete), None));
                    }
                    Some(Ok(event)) => return Some((Ok(event), Some((frames, what)))),
                }
            }
        },
    ))
}
