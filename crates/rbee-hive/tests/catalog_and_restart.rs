//! The catalog: a hit skips the download, entries survive a restart, local files register
//! in place.

use serde_json::json;

use crate::support::{Hive, HiveOptions, infer, model_bytes, model_path, signal};
use rbee_testkit::fake_hub::FakeHub;

#[tokio::test]
async fn catalog_hit_skips_the_download_and_survives_a_restart() {
    let hub = FakeHub::start().await;
    hub.add_file("test/smol", "smol.Q4_1.gguf", model_bytes());
    let data = tempfile::tempdir().unwrap();
    let mut hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let first = hive.spawn(json!({"model_ref": "hf:test/smol"})).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let second = hive.spawn(json!({"model_ref": "hf:test/smol"})).await;
    assert_eq!(second.0, 200, "{}", second.1);
    assert_eq!(
        hub.downloads().len(),
        1,
        "the second spawn found the model in the catalog"
    );

    signal(hive.pid(), "TERM");
    assert_eq!(hive.wait_exit().await, Some(0));
    assert!(data.path().join("models.db").is_file());

    drop(hub);
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let models = hive.models().await;
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["reference"], "hf:test/smol");
    let spawned = hive.spawn_file_ref("hf:test/smol").await;
    let worker = hive.wait_idle(spawned["worker_id"].as_str().unwrap()).await;
    assert!(!infer(&worker, 8).await.is_empty());
}

#[tokio::test]
async fn file_reference_is_registered_in_place() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let model = format!("file:{}", model_path().display());
    let started = hive.start_download(&model).await;
    assert_eq!(started["state"], "present");
    let models = hive.models().await;
    assert_eq!(models[0]["provider"], "file");
    assert_eq!(models[0]["local_path"], model_path().display().to_string());
    assert_eq!(models[0]["size_bytes"], model_bytes().len());
    assert!(!data.path().join("models").exists(), "nothing was copied");
}

#[tokio::test]
async fn models_db_given_as_a_bare_path_is_created_with_its_folders() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("some/where/catalog.db");
    let hive =
        Hive::start(HiveOptions::new(data.path()).arg("--models-db", db.to_str().unwrap())).await;
    hive.spawn_file().await;
    assert!(db.is_file());
}

#[tokio::test]
async fn deleting_refuses_a_running_model_then_removes_a_download_but_keeps_a_users_file() {
    let hub = FakeHub::start().await;
    hub.add_file("test/smol", "smol.Q4_1.gguf", model_bytes());
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let spawned = hive.spawn(json!({"model_ref": "hf:test/smol"})).await;
    assert_eq!(spawned.0, 200, "{}", spawned.1);
    let id = spawned.1["worker_id"].as_str().unwrap().to_owned();
    hive.wait_idle(&id).await;
    let info = hive
        .get("/v1/models/info?ref=hf:test/smol")
        .send()
        .await
        .unwrap();
    let info: serde_json::Value = info.json().await.unwrap();
    assert_eq!(info["architecture"], "llama", "{info}");

    let delete = |model: &str| {
        hive.post("/v1/models/delete")
            .json(&json!({"model_ref": model}))
            .send()
    };
    let refused = delete("hf:test/smol").await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&id),
        "{body}"
    );

    // Keep-alive 0 stops the idle worker at once.
    let kept = hive
        .post("/v1/workers/keep_alive")
        .json(&json!({"worker_id": id, "seconds": 0}))
        .send()
        .await
        .unwrap();
    let kept: serde_json::Value = kept.json().await.unwrap();
    assert_eq!(kept["stopped"], true, "{kept}");
    assert!(hive.workers().await.is_empty());

    let path = hive.models().await[0]["local_path"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted: serde_json::Value = delete("hf:test/smol").await.unwrap().json().await.unwrap();
    assert_eq!(deleted["file_removed"], true, "{deleted}");
    assert!(!std::path::Path::new(&path).exists());
    assert!(hive.models().await.is_empty());
    assert_eq!(delete("hf:test/smol").await.unwrap().status(), 404);

    let user_file = format!("file:{}", model_path().display());
    hive.start_download(&user_file).await;
    let deleted: serde_json::Value = delete(&user_file).await.unwrap().json().await.unwrap();
    assert_eq!(deleted["file_removed"], false, "{deleted}");
    assert!(model_path().is_file(), "the user's file stays");
}
