//! `rbee-hive detect` and the preflight checks, each failure with its code and details.
//! A fake `nvidia-smi` on PATH stands in for GPUs (a test double outside the product).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Hive, HiveOptions, call, hive_bin, model_path};

/// A directory holding a fake `nvidia-smi` that reports GPUs with the given free MB.
fn fake_gpus(dir: &Path, free_mb: &[u64]) -> String {
    let lines: Vec<String> = free_mb
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{i}, {f}"))
        .collect();
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' {}\n",
        lines
            .iter()
            .map(|l| format!("'{l}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let bin = dir.join("nvidia-smi");
    std::fs::write(&bin, script).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:/usr/bin:/bin", dir.display())
}

async fn detect(path: &str) -> Value {
    let out = tokio::process::Command::new(hive_bin())
        .arg("detect")
        .env("PATH", path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn detect_reports_cpu_and_the_gpus_nvidia_smi_lists() {
    let dir = tempfile::tempdir().unwrap();
    let without = detect("/usr/bin:/bin").await;
    assert_eq!(without, json!({"backends": ["cpu"], "devices": {"cpu": 1}}));
    let with = detect(&fake_gpus(dir.path(), &[20_000, 7_000])).await;
    assert_eq!(with["backends"], json!(["cpu", "cuda"]));
    assert_eq!(with["devices"], json!({"cpu": 1, "cuda": 2}));
    assert_eq!(with["vram_free_mb"], json!({"cuda": [20_000, 7_000]}));
}

/// While the hive's GPU detection waits on a slow `nvidia-smi` (here one that waits until the
/// test lets it go), the hive's other requests are still answered: detection runs off the
/// async runtime's threads, however many resource requests wait on it.
#[tokio::test]
async fn a_slow_nvidia_smi_does_not_hold_up_the_hives_other_requests() {
    let (bin, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hold, started) = (bin.path().join("hold"), bin.path().join("started"));
    let script = format!(
        "#!/bin/sh\nif [ -e {hold} ]; then echo >> {started}; while [ -e {hold} ]; do sleep 0.05; done; fi\n\
         printf '%s\\n' '0, 9000'\n",
        hold = hold.display(),
        started = started.display()
    );
    let smi = bin.path().join("nvidia-smi");
    std::fs::write(&smi, script).unwrap();
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    let hive = Hive::start(HiveOptions::new(data.path()).env("PATH", &path)).await;
    std::fs::write(&hold, "").unwrap();
    // More waiting requests than the runtime has threads on any machine this runs on.
    let waiting: Vec<_> = (0..16)
        .map(|_| tokio::spawn(hive.get("/v1/resources").send()))
        .collect();
    let calls = || std::fs::read_to_string(&started).map_or(0, |s| s.lines().count());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while calls() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "nvidia-smi was never run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let health = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        hive.get("/v1/health").send(),
    )
    .await
    .expect("the hive answers its health check while detection waits")
    .unwrap();
    assert_eq!(health.status(), 200);
    std::fs::remove_file(&hold).unwrap();
    for request in waiting {
        let resources: Value = request.await.unwrap().unwrap().json().await.unwrap();
        assert_eq!(
            resources["vram_free_mb"],
            json!({"cuda": [9000]}),
            "{resources}"
        );
    }
}

fn file_ref() -> String {
    format!("file:{}", model_path().display())
}

#[tokio::test]
async fn insufficient_ram_names_required_and_available_megabytes() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).arg("--memory-limit-mb", "50")).await;
    let (status, body) = hive.spawn(json!({"model_ref": file_ref()})).await;
    assert_eq!(status, 422, "{body}");
    let err = &body["error"];
    assert_eq!(err["code"], "INSUFFICIENT_RAM");
    assert_eq!(err["details"]["available_mb"], 50);
    let required = err["details"]["required_mb"].as_u64().unwrap();
    // 94 MB of weights plus the 8-bit cache at 8192 tokens: 30 layers x 2 x 192 values
    // x 36/32 bytes x 8192 = 101 MB.
    assert!(
        (194..=196).contains(&required),
        "94 MB of weights + 101 MB of cache, got {required}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("smaller quantization")
    );
    assert!(hive.workers().await.is_empty());
}

/// A smaller context set for a model (`rbee models set --context-length`) shrinks what the
/// preflight asks of the RAM, so a model refused at its full context starts.
#[tokio::test]
async fn a_smaller_context_set_for_a_model_lets_it_fit_the_ram() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).arg("--memory-limit-mb", "150")).await;
    let (status, body) = hive.spawn(json!({"model_ref": file_ref()})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("INSUFFICIENT_RAM")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--context-length"),
        "{body}"
    );
    let settings = |n: u32| {
        call(
            hive.post("/v1/models/settings")
                .json(&json!({"model_ref": file_ref(), "settings": {"context_length": n}})),
        )
    };
    let (status, body) = settings(9000).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("can only lower it"),
        "{body}"
    );
    let (status, body) = settings(1024).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["context_length"], 1024, "{body}");
    let worker = hive.spawn_file_ref(&file_ref()).await;
    let id = worker["worker_id"].as_str().unwrap().to_owned();
    let worker = hive.wait_idle(&id).await;
    let (_, ready) = call(
        reqwest::Client::new()
            .get(format!("{}/v1/ready", worker["url"].as_str().unwrap()))
            .bearer_auth(worker["api_key"].as_str().unwrap()),
    )
    .await;
    assert_eq!(ready["model"]["context_length"], 1024, "{ready}");
}

