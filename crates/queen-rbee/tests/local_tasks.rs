//! Tasks on `localhost`: a download relayed as progress events, and a worker that does not
//! finish loading in time.

use rbee_api::hive::DownloadEvent;
use rbee_api::queen::TaskEvent;
use rbee_api::sse::SseEvent;
use rbee_testkit::fake_hub::FakeHub;
use rbee_testkit::model_bytes;

use std::time::Duration;

use rbee_testkit::{call, descendants, signal, wait_gone};

use crate::support::{Queen, error, narration, text};

#[tokio::test]
async fn a_missing_model_is_downloaded_with_progress_then_answers() {
    let hub = FakeHub::start().await;
    hub.add_file("test/smol", "smol.Q4_1.gguf", model_bytes());
    let queen = Queen::start_local(&[], &[("HF_ENDPOINT", &hub.url)]).await;
    let events = queen.task_for("localhost", "hf:test/smol", 6).await;
    assert!(error(&events).is_none(), "{events:?}");
    let downloads: Vec<&DownloadEvent> = events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::Download(d) => Some(d),
            _ => None,
        })
        .collect();
    assert!(
        downloads.iter().any(|d| matches!(d, DownloadEvent::Downloading { bytes_total, .. } if *bytes_total == model_bytes().len() as u64)),
        "{downloads:?}"
    );
    assert!(matches!(
        downloads.last(),
        Some(DownloadEvent::Complete { .. })
    ));
    assert!(narration(&events).contains("Downloading hf:test/smol"));
    assert!(!text(&events).is_empty());

    let again = queen.task_for("localhost", "hf:test/smol", 6).await;
    assert!(
        !again.iter().any(|e| matches!(e, TaskEvent::Download(_))),
        "the second task finds the model"
    );
    assert_eq!(hub.downloads().len(), 1);
}

