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
