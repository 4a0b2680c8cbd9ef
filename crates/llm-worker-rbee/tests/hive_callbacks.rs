//! The callback to the hive when the model is unusable (that the worker listens, the hive
//! reads from its ready line). A small axum server in the test stands in for the hive.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;
use tokio::sync::Notify;

use crate::support::{Log, spawn};

/// One callback: which endpoint, the Authorization header, the body.
type Call = (String, Option<String>, Value);

#[derive(Clone, Default)]
struct Received {
    calls: Arc<Mutex<Vec<Call>>>,
    arrived: Arc<Notify>,
}

impl Received {
    async fn next(&self) -> Call {
        loop {
            let notified = self.arrived.notified();
            if let Some(call) = self.calls.lock().unwrap().first().cloned() {
                return call;
            }
            tokio::time::timeout(std::time::Duration::from_secs(60), notified)
                .await
                .expect("callback arrives");
        }
    }
}

async fn fake_hive() -> (String, Received) {
    let received = Received::default();
    let record = |path: &'static str| {
        move |State(r): State<Received>, headers: HeaderMap, Json(body): Json<Value>| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            r.calls.lock().unwrap().push((path.to_owned(), auth, body));
            r.arrived.notify_waiters();
            Json(serde_json::json!({"ok": true}))
        }
    };
    let app = axum::Router::new()
        .route("/v1/workers/failed", post(record("failed")))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn unusable_model_is_reported_to_the_hive_before_exit() {
    let (hive, received) = fake_hive().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.gguf");
    std::fs::write(&bad, "these are not weights").unwrap();
    let mut child = spawn(&bad, &["--hive-url", &hive, "--worker-id", "worker-9"]);
    let log = Log::capture(child.stderr.take().unwrap());
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(1), "{}", log.text());
    let (path, _, body) = received.next().await;
    assert_eq!(path, "failed");
    assert_eq!(body["worker_id"], "worker-9");
    assert_eq!(body["error"]["error"]["code"], "INVALID_MODEL");
    let message = body["error"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("notes.gguf") && message.contains("not a GGUF file"),
        "{message}"
    );
}