#[tokio::test]
async fn a_worker_slower_than_the_loading_timeout_gives_loading_timeout_with_its_state() {
    let queen = Queen::start_local(&["--loading-timeout", "20ms"], &[]).await;
    let events = queen.task("localhost", 4).await;
    let err = &error(&events).expect("an error").error;
    assert_eq!(err.code.as_str(), "LOADING_TIMEOUT", "{}", err.message);
    assert!(err.details["state"].is_string(), "{:?}", err.details);
    assert!(
        err.message.contains("rbee logs --node localhost"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn the_local_hive_and_its_workers_exit_when_the_queen_is_killed() {
    let mut queen = Queen::start_local(&[], &[]).await;
    assert!(error(&queen.task("localhost", 2).await).is_none());
    let pid = queen.child.id().unwrap();
    let tree = descendants(pid);
    assert!(
        tree.len() >= 2,
        "hive and worker run below the queen: {tree:?}"
    );
    signal(pid, "KILL");
    let _ = queen.child.wait().await;
    for p in tree {
        wait_gone(p, Duration::from_secs(30)).await;
    }
}

#[tokio::test]
async fn a_bad_request_is_refused_before_any_hive_or_worker_starts() {
    let queen = Queen::start_local(&[], &[]).await;
    let model = format!("file:{}", rbee_testkit::model_path().display());
    for bad in [
        serde_json::json!({"model": model, "prompt": "hi", "temperature": 500}),
        serde_json::json!({"model": model, "prompt": "hi", "top_p": 0}),
        serde_json::json!({"model": model, "prompt": "hi", "max_tokens": 0}),
        serde_json::json!({"model": model, "prompt": ""}),
        serde_json::json!({"model": model, "messages": []}),
    ] {
        let (status, body) = rbee_testkit::call(queen.post("/v2/tasks").json(&bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{body}");
    }
    let started = descendants(queen.child.id().unwrap());
    assert!(
        started.is_empty(),
        "nothing starts for a bad request: {started:?}"
    );
}

/// Opens a task on `localhost` for the default model; its response, once the stream began.
async fn open_task(queen: &Queen, max_tokens: usize) -> reqwest::Response {
    let model = format!("file:{}", rbee_testkit::model_path().display());
    let prompt = "Write a long story about a cat.";
    queen
        .open_task("localhost", &model, prompt, max_tokens)
        .await
}

/// Reads a task's stream until one of `needles` shows; which one, or `None` if it ended.
async fn read_until(resp: &mut reqwest::Response, needles: &[&str]) -> Option<usize> {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(i) = needles.iter().position(|n| seen.contains(n)) {
            return Some(i);
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("none of {needles:?} within 60 s in:\n{seen}"))
            .unwrap()?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn tasks_for_a_busy_worker_queue_in_order_up_to_the_limit_and_a_leaver_frees_its_place() {
    let queen = Queen::start_local(&["--queue-limit", "2", "--worker-slots", "1"], &[]).await;
    let mut running = open_task(&queen, 3000).await;
    assert_eq!(read_until(&mut running, &["event: token"]).await, Some(0));
    let mut first = open_task(&queen, 4).await;
    assert_eq!(
        read_until(&mut first, &["place 1 in its queue"]).await,
        Some(0)
    );
    let mut second = open_task(&queen, 4).await;
    assert_eq!(
        read_until(&mut second, &["place 2 in its queue"]).await,
        Some(0)
    );
    let mut refused = open_task(&queen, 4).await;
    assert_eq!(
        read_until(&mut refused, &["ALL_SLOTS_BUSY", "in its queue"]).await,
        Some(0),
        "the queue holds 2"
    );
    drop((first, second));
    // The leavers' places free up as soon as the queen sees them gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut next = open_task(&queen, 4).await;
        match read_until(&mut next, &["place 1 in its queue", "ALL_SLOTS_BUSY"]).await {
            Some(0) => break,
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "the places of tasks whose clients left were never freed"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a task for the default model with `backend`; its events.
async fn task_on(queen: &Queen, backend: &str) -> Vec<TaskEvent> {
    let resp = queen
        .post("/v2/tasks")
        .json(&serde_json::json!({"node": "localhost",
            "model": format!("file:{}", rbee_testkit::model_path().display()),
            "prompt": "Hi", "max_tokens": 2, "backend": backend}))
        .send()
        .await
        .unwrap();
    rbee_testkit::read_sse(resp)
        .await
        .iter()
        .filter_map(TaskEvent::from_frame)
        .map(|e| e.unwrap())
        .collect()
}

#[tokio::test]
async fn backend_auto_uses_a_gpu_only_with_a_worker_built_for_it_and_says_which() {
    use std::os::unix::fs::PermissionsExt;
    // A stand-in `nvidia-smi` reporting one GPU with 20 GB free; this worker binary is
    // built without cuda (its --version says so).
    let gpus = tempfile::tempdir().unwrap();
    let smi = gpus.path().join("nvidia-smi");
    std::fs::write(&smi, "#!/bin/sh\necho '0, 20000'\n").unwrap();
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", gpus.path().display());
    let queen = Queen::start_local(&[], &[("PATH", &path)]).await;

    // auto: the GPU is there but the worker cannot use it, so the CPU, and it says why.
    let events = task_on(&queen, "auto").await;
    assert!(error(&events).is_none(), "{events:?}");
    let said = narration(&events);
    assert!(
        said.contains("Backend auto: cpu (the best localhost has); its cuda GPU needs a worker built with --features cuda"),
        "{said}"
    );
    let assigned = events.iter().find_map(|e| match e {
        TaskEvent::Assigned(a) => Some(a),
        _ => None,
    });
    assert_eq!(assigned.unwrap().backend, rbee_api::Backend::Cpu);

    // Named explicitly, cuda is tried on the GPU, and the worker says what it lacks.
    let events = task_on(&queen, "cuda").await;
    let said = narration(&events);
    assert!(
        said.contains("(cuda:0)") && !said.contains("Backend auto"),
        "{said}"
    );
    let failed = error(&events).unwrap_or_else(|| panic!("{events:?}"));
    assert!(
        failed.error.message.contains("--features cuda"),
        "{failed:?}"
    );
}

/// One configuration file sets the queen's flags (`[queen]`) and its local hive's (`[hive]`).
#[tokio::test]
async fn the_config_file_sets_the_queens_flags_and_its_local_hives() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[queen]\nworker-slots = 2\n\n[hive]\nidle_timeout = \"2h\"\n",
    )
    .unwrap();
    let queen = Queen::start_local(&["--config", config.to_str().unwrap()], &[]).await;
    let model = format!("file:{}", rbee_testkit::model_path().display());
    let events = queen.task_for("localhost", &model, 2).await;
    assert!(!text(&events).is_empty(), "{events:?}");
    let deadline = tokio::time::Instant::now() + rbee_testkit::WAIT;
    let worker = loop {
        let (_, list) = call(queen.get("/v2/workers/list")).await;
        let worker = list["workers"][0].clone();
        if worker["unload_in_secs"].is_u64() {
            break worker;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(worker["slots_total"], 2, "{worker}");
    let unload = worker["unload_in_secs"].as_u64().unwrap();
    assert!(unload > 3600, "the hive's idle timeout is 2h: {worker}");
}
