//! Authentication and request validation: every refusal uses the error envelope.

use serde_json::{Value, json};

use crate::support::Worker;

async fn envelope(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("error body is JSON");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, body)
}

#[tokio::test]
async fn health_needs_no_key_but_everything_else_does() {
    let w = Worker::ready(&[]).await;
    let health: Value = reqwest::get(format!("{}/v1/health", w.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "alive");
    assert_eq!(health["api_version"], "v1");

    for (method, path) in [
        ("GET", "/v1/ready"),
        ("GET", "/v1/loading/progress"),
        ("POST", "/v1/inference"),
        ("POST", "/v1/admin/shutdown"),
    ] {
        let url = format!("{}{path}", w.url);
        let missing = w
            .http
            .request(method.parse().unwrap(), &url)
            .send()
            .await
            .unwrap();
        let (status, body) = envelope(missing).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("INVALID_API_KEY")),
            "{path}"
        );
        let wrong = w
            .http
            .request(method.parse().unwrap(), &url)
            .bearer_auth("not-the-key")
            .send()
            .await
            .unwrap();
        let (status, body) = envelope(wrong).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("INVALID_API_KEY")),
            "{path}"
        );
    }
    assert_eq!(
        w.ready_state().await["state"],
        "idle",
        "the refused shutdown did nothing"
    );
}

#[tokio::test]
async fn each_bad_inference_request_is_400_invalid_request() {
    let w = Worker::ready(&[]).await;
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "malformed JSON",
            w.post("/v1/inference")
                .header("content-type", "application/json")
                .body("{\"prompt\": \"hi\""),
        ),
        (
            "not JSON content type",
            w.post("/v1/inference").body("prompt=hi"),
        ),
        (
            "max_tokens of the wrong type",
            w.post("/v1/inference")
                .json(&json!({"prompt": "hi", "max_tokens": "ten"})),
        ),
        (
            "prompt of the wrong type",
            w.post("/v1/inference").json(&json!({"prompt": 42})),
        ),
        (
            "unknown field",
            w.post("/v1/inference")
                .json(&json!({"prompt": "hi", "max_token": 3})),
        ),
        (
            "max_tokens zero",
            w.post("/v1/inference")
                .json(&json!({"prompt": "hi", "max_tokens": 0})),
        ),
        (
            "max_tokens beyond the context",
            w.post("/v1/inference")
                .json(&json!({"prompt": "hi", "max_tokens": 9000})),
        ),
        (
            "empty prompt",
            w.post("/v1/inference")
                .json(&json!({"prompt": "", "max_tokens": 3})),
        ),
        (
            "no prompt nor messages",
            w.post("/v1/inference").json(&json!({"max_tokens": 3})),
        ),
        (
            "prompt and messages",
            w.post("/v1/inference")
                .json(&json!({"prompt": "a", "messages": [{"role": "user", "content": "b"}]})),
        ),
        (
            "empty messages",
            w.post("/v1/inference").json(&json!({"messages": []})),
        ),
        (
            "negative temperature",
            w.post("/v1/inference")
                .json(&json!({"prompt": "hi", "temperature": -1})),
        ),
        (
            "top_p zero",
            w.post("/v1/inference")
                .json(&json!({"prompt": "hi", "top_p": 0})),
        ),
        (
            "chat template that does not compile",
            w.post("/v1/inference").json(&json!({
                "messages": [{"role": "user", "content": "b"}],
                "chat_template": "{% for m in messages %}{{ m.content }}",
            })),
        ),
        (
            "chat template with a raw prompt",
            w.post("/v1/inference")
                .json(&json!({"prompt": "a", "chat_template": "{{ messages[0].content }}"})),
        ),
        (
            "stream false",
            w.post("/v1/inference")
                .json(&json!({"prompt": "hi", "stream": false})),
        ),
    ];
    for (case, request) in cases {
        let (status, body) = envelope(request.send().await.unwrap()).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{case}: {body}");
    }
    let (_, body) = envelope(
        w.post("/v1/inference")
            .json(&json!({"prompt": "hi", "max_tokens": 9000}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["error"]["details"]["context_length"], 8192);
    assert_eq!(
        w.ready_state().await["state"],
        "idle",
        "refusals take no slot"
    );
}

#[tokio::test]
async fn unknown_endpoint_is_404_in_the_envelope() {
    let w = Worker::ready(&[]).await;
    let (status, body) = envelope(w.get("/v1/nothing-here").send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "UNKNOWN_ENDPOINT");
}
