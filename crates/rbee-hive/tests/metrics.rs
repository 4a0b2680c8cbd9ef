//! `GET /metrics`: each family moves when the thing it counts happens.

use rbee_http::metrics::sample;
use rbee_testkit::fake_hub::Fault;
use serde_json::json;

use crate::downloads::{REPO, download, hub_with_model};
use crate::support::{Hive, HiveOptions, model_bytes, model_path};

async fn metrics(hive: &Hive) -> String {
    let resp = hive.get("/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

#[tokio::test]
async fn downloads_and_their_bytes_are_counted_by_outcome() {
    let hub = hub_with_model().await;
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    assert_eq!(
        sample(&metrics(&hive).await, "rbee_hive_downloads_total"),
        Some(0.0)
    );
    download(&hive, &format!("hf:{REPO}")).await;
    let text = metrics(&hive).await;
    assert_eq!(
        sample(&text, "rbee_hive_downloads_total{outcome=\"completed\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "rbee_hive_download_bytes_total"),
        Some(model_bytes().len() as f64)
    );

    hub.add_file("test/broken", "model.Q4_1.gguf", model_bytes());
    hub.set_fault(Fault::ResetEvery { after: 0 });
    download(&hive, "hf:test/broken").await;
    assert_eq!(
        sample(
            &metrics(&hive).await,
            "rbee_hive_downloads_total{outcome=\"failed\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn spawns_workers_by_state_and_preflight_refusals_are_counted() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let file = format!("file:{}", model_path().display());
    let (status, body) = hive
        .spawn(json!({"model_ref": file, "backend": "cuda"}))
        .await;
    assert_eq!(status, 422, "{body}");
    let text = metrics(&hive).await;
    assert_eq!(
        sample(
            &text,
            "rbee_hive_preflight_refusals_total{code=\"backend_unavailable\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "rbee_hive_workers_spawned_total"), Some(0.0));

    let spawned = hive.spawn_file().await;
    hive.wait_idle(spawned["worker_id"].as_str().unwrap()).await;
    let text = metrics(&hive).await;
    assert_eq!(sample(&text, "rbee_hive_workers_spawned_total"), Some(1.0));
    assert_eq!(
        sample(&text, "rbee_hive_workers{state=\"idle\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "rbee_hive_workers{state=\"loading\"}"),
        Some(0.0)
    );
}
