//! `GET /metrics`: each family moves when the thing it counts happens.

use rbee_http::metrics::sample;
use serde_json::json;

use crate::support::{Queen, call, model_path, read_sse, text};

#[tokio::test]
async fn tasks_tokens_latencies_placements_and_nodes_are_counted() {
    let queen = Queen::start_local(&[], &[]).await;
    let before = queen.metrics().await;
    assert_eq!(sample(&before, "rbee_queen_tasks_total"), Some(0.0));
    assert_eq!(
        sample(&before, "rbee_queen_nodes{status=\"unknown\"}"),
        Some(0.0)
    );

    let events = queen.task("localhost", 8).await;
    assert!(!text(&events).is_empty());
    let after = queen.metrics().await;
    assert_eq!(
        sample(&after, "rbee_queen_tasks_total{outcome=\"completed\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&after, "rbee_queen_tokens_total"), Some(8.0));
    assert_eq!(
        sample(&after, "rbee_queen_time_to_first_token_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "rbee_queen_token_latency_seconds_count"),
        Some(7.0)
    );

    // No node named: placed (on the only candidate, whose idle worker has the model).
    let resp = queen
        .post("/v2/tasks")
        .json(&json!({
            "model": format!("file:{}", model_path().display()),
            "prompt": "Hello",
            "max_tokens": 2
        }))
        .send()
        .await
        .unwrap();
    read_sse(resp).await;
    let placed = queen.metrics().await;
    assert_eq!(
        sample(&placed, "rbee_queen_placements_total{rule=\"idle_worker\"}"),
        Some(1.0)
    );

    let (_, _) = call(queen.post("/v2/tasks").json(&json!({
        "node": "localhost",
        "model": "file:/nowhere/model.gguf",
        "prompt": "Hello"
    })))
    .await;
    let failed = queen.metrics().await;
    assert_eq!(
        sample(
            &failed,
            "rbee_queen_tasks_total{outcome=\"model_not_found\"}"
        ),
        Some(1.0)
    );
}
