//! Slots: a full worker refuses with 503; DELETE and client disconnects free the slot.

use rbee_api::sse::SseDecoder;
use rbee_api::worker::StopReason;
use serde_json::{Value, json};

use crate::support::{Completion, Worker, read_sse, story_request};

/// Starts a long generation and returns its response once the first token has arrived.
pub async fn start_long_job(
    w: &Worker,
    job_id: &str,
) -> (reqwest::Response, Vec<rbee_api::sse::SseFrame>) {
    let resp = w
        .post("/v1/inference")
        .json(&story_request(4000, json!({"job_id": job_id})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut decoder = SseDecoder::new();
    let mut seen = Vec::new();
    let mut resp = resp;
    while !seen
        .iter()
        .any(|f: &rbee_api::sse::SseFrame| f.event == "token")
    {
        let chunk = resp.chunk().await.unwrap().expect("stream open");
        seen.extend(decoder.feed(&chunk));
    }
    (resp, seen)
}

#[tokio::test]
async fn request_without_a_free_slot_gets_503_all_slots_busy_with_retry_after() {
    let w = Worker::ready(&["--slots", "1"]).await;
    let (_running, _) = start_long_job(&w, "long").await;
    assert_eq!(w.ready_state().await["state"], "busy");
    let resp = w
        .post("/v1/inference")
        .json(&story_request(5, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "2");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ALL_SLOTS_BUSY");
    assert_eq!(
        body["error"]["details"],
        json!({"slots_total": 1, "slots_busy": 1})
    );
}

#[tokio::test]
async fn delete_cancels_the_job_and_the_next_request_succeeds() {
    let w = Worker::ready(&["--slots", "1"]).await;
    let (running, mut frames) = start_long_job(&w, "job-to-cancel").await;
    let resp = w
        .http
        .delete(format!("{}/v1/inference/job-to-cancel", w.url))
        .bearer_auth(crate::support::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["cancelled"], true);

    frames.extend(read_sse(running).await);
    let cancelled = Completion::from_frames(frames);
    assert_eq!(cancelled.end().stop_reason, StopReason::Cancelled);
    assert!(cancelled.end().tokens_out < 4000);

    let next = w.infer(story_request(3, json!({}))).await;
    assert_eq!(next.end().tokens_out, 3);
}

#[tokio::test]
async fn client_disconnect_stops_generation_and_frees_the_slot() {
    let w = Worker::ready(&["--slots", "1"]).await;
    let (running, _) = start_long_job(&w, "abandoned").await;
    drop(running);
    w.wait_for_state("idle").await;
    let line = w.log.wait_for("inference finished").await.unwrap();
    assert!(line.contains("cancelled"), "{line}");
    let next = w.infer(story_request(3, json!({}))).await;
    assert_eq!(next.end().tokens_out, 3);
}

#[tokio::test]
async fn two_slots_serve_two_requests_at_once() {
    let w = Worker::ready(&["--slots", "2"]).await;
    let (running, _) = start_long_job(&w, "first").await;
    assert_eq!(w.ready_state().await["slots_available"], 1);
    let second = w.infer(story_request(3, json!({}))).await;
    assert_eq!(second.end().tokens_out, 3);
    drop(running);
    w.wait_until("both slots free", |r| r["slots_available"] == 2)
        .await;
}

#[tokio::test]
async fn delete_of_an_unknown_job_is_404() {
    let w = Worker::ready(&[]).await;
    let resp = w
        .http
        .delete(format!("{}/v1/inference/nope", w.url))
        .bearer_auth(crate::support::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "JOB_NOT_FOUND"
    );
}
