//! Workers under supervision: ready and serving, removed when killed or frozen, shut down
//! when idle, stopped on request, their output captured.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Hive, HiveOptions, alive, call, infer, signal, wait_gone};

#[tokio::test]
async fn spawned_worker_listens_becomes_idle_and_answers_inference() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(
        HiveOptions::new(data.path())
            .arg("--health-interval", "200ms")
            .arg("--worker-slots", "2"),
    )
    .await;
    let spawned = hive.spawn_file().await;
    assert_eq!(spawned["state"], "loading");
    let id = spawned["worker_id"].as_str().unwrap();
    // The spawn answers once the worker's ready line said it listens, at the URL given.
    let health = hive
        .http
        .get(format!("{}/v1/health", spawned["url"].as_str().unwrap()))
        .send()
        .await
        .expect("the worker listens when the spawn answers");
    assert_eq!(health.status(), 200);
    let worker = hive.wait_idle(id).await;
    assert_eq!(worker["url"], spawned["url"]);
    assert_eq!(worker["backend"], "cpu");
    // The hive's `--worker-slots`, as the worker itself reports it.
    assert_eq!(worker["slots_total"], 2);
    let text = infer(&worker, 20).await;
    assert!(text.split_whitespace().count() >= 5, "{text:?}");
}

#[tokio::test]
async fn killed_worker_is_noticed_and_removed_at_once() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let spawned = hive.spawn_file().await;
    let id = spawned["worker_id"].as_str().unwrap().to_owned();
    let worker = hive.wait_idle(&id).await;
    signal(worker["pid"].as_u64().unwrap() as u32, "KILL");
    // The default health interval is 30 s: removal within seconds proves the exit itself
    // was noticed.
    tokio::time::timeout(
        Duration::from_secs(5),
        hive.wait_workers("worker removed", |ws| ws.is_empty()),
    )
    .await
    .expect("removed within 5 s");
    let line = hive.log.wait_for(&format!("{id} exited")).await.unwrap();
    assert!(line.contains("removed from the registry"), "{line}");
}

#[tokio::test]
async fn idle_worker_is_shut_down_and_the_hive_keeps_running() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(
        HiveOptions::new(data.path())
            .arg("--idle-timeout", "2s")
            .arg("--health-interval", "200ms"),
    )
    .await;
    let spawned = hive.spawn_file().await;
    let id = spawned["worker_id"].as_str().unwrap().to_owned();
    let worker = hive.wait_idle(&id).await;
    let pid = worker["pid"].as_u64().unwrap() as u32;
    hive.wait_workers("idle worker removed", |ws| ws.is_empty())
        .await;
    wait_gone(pid, Duration::from_secs(10)).await;
    assert!(
        hive.log.text().contains(&format!("{id} idle for")),
        "{}",
        hive.log.text()
    );
    let health: Value = reqwest::get(format!("{}/v1/health", hive.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "alive");
    let again = hive.spawn_file().await;
    assert_ne!(
        again["worker_id"], spawned["worker_id"],
        "the next request cold-starts a new worker"
    );
}

#[tokio::test]
async fn frozen_worker_is_removed_after_three_failed_health_checks() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).arg("--health-interval", "300ms")).await;
    let spawned = hive.spawn_file().await;
    let id = spawned["worker_id"].as_str().unwrap().to_owned();
    let worker = hive.wait_idle(&id).await;
    let pid = worker["pid"].as_u64().unwrap() as u32;
    signal(pid, "STOP");
    hive.wait_workers("unhealthy", |ws| {
        ws.iter().any(|w| w["state"] == "unhealthy")
    })
    .await;
    hive.wait_workers("frozen worker removed", |ws| ws.is_empty())
        .await;
    wait_gone(pid, Duration::from_secs(10)).await;
    let text = hive.log.text();
    for n in 1..=3 {
        assert!(
            text.contains(&format!("health check {n}/3 of {id} failed")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn shutdown_request_stops_one_worker() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let a = hive.spawn_file().await;
    let b = hive.spawn_file().await;
    let a_id = a["worker_id"].as_str().unwrap();
    let worker = hive.wait_idle(a_id).await;
    let resp = hive
        .post("/v1/workers/shutdown")
        .json(&json!({"worker_id": a_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_gone(
        worker["pid"].as_u64().unwrap() as u32,
        Duration::from_secs(10),
    )
    .await;
    let left: Vec<Value> = hive.workers().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], b["worker_id"]);

    let (status, body) = call(
        hive.post("/v1/workers/shutdown")
            .json(&json!({"worker_id": "worker-nope"})),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "WORKER_NOT_FOUND");
}

#[tokio::test]
async fn worker_output_is_served_by_the_logs_endpoint() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let spawned = hive.spawn_file().await;
    let id = spawned["worker_id"].as_str().unwrap();
    hive.wait_idle(id).await;
    let resp = hive
        .get("/v1/logs")
        .query(&[("source", format!("worker:{id}"))])
        .send()
        .await
        .unwrap();
    let frames = crate::support::read_sse(resp).await;
    let lines: Vec<String> = frames
        .iter()
        .map(|f| {
            serde_json::from_str::<Value>(&f.data).unwrap()["line"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("model loaded")),
        "{lines:?}"
    );

    // Follow mode: the history, then a line written later arrives on the open stream.
    let follow = hive
        .get("/v1/logs")
        .query(&[("follow", "true"), ("source", "hive")])
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut decoder = rbee_api::sse::SseDecoder::new();
        let mut resp = follow;
        let mut spawned = Vec::new();
        while let Some(chunk) = resp.chunk().await.unwrap() {
            for f in decoder.feed(&chunk) {
                let line = serde_json::from_str::<Value>(&f.data).unwrap()["line"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                if line.starts_with("spawned") {
                    spawned.push(line);
                }
                if spawned.len() == 2 {
                    return spawned;
                }
            }
        }
        spawned
    });
    let second = hive.spawn_file().await;
    let spawned = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(
        spawned[1].contains(second["worker_id"].as_str().unwrap()),
        "{spawned:?}"
    );
    assert!(alive(hive.pid()));
}
