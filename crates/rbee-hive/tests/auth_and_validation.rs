//! The hive key guards everything but health; bad bodies get 400 in the envelope; worker
//! callbacks need the worker's own key.

use serde_json::{Value, json};

use crate::support::{Hive, HiveOptions, call};

#[tokio::test]
async fn every_route_but_health_needs_the_hive_key() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let health: Value = reqwest::get(format!("{}/v1/health", hive.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "alive");
    assert_eq!(health["api_version"], "v1");
    assert!(health["version"].is_string());

    let routes = [
        ("GET", "/v1/workers/list"),
        ("POST", "/v1/workers/spawn"),
        ("POST", "/v1/workers/shutdown"),
        ("GET", "/v1/models"),
        ("POST", "/v1/models/download"),
        ("GET", "/v1/models/download/progress?id=x"),
        ("GET", "/v1/logs"),
        ("POST", "/v1/admin/shutdown"),
    ];
    for (method, path) in routes {
        for key in [None, Some("wrong")] {
            let mut req = hive
                .http
                .request(method.parse().unwrap(), format!("{}{path}", hive.url));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {key:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "INVALID_API_KEY");
        }
    }
    assert_eq!(
        hive.workers().await.len(),
        0,
        "the refused shutdown did nothing"
    );
}

#[tokio::test]
async fn bad_bodies_are_400_invalid_request() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let cases = [
        (
            "malformed JSON",
            hive.post("/v1/workers/spawn")
                .header("content-type", "application/json")
                .body("{"),
        ),
        (
            "missing model_ref",
            hive.post("/v1/workers/spawn")
                .json(&json!({"backend": "cpu"})),
        ),
        (
            "unknown backend",
            hive.post("/v1/workers/spawn")
                .json(&json!({"model_ref": "file:/x.gguf", "backend": "tpu"})),
        ),
        (
            "device of the wrong type",
            hive.post("/v1/workers/spawn")
                .json(&json!({"model_ref": "file:/x.gguf", "device": "zero"})),
        ),
        (
            "not a model reference",
            hive.post("/v1/workers/spawn")
                .json(&json!({"model_ref": "llama3"})),
        ),
        (
            "relative file reference",
            hive.post("/v1/models/download")
                .json(&json!({"model_ref": "file:x.gguf"})),
        ),
        (
            "zero slots",
            hive.post("/v1/workers/spawn")
                .json(&json!({"model_ref": "file:/x.gguf", "slots": 0})),
        ),
        (
            "shutdown without id",
            hive.post("/v1/workers/shutdown").json(&json!({})),
        ),
    ];
    for (case, req) in cases {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{case}: {body}");
    }
    let (status, body) = call(hive.get("/v1/models/download/progress?id=hf:a/b")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "DOWNLOAD_NOT_FOUND");
}

#[tokio::test]
async fn worker_callbacks_need_that_workers_key() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let spawned = hive.spawn_file().await;
    let body = json!({
        "worker_id": spawned["worker_id"],
        "error": {"error": {"code": "INVALID_MODEL", "message": "a test says so"}}
    });
    let with_hive_key = hive
        .post("/v1/workers/failed")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(with_hive_key.status(), 401);
    let with_worker_key = hive
        .http
        .post(format!("{}/v1/workers/failed", hive.url))
        .bearer_auth(spawned["api_key"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(with_worker_key.status(), 200);
    let id = spawned["worker_id"].as_str().unwrap();
    let line = hive.log.wait_for(&format!("{id} could not load")).await;
    assert!(line.unwrap().contains("a test says so"));
}
