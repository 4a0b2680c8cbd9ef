//! The client side: turning another rbee process's answers into typed values.
//!
//! Every rbee server answers errors with the envelope and streams with SSE ending in
//! `[DONE]`; these helpers read both the same way everywhere.

use std::time::Duration;

use futures::{Stream, StreamExt};
use rbee_api::sse::{SseDecoder, SseFrame};
use rbee_api::{ErrorCode, ErrorEnvelope};

/// The error envelope of a failed response; a made-up one when the body is not an envelope.
pub async fn envelope_of(resp: reqwest::Response) -> ErrorEnvelope {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_else(|_| {
        ErrorEnvelope::new(
            ErrorCode::Internal,
            format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ),
        )
    })
}

/// The frames of an event-stream response, ending before `[DONE]`. A broken connection is
/// an `Err` item; a stream that ends without `[DONE]` ends with an `Err` too, so a producer
/// that died is never mistaken for one that finished.
pub fn frames(resp: reqwest::Response) -> impl Stream<Item = Result<SseFrame, StreamBreak>> + Send {
    frames_until_silent(resp, None)
}

/// Why an event stream ended without `[DONE]`.
#[derive(Debug, thiserror::Error)]
pub enum StreamBreak {
    #[error("no data for {} s", .0.as_secs_f32())]
    Silent(Duration),
    #[error("stream broken: {0}")]
    Broken(#[source] reqwest::Error),
    #[error("stream ended before [DONE]")]
    Ended,
}

/// [`frames`], ending with an `Err` when no byte (not even a keep-alive comment) arrives for
/// `silence`: the peer's machine or the network between us has gone away.
pub fn frames_until_silent(
    resp: reqwest::Response,
    silence: Option<Duration>,
) -> impl Stream<Item = Result<SseFrame, StreamBreak>> + Send {
    let body = resp.bytes_stream();
    futures::stream::unfold(
        (
            body,
            SseDecoder::new(),
            std::collections::VecDeque::new(),
            false,
        ),
        move |(mut body, mut decoder, mut pending, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(frame) = pending.pop_front() {
                    let frame: SseFrame = frame;
                    if frame.is_done() {
                        return None;
                    }
                    return Some((Ok(frame), (body, decoder, pending, false)));
                }
                let next = match silence {
                    Some(limit) => match tokio::time::timeout(limit, body.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            return Some((
                                Err(StreamBreak::Silent(limit)),
                                (body, decoder, pending, true),
                            ));
                        }
                    },
                    None => body.next().await,
                };
                match next {
                    Some(Ok(chunk)) => pending.extend(decoder.feed(&chunk)),
                    Some(Err(e)) => {
                        return Some((Err(StreamBreak::Broken(e)), (body, decoder, pending, true)));
                    }
                    None => {
                        return Some((Err(StreamBreak::Ended), (body, decoder, pending, true)));
                    }
                }
            }
        },
    )
}
