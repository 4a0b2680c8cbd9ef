//! `GET /metrics`: each family moves when the thing it counts happens.

use rbee_http::metrics::sample;
use serde_json::json;

use crate::slots_and_cancellation::start_long_job;
use crate::support::{Worker, story_request};

#[tokio::test]
async fn requests_tokens_and_latencies_are_counted() {
    let w = Worker::ready(&[]).await;
    let before = w.metrics().await;
    assert_eq!(sample(&before, "rbee_worker_requests_total"), Some(0.0));
    assert_eq!(
        sample(&before, "rbee_worker_tokens_generated_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, "rbee_worker_slots{state=\"free\"}"),
        Some(4.0)
    );

    let done = w.infer(story_request(8, json!({"temperature": 0}))).await;
    let end = done.end().clone();
    let after = w.metrics().await;
    assert_eq!(
        sample(&after, "rbee_worker_requests_total{outcome=\"max_tokens\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "rbee_worker_tokens_generated_total"),
        Some(8.0)
    );
    assert_eq!(
        sample(&after, "rbee_worker_prompt_tokens_total"),
        Some(end.tokens_in as f64)
    );
    assert_eq!(
        sample(&after, "rbee_worker_time_to_first_token_seconds_count"),
        Some(1.0)
    );
    // One latency per token after the first that carried text.
    let gaps = sample(&after, "rbee_worker_token_latency_seconds_count").unwrap();
    assert!((6.0..=7.0).contains(&gaps), "{gaps}");
}

#[tokio::test]
async fn busy_slots_and_refusals_are_counted() {
    let w = Worker::ready(&["--slots", "1"]).await;
    let (_running, _) = start_long_job(&w, "long").await;
    let resp = w
        .post("/v1/inference")
        .json(&story_request(5, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let text = w.metrics().await;
    assert_eq!(
        sample(&text, "rbee_worker_slots{state=\"busy\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "rbee_worker_requests_total{outcome=\"all_slots_busy\"}"
        ),
        Some(1.0)
    );
}
