//! Downloads from a Hub look-alike: progress, resume, verification, retries, sharing.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::{Hive, HiveOptions, model_bytes};
use rbee_testkit::fake_hub::{FakeHub, Fault};
use rbee_testkit::gguf_blob;

pub const REPO: &str = "test/SmolLM2-135M-Instruct-GGUF";
const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

pub async fn hub_with_model() -> FakeHub {
    let hub = FakeHub::start().await;
    hub.add_file(REPO, FILE, model_bytes());
    hub
}

/// Starts a download and follows its progress stream to the end.
pub async fn download(hive: &Hive, model_ref: &str) -> Vec<Value> {
    let started = hive.start_download(model_ref).await;
    assert_eq!(started["state"], "downloading", "{started}");
    let id = started["download_id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/models/download/progress", hive.url);
    let resp = hive
        .http
        .get(url)
        .query(&[("id", id)])
        .bearer_auth(crate::support::KEY)
        .send()
        .await
        .unwrap();
    crate::support::read_sse(resp)
        .await
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_str(&f.data).unwrap();
            assert_eq!(v["stage"], f.event.as_str());
            v
        })
        .collect()
}

#[tokio::test]
async fn download_streams_progress_then_registers_the_verified_model() {
    let hub = hub_with_model().await;
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let events = download(&hive, &format!("hf:{REPO}")).await;

    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["stage"] == "downloading")
        .collect();
    assert!(!progress.is_empty(), "{events:?}");
    let size = model_bytes().len() as u64;
    assert!(progress.iter().all(|e| e["bytes_total"] == size));
    let bytes: Vec<u64> = progress
        .iter()
        .map(|e| e["bytes_downloaded"].as_u64().unwrap())
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] <= w[1]), "{bytes:?}");
    assert!(
        progress
            .iter()
            .all(|e| e["speed_mbps"].as_f64().unwrap() >= 0.0)
    );
    let last = events.last().unwrap();
    assert_eq!(last["stage"], "complete");

    let models = hive.models().await;
    assert_eq!(models.len(), 1);
    let entry = &models[0];
    assert_eq!(entry["reference"], format!("hf:{REPO}"));
    assert_eq!(entry["sha256"], SHA256);
    assert_eq!(entry["size_bytes"], size);
    assert_eq!(entry["quantization"], "Q4_1");
    assert_eq!(entry["local_path"], last["local_path"]);
    let on_disk = std::fs::read(entry["local_path"].as_str().unwrap()).unwrap();
    assert_eq!(on_disk.len() as u64, size);
}

#[tokio::test]
async fn connection_reset_at_40_percent_resumes_with_range_to_a_verified_file() {
    let hub = hub_with_model().await;
    let size = model_bytes().len() as u64;
    let cut = size * 2 / 5;
    hub.set_fault(Fault::ResetAt {
        byte: cut,
        times: 1,
    });
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let events = download(&hive, &format!("hf:{REPO}")).await;

    let retry = events
        .iter()
        .find(|e| e["stage"] == "retrying")
        .expect("a retry");
    assert_eq!(retry["attempt"], 1);
    assert_eq!(retry["max_attempts"], 6);
    assert_eq!(events.last().unwrap()["stage"], "complete", "{events:?}");
    let gets = hub.downloads();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(hive.models().await[0]["sha256"], SHA256);
}

