//! The OpenAI-compatible API, driven by the official `openai` Python SDK and by raw HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Queen, call, model_path, run_client_check};

fn model_id() -> String {
    format!("file:{}", model_path().display())
}

#[tokio::test]
async fn the_official_openai_sdk_gets_coherent_answers_and_clear_errors() {
    let queen = Queen::start_local(&[], &[]).await;
    let base = format!("{}/v1", queen.url);
    let args = ["--base-url", &base, "--model", &model_id()];
    run_client_check("openai-check.py", &args, "openai SDK check passed").await;
}

#[tokio::test]
async fn a_client_that_disconnects_stops_the_generation_on_the_worker() {
    let queen = Queen::start_local(&[], &[]).await;
    let resp = queen
        .post("/v1/chat/completions")
        .json(&json!({
            "model": model_id(),
            "messages": [{"role": "user", "content": "Write a long story about a cat."}],
            "max_tokens": 3000,
            "temperature": 0,
            "stream": true
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    use futures::StreamExt;
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    drop(body);
    // 3000 tokens would keep a slot busy for a minute; every slot is free again at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = call(queen.get("/v2/workers/list")).await;
        let w = &list["workers"][0];
        if w["slots_available"] == w["slots_total"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still generating: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_queen_key_guards_the_openai_api() {
    let queen = Queen::start_local(&["--api-key", "s3cret"], &[]).await;
    let (status, body) = call(queen.get("/v1/models")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_API_KEY");
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    assert!(body["error"]["param"].is_null(), "{body}");
    let (status, body) = call(queen.get("/v1/models").bearer_auth("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
}

#[tokio::test]
async fn unsupported_requests_get_an_openai_error_naming_the_field() {
    let queen = Queen::start_local(&[], &[]).await;
    let cases: [(Value, &str, &str); 5] = [
        (
            json!({"model": model_id(), "messages": [{"role": "user", "content": "hi"}], "n": 2}),
            "INVALID_REQUEST",
            "n",
        ),
        (
            json!({"model": model_id(), "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"type": "function", "function": {"name": "f"}}],
                   "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "INVALID_REQUEST",
            "tool_choice",
        ),
        (
            json!({"model": model_id(), "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}),
            "INVALID_REQUEST",
            "tools",
        ),
        (
            json!({"model": "attic/hf:org/repo", "messages": [{"role": "user", "content": "hi"}]}),
            "NODE_NOT_FOUND",
            "",
        ),
        (
            json!({"model": model_id(), "messages": [{"role": "tool", "content": "x"}]}),
            "INVALID_REQUEST",
            "messages",
        ),
    ];
    for (body, code, param) in cases {
        let (status, answer) = call(queen.post("/v1/chat/completions").json(&body)).await;
        assert!(status >= 400, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(answer["error"]["message"].as_str().is_some(), "{answer}");
        assert!(answer["error"]["type"].as_str().is_some(), "{answer}");
        if !param.is_empty() {
            assert_eq!(answer["error"]["param"], param, "{answer}");
        }
    }
}

fn long_chat(queen: &Queen, stream: bool) -> reqwest::RequestBuilder {
    queen.post("/v1/chat/completions").json(&json!({
        "model": model_id(),
        "messages": [{"role": "user", "content": "Write a long story about a cat."}],
        "max_tokens": 3000,
        "temperature": 0,
        "stream": stream
    }))
}

/// Once the worker generates, kills the hive under it (kill -9).
async fn kill_the_hive_once_busy(queen: &Queen) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let worker = loop {
        let (_, list) = call(queen.get("/v2/workers/list")).await;
        let w = &list["workers"][0];
        if w["slots_available"].as_u64() < w["slots_total"].as_u64() {
            break list["workers"][0]["pid"].as_u64().unwrap() as u32;
        }
        assert!(tokio::time::Instant::now() < deadline, "never busy: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let hive = rbee_testkit::descendants(queen.child.id().unwrap())
        .into_iter()
        .find(|&pid| pid != worker)
        .expect("the hive runs below the queen");
    rbee_testkit::signal(hive, "KILL");
}

#[tokio::test]
async fn a_hive_killed_mid_answer_is_a_5xx_never_a_stop() {
    let queen = Queen::start_local(&[], &[]).await;
    let pending = tokio::spawn(long_chat(&queen, false).send());
    kill_the_hive_once_busy(&queen).await;
    let resp = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("an answer within 30 s")
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "WORKER_STOPPED", "{body}");
}

#[tokio::test]
async fn a_hive_killed_mid_stream_ends_the_stream_with_an_error_never_a_stop() {
    let queen = Queen::start_local(&[], &[]).await;
    // The response starts with the first token.
    let resp = long_chat(&queen, true).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    kill_the_hive_once_busy(&queen).await;
    let body = tokio::time::timeout(Duration::from_secs(30), resp.text())
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(body.contains("chat.completion.chunk"), "{body}");
    assert!(!body.contains("\"finish_reason\":\"stop\""), "{body}");
    assert!(body.contains("WORKER_STOPPED"), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
}

#[tokio::test]
async fn eight_concurrent_cold_requests_start_one_worker_and_all_are_answered() {
    let queen = Queen::start_local(&[], &[]).await;
    let requests = (0..8).map(|n| {
        queen
            .post("/v1/chat/completions")
            .json(&json!({
                "model": model_id(),
                "messages": [{"role": "user", "content": format!("Say the number {n}.")}],
                "max_tokens": 4,
                "temperature": 0
            }))
            .send()
    });
    for resp in futures::future::join_all(requests).await {
        let resp = resp.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "chat.completion", "{body}");
    }
    let (_, list) = call(queen.get("/v2/workers/list")).await;
    assert_eq!(list["workers"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn a_full_queue_is_503_all_slots_busy_with_retry_after() {
    let queen = Queen::start_local(&["--queue-limit", "0", "--worker-slots", "1"], &[]).await;
    let resp = long_chat(&queen, true).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut running = resp.bytes_stream();
    use futures::StreamExt;
    let first = running.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    // The running task holds the worker's one slot, as the queen's metrics say.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = queen.metrics().await;
        if rbee_http::metrics::sample(&text, "rbee_queen_busy_slots") == Some(1.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = long_chat(&queen, false).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "2");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ALL_SLOTS_BUSY", "{body}");
    drop(running);
}

#[tokio::test]
async fn errors_from_routing_and_extractors_are_in_the_envelope_too() {
    let queen = Queen::start_local(&[], &[]).await;
    let huge = vec![b'x'; 3 * 1024 * 1024];
    let cases = [
        (queen.get("/v2/tasks"), 405, "METHOD_NOT_ALLOWED"),
        (queen.get("/v2/nowhere"), 404, "UNKNOWN_ENDPOINT"),
        // Its own connection: the queen closes it without reading the rest of the body.
        (
            reqwest::Client::new()
                .post(format!("{}/v1/chat/completions", queen.url))
                .body(huge),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (queen.get("/v2/workers/health"), 400, "INVALID_REQUEST"),
        (
            queen.get("/v2/workers/health?node=a%2Fb%20c"),
            400,
            "INVALID_REQUEST",
        ),
    ];
    for (req, status, code) in cases {
        let (got, body) = call(req).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn keep_alive_on_the_openai_api_sets_how_long_the_worker_stays() {
    let queen = Queen::start_local(&[], &[]).await;
    let ask = |keep_alive: Value| {
        queen.post("/v1/chat/completions").json(&json!({
            "model": model_id(),
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
            "keep_alive": keep_alive
        }))
    };
    let (status, body) = call(ask(json!("soon"))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "keep_alive", "{body}");

    let (status, body) = call(ask(json!("10m"))).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = call(queen.get("/v2/workers/list")).await;
    assert_eq!(list["workers"][0]["keep_alive_secs"], 600, "{list}");

    // 0: unloaded as soon as the answer is out.
    let (status, body) = call(ask(json!(0))).await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = call(queen.get("/v2/workers/list")).await;
        if list["workers"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still loaded: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
