//! Ollama's API on the queen, driven by the official `ollama` Python package
//! (`scripts/ollama-check.py`) against a queen whose node downloads from a local Hub
//! look-alike, and its error shape checked directly.

use rbee_testkit::fake_hub::FakeHub;
use rbee_testkit::model_bytes;
use serde_json::{Value, json};

use crate::support::{Queen, run_client_check};

#[tokio::test]
async fn the_official_ollama_package_pulls_lists_chats_and_deletes() {
    let hub = FakeHub::start().await;
    hub.add_file("test/smol", "smol.Q4_1.gguf", model_bytes());
    let queen = Queen::start_local(&[], &[("HF_ENDPOINT", &hub.url)]).await;
    let args = ["--host", &queen.url, "--model", "hf:test/smol"];
    run_client_check("ollama-check.py", &args, "ollama package check passed").await;
    assert_eq!(hub.downloads().len(), 1, "one pull, one download");
}

#[tokio::test]
async fn errors_come_in_ollamas_shape_with_the_status_of_their_cause() {
    let queen = Queen::start_local(&[], &[]).await;
    let cases = [
        (
            "/api/chat",
            json!({"model": "llama3:8b", "messages": [{"role": "user", "content": "hi"}]}),
            404,
        ),
        (
            "/api/generate",
            json!({"model": "hf:org/repo", "prompt": "hi", "format": "yaml"}),
            400,
        ),
        ("/api/show", json!({"model": "hf:org/never-pulled"}), 404),
        ("/api/chat", json!({"messages": []}), 400),
    ];
    for (path, body, status) in cases {
        let resp = queen.post(path).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path} {body}");
        let answer: Value = resp.json().await.unwrap();
        assert!(answer["error"].is_string(), "{answer}");
    }
    let resp = queen
        .post("/api/chat")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("invalid request body"),
        "{answer}"
    );
}
