//! Stopping a worker: over HTTP or by signal, it exits 0 and running requests end.

use std::time::Duration;

use rbee_api::worker::StopReason;
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

#[tokio::test]
async fn sigterm_cancels_the_running_request_and_exits_zero() {
    let mut w = Worker::ready(&[]).await;
    let resp = w
        .post("/v1/inference")
        .json(&story_request(4000, json!({})))
        .send()
        .await
        .unwrap();
    w.wait_for_state("busy").await;
    let pid = w.child.id().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = Completion::from_frames(read_sse(resp).await);
    assert_eq!(out.end().stop_reason, StopReason::Cancelled);
    let status = tokio::time::timeout(Duration::from_secs(30), w.child.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
