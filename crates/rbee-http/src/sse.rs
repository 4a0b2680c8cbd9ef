//! Typed Server-Sent Event responses.
//!
//! A producer sends [`SseMessage`]s into a channel; the response writes each as
//! `event: <name>` / `data: <json>` and closes with `data: [DONE]` once the producer is done.
//! Dropping the response (the client went away) closes the channel, which producers observe
//! to stop their work.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rbee_api::sse::{DONE, SseMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Streams every message received on `rx`, then `[DONE]`.
pub fn stream<T: SseMessage + Send + 'static>(rx: mpsc::Receiver<T>) -> Response {
    let events = ReceiverStream::new(rx)
        .map(|m| Ok::<_, Infallible>(Event::default().event(m.event()).data(m.data())))
        .chain(futures::stream::once(async {
            Ok(Event::default().data(DONE))
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
