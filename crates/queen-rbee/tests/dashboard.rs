//! The web dashboard's routes: its files, the lab's live events and stopping a node's hive.
//! The page itself is driven in a real browser by `browser.rs`.

use std::time::Duration;

use rbee_api::queen::LabSnapshot;
use rbee_api::sse::{SseDecoder, SseEvent};

use crate::support::{Queen, call};

const KEY: &str = "dashboard-key";

/// A client of the lab's event stream.
struct LabStream {
    resp: reqwest::Response,
    decoder: SseDecoder,
    frames: std::collections::VecDeque<rbee_api::sse::SseFrame>,
}

impl LabStream {
    async fn open(queen: &Queen) -> Self {
        let resp = queen
            .get("/v2/lab/events")
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        Self {
            resp,
            decoder: SseDecoder::new(),
            frames: Default::default(),
        }
    }

    /// The stream's next snapshot.
    async fn next(&mut self) -> LabSnapshot {
        let read = async {
            loop {
                while let Some(frame) = self.frames.pop_front() {
                    if let Some(snapshot) = LabSnapshot::from_frame(&frame) {
                        return snapshot.unwrap();
                    }
                }
                let chunk = self.resp.chunk().await.unwrap();
                let chunk = chunk.expect("the lab stream ended without a snapshot");
                self.frames.extend(self.decoder.feed(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a snapshot within 10 s")
    }
}

/// The first snapshot of a new lab stream.
async fn lab(queen: &Queen) -> LabSnapshot {
    LabStream::open(queen).await.next().await
}

async fn stop_hive(queen: &Queen, node: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "node_name": node });
    call(queen.post("/v2/registry/beehives/stop").json(&body)).await
}

#[tokio::test]
async fn the_page_and_its_files_are_served_without_the_key_and_the_lab_is_not() {
    let queen = Queen::start_local(&["--api-key", KEY], &[]).await;
    let page = queen.get("/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let kind = page.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/html"), "{kind}");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/ui/app.js""#), "{html}");
    for (file, kind) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let resp = queen.get(&format!("/ui/{file}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        let got = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(kind), "{file}: {got}");
        assert!(!resp.text().await.unwrap().is_empty(), "{file}");
    }
    let (status, body) = call(queen.get("/ui/missing.js")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "UNKNOWN_ENDPOINT");
    let (status, body) = call(queen.get("/v2/lab/events")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_API_KEY");
}

#[tokio::test]
async fn the_lab_shows_the_hive_and_after_a_request_its_worker_with_the_tokens_relayed() {
    let queen = Queen::start_local(&[], &[]).await;
    let before = lab(&queen).await;
    assert_eq!(before.nodes.len(), 1, "{before:?}");
    assert_eq!(before.nodes[0].node_name.as_str(), "localhost");
    assert!(
        !before.nodes[0].hive_running,
        "no hive before the first task"
    );
    assert!(before.workers.is_empty() && before.tokens_total == 0);

    let (status, answer) = call(queen.post("/v1/chat/completions").bearer_auth(KEY).json(
        &serde_json::json!({
            "model": format!("file:{}", rbee_testkit::model_path().display()),
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
            "temperature": 0
        }),
    ))
    .await;
    assert_eq!(status, 200, "{answer}");
    let generated = answer["usage"]["completion_tokens"].as_u64().unwrap();

    let after = lab(&queen).await;
    let node = &after.nodes[0];
    assert!(node.hive_running, "{after:?}");
    let resources = node.resources.as_ref().unwrap();
    assert!(resources.ram_available_mb.unwrap() > 0, "{resources:?}");
    assert_eq!(after.workers.len(), 1, "{after:?}");
    let worker = &after.workers[0];
    assert_eq!(worker.worker.node.as_str(), "localhost");
    assert!(
        worker.worker.worker.api_key.is_empty(),
        "a worker's key stays with the queen"
    );
    assert_eq!(worker.tokens_total, generated, "{after:?}");
    assert_eq!(after.tokens_total, generated);
    assert_eq!(after.tasks_total, 1);
}

#[tokio::test]
async fn stopping_a_nodes_hive_stops_its_workers_until_the_next_task() {
    let queen = Queen::start_local(&[], &[]).await;
    let (status, body) = stop_hive(&queen, "nowhere").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "NODE_NOT_FOUND");

    assert!(queen.task("localhost", 2).await.len() > 1);
    let worker = lab(&queen).await.workers[0].worker.worker.url.clone();
    let (status, body) = stop_hive(&queen, "localhost").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["node_name"], "localhost");
    assert_eq!(body["workers_stopped"], 1);
    let stopped = lab(&queen).await;
    assert!(!stopped.nodes[0].hive_running, "{stopped:?}");
    assert!(stopped.workers.is_empty(), "{stopped:?}");
    // The worker itself is gone, not only out of the queen's view.
    let health = format!("{worker}/v1/health");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while reqwest::get(&health).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{worker} still answers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let events = queen.task("localhost", 2).await;
    assert!(crate::support::error(&events).is_none(), "{events:?}");
    assert!(lab(&queen).await.nodes[0].hive_running);
}

#[tokio::test]
async fn lab_clients_share_one_poller_and_one_arriving_after_a_task_sees_its_worker_at_once() {
    let queen = Queen::start_local(&[], &[]).await;
    let mut first = LabStream::open(&queen).await;
    assert!(first.next().await.workers.is_empty());
    assert!(queen.task("localhost", 2).await.len() > 1);
    // Arriving after the task, a client sees its worker in its first snapshot.
    let mut second = LabStream::open(&queen).await;
    let arrived = second.next().await;
    assert_eq!(arrived.workers.len(), 1, "{arrived:?}");
    // From then on both are sent the same snapshots, taken once for both.
    let seen_second: Vec<u64> = [second.next().await.unix_ms, second.next().await.unix_ms].into();
    let mut seen_first = Vec::new();
    while seen_first.last() < seen_second.last() {
        seen_first.push(first.next().await.unix_ms);
    }
    assert!(
        seen_second.iter().all(|t| seen_first.contains(t)),
        "{seen_first:?} {seen_second:?}"
    );
}

#[tokio::test]
async fn the_models_list_can_leave_a_stopped_hive_stopped() {
    let queen = Queen::start_local(&[], &[]).await;
    let list = |start: Option<bool>| {
        let path = match start {
            Some(start) => format!("/v2/models/list?start={start}"),
            None => "/v2/models/list".to_owned(),
        };
        call(queen.get(&path))
    };
    let (status, body) = list(Some(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nodes"][0]["node"], "localhost");
    assert_eq!(body["nodes"][0]["hive_running"], false, "{body}");
    assert_eq!(body["nodes"][0]["models"], serde_json::json!([]), "{body}");
    assert!(body["nodes"][0]["error"].is_null(), "{body}");
    assert!(
        !lab(&queen).await.nodes[0].hive_running,
        "not started by the list"
    );

    let (status, body) = list(None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nodes"][0]["hive_running"], true, "{body}");
    let (_, body) = list(Some(false)).await;
    assert_eq!(body["nodes"][0]["hive_running"], true, "{body}");
    assert!(
        body["nodes"][0]["disk_free_bytes"].as_u64().unwrap() > 0,
        "{body}"
    );
}

#[tokio::test]
async fn the_lab_shows_why_the_queens_own_hive_did_not_start() {
    let missing = "/nonexistent/rbee-hive";
    let queen = Queen::start_local(&["--hive-bin", missing], &[]).await;
    assert!(lab(&queen).await.nodes[0].last_error.is_none());
    let events = queen.task("localhost", 2).await;
    let failed = crate::support::error(&events).expect("no hive binary, no task");
    let shown = lab(&queen).await.nodes[0].last_error.clone();
    let shown = shown.expect("the failure is the node's last error");
    assert!(shown.contains(missing), "{shown}");
    assert!(failed.error.message.contains(missing), "{failed:?}");
}
