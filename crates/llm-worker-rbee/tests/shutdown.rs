//! Stopping a worker: over HTTP or by signal, it exits 0 and running requests end.

use std::time::Duration;

use rbee_api::ErrorCode;
use rbee_api::worker::InferenceEvent;
use serde_json::json;

use crate::support::{Completion, Worker, read_sse, story_request};

#[tokio::test]
async fn admin_shutdown_exits_zero() {
    let mut w = Worker::ready(&[]).await;
    let resp = w.post("/v1/admin/shutdown").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let status = tokio::time::timeout(Duration::from_secs(30), w.child.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Starts a long answer and waits until the worker is generating it.
async fn long_answer(w: &Worker) -> reqwest::Response {
    let resp = w
        .post("/v1/inference")
        .json(&story_request(4000, json!({})))
        .send()
        .await
        .unwrap();
    w.wait_until("a slot in use", |r| {
        r["slots_available"].as_u64() < r["slots_total"].as_u64()
    })
    .await;
    resp
}

/// A stop the client did not ask for ends its stream with an error, never with `end`.
fn assert_stopped_mid_answer(out: &Completion) {
    let error = out
        .error()
        .unwrap_or_else(|| panic!("no error in {:?}", out.events));
    assert_eq!(error.code, ErrorCode::WorkerStopped, "{error:?}");
    assert!(error.details["tokens_out"].as_u64().is_some(), "{error:?}");
    assert!(
        !out.events
            .iter()
            .any(|e| matches!(e, InferenceEvent::End(_))),
        "{:?}",
        out.events
    );
}

#[tokio::test]
async fn sigterm_mid_answer_ends_the_stream_with_worker_stopped_and_exits_zero() {
    let mut w = Worker::ready(&[]).await;
    let resp = long_answer(&w).await;
    rbee_testkit::signal(w.child.id().unwrap(), "TERM");
    assert_stopped_mid_answer(&Completion::from_frames(read_sse(resp).await));
    let status = tokio::time::timeout(Duration::from_secs(30), w.child.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn its_hive_going_away_mid_answer_is_an_error_not_a_cancel() {
    let mut w = Worker::ready(&["--watch-stdin"]).await;
    let resp = long_answer(&w).await;
    // The hive holds the other end of the worker's stdin; kill -9 of the hive closes it.
    drop(w.child.stdin.take());
    assert_stopped_mid_answer(&Completion::from_frames(read_sse(resp).await));
    let status = tokio::time::timeout(Duration::from_secs(30), w.child.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
