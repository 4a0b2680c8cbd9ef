//! Continuous batching and prompt reuse through the worker's HTTP API: answers do not depend
//! on the requests beside them, and a chat's next turn reuses what the slot already holds.

use rbee_api::worker::InferenceEvent;
use rbee_http::metrics::sample;
use serde_json::{Value, json};

use crate::support::{Completion, Worker};

fn chat(messages: Value, max_tokens: usize, extra: Value) -> Value {
    let mut body = json!({"messages": messages, "max_tokens": max_tokens, "temperature": 0.0});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn requests() -> Vec<Value> {
    let user = |text: &str| json!([{"role": "user", "content": text}]);
    vec![
        chat(user("Write a short story about a cat."), 24, json!({})),
        chat(user("What is the capital of France?"), 24, json!({})),
        chat(user("List three colours."), 24, json!({})),
        // Seeded sampling must stay reproducible beside other requests too.
        chat(
            user("Tell me about the sea."),
            24,
            json!({"temperature": 0.8, "seed": 7}),
        ),
    ]
}

async fn metric(w: &Worker, series: &str) -> f64 {
    let text = w.metrics().await;
    sample(&text, series).unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// Prompt tokens the worker said it reused for this request (0 when it did not say).
fn reused(c: &Completion) -> usize {
    c.events
        .iter()
        .find_map(|e| match e {
            InferenceEvent::Narration(n) if n.action == "prompt_reuse" => {
                n.human.split_whitespace().find_map(|w| w.parse().ok())
            }
            _ => None,
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn answers_batched_with_three_others_are_the_answers_given_alone() {
    let w = Worker::ready(&["--slots", "4"]).await;
    let mut alone = Vec::new();
    for req in requests() {
        alone.push(w.infer(req).await.text());
    }
    let steps_before = metric(&w, "rbee_worker_batch_size_count").await;
    let sequences_before = metric(&w, "rbee_worker_batch_size_sum").await;
    let together = futures::future::join_all(requests().into_iter().map(|req| w.infer(req))).await;
    for (i, (c, text)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(&c.text(), text, "request {i} changed when batched");
        assert!(!text.is_empty());
    }
    // The four really shared passes: on average more than one sequence per pass.
    let steps = metric(&w, "rbee_worker_batch_size_count").await - steps_before;
    let sequences = metric(&w, "rbee_worker_batch_size_sum").await - sequences_before;
    assert!(
        sequences / steps > 1.5,
        "{sequences} sequences in {steps} passes: the requests were not batched"
    );
}

#[tokio::test]
async fn a_chats_next_turn_reuses_the_cached_turn_and_answers_as_without_it() {
    let w = Worker::ready(&["--slots", "1"]).await;
    let first_turn = json!([{"role": "user", "content": "Name a fruit."}]);
    let first = w.infer(chat(first_turn.clone(), 12, json!({}))).await;
    let mut messages = first_turn.as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": first.text()}));
    messages.push(json!({"role": "user", "content": "What colour is it?"}));
    let second_turn = Value::Array(messages);

    // A raw prompt shares no token with a chat: the slot then holds nothing of use.
    w.infer(json!({"prompt": "Once upon a time", "max_tokens": 2}))
        .await;
    let cold = w.infer(chat(second_turn.clone(), 16, json!({}))).await;
    assert_eq!(reused(&cold), 0, "{:?}", cold.events);
    assert_eq!(cold.end().tokens_reused, 0);

    w.infer(chat(first_turn, 12, json!({}))).await;
    let reused_before = metric(&w, "rbee_worker_prompt_tokens_reused_total").await;
    let warm = w.infer(chat(second_turn, 16, json!({}))).await;
    let prompt = warm.end().tokens_in;
    assert!(
        reused(&warm) > prompt / 2,
        "reused {} of {prompt} prompt tokens",
        reused(&warm)
    );
    let counted = metric(&w, "rbee_worker_prompt_tokens_reused_total").await - reused_before;
    assert_eq!(counted as usize, reused(&warm));
    assert_eq!(warm.end().tokens_reused, reused(&warm));
    assert_eq!(warm.text(), cold.text());
}

#[tokio::test]
async fn a_worker_without_a_slot_count_gets_four() {
    let w = Worker::ready(&[]).await;
    let ready = w.ready_state().await;
    assert_eq!(ready["slots_total"], 4, "{ready}");
}