#[tokio::test]
async fn corrupted_transfer_is_never_registered() {
    let hub = FakeHub::start().await;
    hub.add_file(
        "test/blob",
        "blob.Q8_0.gguf",
        Arc::new(gguf_blob(300_000, 7)),
    );
    hub.set_fault(Fault::Corrupt);
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let events = download(&hive, "hf:test/blob").await;

    let failed = events.last().unwrap();
    assert_eq!(failed["stage"], "failed", "{events:?}");
    assert_eq!(failed["error"]["error"]["code"], "DOWNLOAD_FAILED");
    let cause = failed["error"]["error"]["details"]["cause"]
        .as_str()
        .unwrap();
    assert!(cause.contains("sha256 mismatch"), "{cause}");
    assert!(hive.models().await.is_empty());
    let leftovers: Vec<_> = walk(&data.path().join("models"));
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

#[tokio::test]
async fn six_failed_attempts_end_in_download_failed_with_the_cause() {
    let hub = FakeHub::start().await;
    hub.add_file(
        "test/blob",
        "blob.Q8_0.gguf",
        Arc::new(gguf_blob(300_000, 1)),
    );
    hub.set_fault(Fault::ResetEvery { after: 1000 });
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let events = download(&hive, "hf:test/blob").await;

    let retries = events.iter().filter(|e| e["stage"] == "retrying").count();
    assert_eq!(retries, 5, "{events:?}");
    let failed = events.last().unwrap();
    assert_eq!(failed["error"]["error"]["code"], "DOWNLOAD_FAILED");
    assert_eq!(failed["error"]["error"]["details"]["attempts"], 6);
    assert_eq!(hub.downloads().len(), 6);
    assert!(hive.models().await.is_empty());

    let (status, body) = hive.spawn(json!({"model_ref": "hf:test/blob"})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "DOWNLOAD_FAILED");
}

#[tokio::test]
async fn concurrent_spawns_of_a_missing_model_download_it_once() {
    let hub = hub_with_model().await;
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let body = json!({"model_ref": format!("hf:{REPO}")});
    let (a, b) = tokio::join!(hive.spawn(body.clone()), hive.spawn(body));
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    assert_ne!(a.1["worker_id"], b.1["worker_id"]);
    assert_eq!(hub.downloads().len(), 1, "{:?}", hub.downloads());
    assert_eq!(hive.models().await.len(), 1);
}

#[tokio::test]
async fn hf_token_is_sent_to_the_hub() {
    let hub = FakeHub::start().await;
    hub.add_file("test/blob", "blob.Q8_0.gguf", Arc::new(gguf_blob(1000, 3)));
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(
        HiveOptions::new(data.path())
            .hub(&hub.url)
            .env("HF_TOKEN", "hf_secret"),
    )
    .await;
    download(&hive, "hf:test/blob").await;
    let requests = hub.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer hf_secret")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn quantization_is_chosen_by_the_reference() {
    let hub = FakeHub::start().await;
    for q in ["Q4_K_M", "Q8_0"] {
        hub.add_file(
            "test/multi",
            &format!("m.{q}.gguf"),
            Arc::new(gguf_blob(1000 + q.len(), 0)),
        );
    }
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;

    let default = download(&hive, "hf:test/multi").await;
    assert!(
        default.last().unwrap()["local_path"]
            .as_str()
            .unwrap()
            .ends_with("m.Q4_K_M.gguf")
    );
    let named = download(&hive, "hf:test/multi:Q8_0").await;
    assert!(
        named.last().unwrap()["local_path"]
            .as_str()
            .unwrap()
            .ends_with("m.Q8_0.gguf")
    );

    let missing = download(&hive, "hf:test/multi:Q2_K").await;
    let error = &missing.last().unwrap()["error"]["error"];
    assert_eq!(error["code"], "MODEL_NOT_FOUND");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("m.Q8_0.gguf (:Q8_0)"),
        "{error}"
    );
    let refs: Vec<String> = hive
        .models()
        .await
        .iter()
        .map(|m| m["reference"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(refs, ["hf:test/multi", "hf:test/multi:Q8_0"]);
}

#[tokio::test]
async fn unknown_repository_is_model_not_found() {
    let hub = FakeHub::start().await;
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let (status, body) = hive.spawn(json!({"model_ref": "hf:nobody/nothing"})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "MODEL_NOT_FOUND");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

/// The SmolLM2 file with its architecture renamed: a model the worker cannot run.
fn unsupported_architecture() -> Vec<u8> {
    let mut bytes = model_bytes().to_vec();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    // The value follows: type (u32), length (u64), then the five bytes of `llama`.
    assert_eq!(&bytes[at + 12..at + 17], b"llama");
    bytes[at + 12..at + 17].copy_from_slice(b"mamba");
    bytes
}

#[tokio::test]
async fn an_unsupported_model_is_refused_from_its_header_before_the_body_is_downloaded() {
    let hub = FakeHub::start().await;
    hub.add_file(
        "test/mamba",
        "mamba.Q4_1.gguf",
        Arc::new(unsupported_architecture()),
    );
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let events = download(&hive, "hf:test/mamba").await;
    let failed = events.last().unwrap();
    assert_eq!(failed["stage"], "failed", "{events:?}");
    let error = &failed["error"]["error"];
    assert_eq!(error["code"], "INVALID_MODEL", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("architecture `mamba` is not supported"),
        "{error}"
    );
    // Only the header was read: one bounded range, no transfer of the body.
    assert!(hub.downloads().is_empty(), "{:?}", hub.downloads());
    let reads: Vec<_> = (hub.requests().into_iter())
        .filter(|r| r.method == "GET" && r.path.ends_with(".gguf"))
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0].range.as_deref(), Some("bytes=0-4194303"));
    assert!(hive.models().await.is_empty(), "never catalogued");
    let left: Vec<_> = (walk(data.path()).into_iter())
        .filter(|p| p.to_string_lossy().contains("mamba"))
        .collect();
    assert!(left.is_empty(), "nothing of it left on disk: {left:?}");
}

#[tokio::test]
async fn a_model_that_cannot_fit_with_its_cache_is_refused_before_the_body() {
    let hub = hub_with_model().await;
    let data = tempfile::tempdir().unwrap();
    // 98 MB of weights fit in 150 MB; with the cache for 8192 tokens (~106 MB) they do not.
    let hive = Hive::start(
        HiveOptions::new(data.path())
            .hub(&hub.url)
            .arg("--memory-limit-mb", "150"),
    )
    .await;
    let events = download(&hive, &format!("hf:{REPO}")).await;
    let error = &events.last().unwrap()["error"]["error"];
    assert_eq!(error["code"], "INSUFFICIENT_RAM", "{events:?}");
    assert!(hub.downloads().is_empty(), "{:?}", hub.downloads());
    assert!(hive.models().await.is_empty());
}

#[tokio::test]
async fn a_file_larger_than_the_free_disk_is_refused_naming_both_sizes() {
    let hub = hub_with_model().await;
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let (status, list) = rbee_testkit::call(hive.get("/v1/models")).await;
    assert_eq!(status, 200);
    let free = list["disk_free_bytes"]
        .as_u64()
        .expect("free disk space reported");
    assert!(free > 0, "{list}");

    // The Hub says the file is larger than the disk (a petabyte).
    let claimed: u64 = 1 << 50;
    hub.set_fault(Fault::ClaimSize { bytes: claimed });
    let events = download(&hive, &format!("hf:{REPO}")).await;
    let error = &events.last().unwrap()["error"]["error"];
    assert_eq!(error["code"], "INSUFFICIENT_DISK", "{events:?}");
    let details = &error["details"];
    assert_eq!(details["required_mb"], claimed >> 20, "{error}");
    let available = details["available_mb"].as_u64().unwrap();
    assert!(available < claimed >> 20, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{} MB", claimed >> 20))
            && message.contains(&format!("{available} MB free")),
        "{message}"
    );
    // Refused before any byte of the file was read.
    assert!(hub.downloads().is_empty(), "{:?}", hub.downloads());
    let reads =
        (hub.requests().into_iter()).filter(|r| r.method == "GET" && r.path.ends_with(".gguf"));
    assert_eq!(reads.count(), 0);
    assert!(hive.models().await.is_empty());
}

#[tokio::test]
async fn a_pinned_revision_is_downloaded_beside_main_and_an_unknown_one_is_not_found() {
    let hub = FakeHub::start().await;
    let main = model_bytes();
    // The tag holds another build of the file under the same name.
    let mut tagged = (*main).clone();
    tagged.extend_from_slice(&[0u8; 32]);
    hub.add_file(REPO, FILE, main.clone());
    hub.add_file_at(REPO, "v2", FILE, Arc::new(tagged.clone()));
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;

    let events = download(&hive, &format!("hf:{REPO}@v2")).await;
    assert_eq!(events.last().unwrap()["stage"], "complete", "{events:?}");
    let events = download(&hive, &format!("hf:{REPO}")).await;
    assert_eq!(events.last().unwrap()["stage"], "complete", "{events:?}");
    let models = hive.models().await;
    let entry = |reference: &str| {
        (models.iter())
            .find(|m| m["reference"] == reference)
            .unwrap_or_else(|| panic!("{reference} in {models:?}"))
            .clone()
    };
    let pinned = entry(&format!("hf:{REPO}@v2"));
    let latest = entry(&format!("hf:{REPO}"));
    assert_eq!(pinned["size_bytes"], tagged.len() as u64);
    assert_eq!(latest["size_bytes"], main.len() as u64);
    assert_ne!(pinned["local_path"], latest["local_path"]);
    assert!(
        pinned["local_path"].as_str().unwrap().contains("@v2/"),
        "{pinned}"
    );
    assert!(
        (hub.downloads().iter()).any(|r| r.path.contains("/resolve/v2/")),
        "{:?}",
        hub.downloads()
    );

    let events = download(&hive, &format!("hf:{REPO}@nope")).await;
    let error = &events.last().unwrap()["error"]["error"];
    assert_eq!(error["code"], "MODEL_NOT_FOUND", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("revision nope"),
        "{error}"
    );
}

#[tokio::test]
async fn a_split_model_is_downloaded_shard_by_shard_verified_and_served_as_one() {
    let shards_dir = tempfile::tempdir().unwrap();
    let shards =
        rbee_testkit::gguf_split::split_gguf(&crate::support::model_path(), shards_dir.path(), 3);
    let hub = FakeHub::start().await;
    let mut total = 0;
    for shard in &shards {
        let bytes = std::fs::read(shard).unwrap();
        total += bytes.len() as u64;
        let name = shard.file_name().unwrap().to_str().unwrap();
        hub.add_file("test/split", &format!("Q4_1/{name}"), Arc::new(bytes));
    }
    // The first shard's transfer breaks once: only it is resumed.
    let first_len = std::fs::metadata(&shards[0]).unwrap().len();
    hub.set_fault(Fault::ResetAt {
        byte: first_len / 2,
        times: 1,
    });
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).hub(&hub.url)).await;
    let events = download(&hive, "hf:test/split:Q4_1").await;
    assert_eq!(events.last().unwrap()["stage"], "complete", "{events:?}");
    let progress: Vec<u64> = (events.iter())
        .filter(|e| e["stage"] == "downloading")
        .inspect(|e| assert_eq!(e["bytes_total"], total, "{e}"))
        .map(|e| e["bytes_downloaded"].as_u64().unwrap())
        .collect();
    assert_eq!(progress.last(), Some(&total), "{progress:?}");
    assert!(
        progress.iter().any(|&b| b > 0 && b < first_len) && progress.iter().any(|&b| b > first_len),
        "progress counts over all shards: {progress:?}"
    );
    let gets = hub.downloads();
    let shard_gets = |n: usize| {
        (gets.iter())
            .filter(|r| r.path.contains(&format!("-0000{n}-of-")))
            .count()
    };
    assert_eq!(
        (shard_gets(1), shard_gets(2), shard_gets(3)),
        (2, 1, 1),
        "{gets:?}"
    );

    let models = hive.models().await;
    assert_eq!(models.len(), 1, "{models:?}");
    let entry = &models[0];
    assert_eq!(entry["size_bytes"], total);
    assert_eq!(entry["quantization"], "Q4_1");
    let local = entry["local_path"].as_str().unwrap().to_owned();
    assert!(
        local.ends_with("Q4_1/SmolLM2-135M-Instruct.Q4_1-00001-of-00003.gguf"),
        "{local}"
    );
    for shard in &shards {
        let name = shard.file_name().unwrap();
        let got = std::path::Path::new(&local).with_file_name(name);
        assert_eq!(
            std::fs::read(&got).unwrap(),
            std::fs::read(shard).unwrap(),
            "{name:?}"
        );
    }

    let worker = hive.spawn_file_ref("hf:test/split:Q4_1").await;
    let id = worker["worker_id"].as_str().unwrap().to_owned();
    let worker = hive.wait_idle(&id).await;
    let text = crate::support::infer(&worker, 8).await;
    assert!(!text.trim().is_empty(), "the split model answers");
    let (_, info) = rbee_testkit::call(hive.get("/v1/models/info?ref=hf:test/split:Q4_1")).await;
    assert_eq!(info["size_bytes"], total, "{info}");
    assert_eq!(
        info["parameters"].as_u64().map(|p| p > 100_000_000),
        Some(true),
        "{info}"
    );
    hive.wait_idle(&id).await;
    let (_, stopped) = rbee_testkit::call(
        (hive.post("/v1/workers/keep_alive")).json(&json!({"worker_id": id, "seconds": 0})),
    )
    .await;
    assert_eq!(stopped["stopped"], true, "{stopped}");
    let (_, deleted) = rbee_testkit::call(
        (hive.post("/v1/models/delete")).json(&json!({"model_ref": "hf:test/split:Q4_1"})),
    )
    .await;
    assert_eq!(deleted["file_removed"], true, "{deleted}");
    let left: Vec<_> = walk(data.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("-of-00003"))
        .collect();
    assert!(left.is_empty(), "every shard is deleted: {left:?}");
}