#[tokio::test]
async fn missing_backend_is_backend_unavailable() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path()).env("PATH", "/usr/bin:/bin")).await;
    let (status, body) = hive
        .spawn(json!({"model_ref": file_ref(), "backend": "cuda"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "BACKEND_UNAVAILABLE");
    assert_eq!(body["error"]["details"]["backend"], "cuda");
    assert!(body["error"]["message"].as_str().unwrap().contains("cuda"));
}

#[tokio::test]
async fn too_little_free_vram_is_vram_exhausted() {
    let data = tempfile::tempdir().unwrap();
    let gpus = tempfile::tempdir().unwrap();
    let path = fake_gpus(gpus.path(), &[50]);
    let hive = Hive::start(HiveOptions::new(data.path()).env("PATH", &path)).await;
    let (status, body) = hive
        .spawn(json!({"model_ref": file_ref(), "backend": "cuda", "device": 0}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "VRAM_EXHAUSTED");
    assert_eq!(body["error"]["details"]["free_mb"], 50);
    assert_eq!(body["error"]["details"]["device"], 0);

    let (status, body) = hive
        .spawn(json!({"model_ref": file_ref(), "backend": "cuda", "device": 3}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "BACKEND_UNAVAILABLE");
}

#[tokio::test]
async fn a_file_that_is_not_gguf_is_refused_before_any_spawn() {
    let data = tempfile::tempdir().unwrap();
    let bad = data.path().join("notes.gguf");
    std::fs::write(&bad, "not weights").unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let (status, body) = hive
        .spawn(json!({"model_ref": format!("file:{}", bad.display())}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_MODEL");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a GGUF file")
    );
    assert!(hive.workers().await.is_empty());
}

#[tokio::test]
async fn a_file_that_fails_its_check_is_never_catalogued_nor_echoed() {
    let data = tempfile::tempdir().unwrap();
    let empty = data.path().join("empty.gguf");
    std::fs::write(&empty, "").unwrap();
    let secret = data.path().join("secret.gguf");
    std::fs::write(&secret, "root:SECRET-HASH:0:0").unwrap();
    let truncated = data.path().join("truncated.gguf");
    let model = std::fs::read(model_path()).unwrap();
    std::fs::write(&truncated, &model[..model.len() / 2]).unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    for file in [
        "/etc/passwd".as_ref(),
        empty.as_path(),
        secret.as_path(),
        truncated.as_path(),
    ] {
        let model_ref = format!("file:{}", file.display());
        for (route, what) in [
            ("/v1/models/download", "register"),
            ("/v1/workers/spawn", "spawn"),
        ] {
            let (status, body) =
                call(hive.post(route).json(&json!({"model_ref": model_ref}))).await;
            assert_eq!(status, 422, "{what} {model_ref}: {body}");
            assert_eq!(body["error"]["code"], "INVALID_MODEL", "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                !message.contains("root") && !message.contains("SECRET"),
                "{message}"
            );
        }
    }
    assert!(hive.models().await.is_empty(), "{:?}", hive.models().await);
    assert!(hive.workers().await.is_empty());
}

#[tokio::test]
async fn a_missing_file_is_model_not_found() {
    let data = tempfile::tempdir().unwrap();
    let hive = Hive::start(HiveOptions::new(data.path())).await;
    let (status, body) = hive
        .spawn(json!({"model_ref": "file:/nowhere/model.gguf"}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "MODEL_NOT_FOUND");
}

#[tokio::test]
async fn a_gpu_load_is_held_to_free_vram_not_to_the_ram() {
    let data = tempfile::tempdir().unwrap();
    let gpus = tempfile::tempdir().unwrap();
    let path = fake_gpus(gpus.path(), &[20_000]);
    // 50 MB of RAM cannot hold the model; the GPU's 20 GB can.
    let hive = Hive::start(
        HiveOptions::new(data.path())
            .env("PATH", &path)
            .arg("--memory-limit-mb", "50"),
    )
    .await;
    hive.start_download(&file_ref()).await;
    let (_, resources) = call(hive.get("/v1/resources")).await;
    assert_eq!(resources["backends"], json!(["cpu", "cuda"]), "{resources}");
    // The worker binary under test is built for the CPU only, and says so.
    assert_eq!(resources["worker_backends"], json!(["cpu"]), "{resources}");
    let preflight = |backend: &str| {
        call(
            hive.post("/v1/preflight")
                .json(&json!({"model_ref": file_ref(), "backend": backend, "device": 0})),
        )
    };
    let (status, body) = preflight("cuda").await;
    assert_eq!((status, &body["ok"]), (200, &json!(true)), "{body}");
    let (status, body) = preflight("cpu").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "INSUFFICIENT_RAM");
}
