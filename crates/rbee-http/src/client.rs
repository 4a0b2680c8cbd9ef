//! The client side: turning another rbee process's answers into typed values.
//!
//! Every rbee server answers errors with the envelope and streams with SSE ending in
//! `[DONE]`; these helpers read both the same way everywhere.

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
pub fn frames(resp: reqwest::Response) -> impl Stream<Item = Result<SseFrame, String>> + Send {
    let body = resp.bytes_stream();
    futures::stream::unfold(
        (
            body,
            SseDecoder::new(),
            std::collections::VecDeque::new(),
            false,
        ),
        |(mut body, mut decoder, mut pending, done)| async move {
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
                match body.next().await {
                    Some(Ok(chunk)) => pending.extend(decoder.feed(&chunk)),
                    Some(Err(e)) => {
                        return Some((
                            Err(format!("stream broken: {e}")),
                            (body, decoder, pending, true),
                        ));
                    }
                    None => {
                        return Some((
                            Err("stream ended before [DONE]".to_owned()),
                            (body, decoder, pending, true),
                        ));
                    }
                }
            }
        },
    )
}
