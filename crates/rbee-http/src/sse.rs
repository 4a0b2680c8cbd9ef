//! Typed Server-Sent Event responses.
//!
//! A producer sends [`SseEvent`]s into a channel; the response writes each as
//! `event: <name>` / `data: <json>` and closes with `data: [DONE]` once the producer is done.
//! Dropping the response (the client went away) closes the channel, which producers observe
//! to stop their work.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rbee_api::sse::{DONE, SseEvent};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};

/// How often an idle stream sends a comment, so a reader can tell a quiet producer (a long
/// prompt being processed) from a peer that has gone away.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Streams every message received on `rx`, then `[DONE]`.
pub fn stream<T: SseEvent + Send + 'static>(rx: mpsc::Receiver<T>) -> Response {
    events(ReceiverStream::new(rx))
}

/// [`stream`] for a producer that must never wait for the reader (the worker's scheduler,
/// which serves every request from one thread); what it sends is bounded by its own work.
pub fn stream_unbounded<T: SseEvent + Send + 'static>(rx: mpsc::UnboundedReceiver<T>) -> Response {
    events(UnboundedReceiverStream::new(rx))
}

fn events<T: SseEvent + Send + 'static>(
    messages: impl futures::Stream<Item = T> + Send + 'static,
) -> Response {
    let events = messages
        .map(|m| Ok::<_, Infallible>(Event::default().event(m.event()).data(m.data())))
        .chain(futures::stream::once(async {
            Ok(Event::default().data(DONE))
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Streams each value received on `rx` as an unnamed event (`data: <json>`), then
/// `data: [DONE]`: the format OpenAI's streaming endpoints use.
pub fn data_stream<T: serde::Serialize + Send + 'static>(rx: mpsc::Receiver<T>) -> Response {
    let events = ReceiverStream::new(rx)
        .map(|v| {
            let json = serde_json::to_string(&v).unwrap_or_default();
            Ok::<_, Infallible>(Event::default().data(json))
        })
        .chain(futures::stream::once(async {
            Ok(Event::default().data(DONE))
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// A growing log of events: a producer pushes, every reader replays it from the start
/// ([`replay`]), so a client that connects late still sees each event in order.
#[derive(Debug)]
pub struct EventLog<T> {
    tx: watch::Sender<Vec<T>>,
}

impl<T> Default for EventLog<T> {
    fn default() -> Self {
        Self {
            tx: watch::channel(Vec::new()).0,
        }
    }
}

impl<T> EventLog<T> {
    pub fn push(&self, event: T) {
        self.tx.send_modify(|log| log.push(event));
    }

    pub fn subscribe(&self) -> watch::Receiver<Vec<T>> {
        self.tx.subscribe()
    }
}

/// Streams a growing event log: every event so far, then each new one, ending after the
/// first event `is_final` accepts (or when `stop` resolves). A client that connects late
/// still sees every event, in order.
pub fn replay<T, S>(mut log: watch::Receiver<Vec<T>>, is_final: fn(&T) -> bool, stop: S) -> Response
where
    T: SseEvent + Clone + Send + Sync + 'static,
    S: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut sent = 0;
        loop {
            let fresh: Vec<T> = log.borrow_and_update()[sent..].to_vec();
            sent += fresh.len();
            for event in fresh {
                let last = is_final(&event);
                if tx.send(event).await.is_err() || last {
                    return;
                }
            }
            tokio::select! {
                changed = log.changed() => if changed.is_err() { return },
                () = &mut stop => return,
                () = tx.closed() => return,
            }
        }
    });
    stream(rx)
}
