//! The web dashboard in a real browser: headless Chromium driven over WebDriver by
//! `scripts/dashboard-check.py`, against a queen with a key, two nodes registered over a real
//! sshd (one whose hive port another program holds, so its hive cannot start), the queen's
//! local hive, a real worker and the local Hub look-alike to pull from. Screenshots of the
//! lab and the chat are left in `target/tmp/dashboard/`.

use std::sync::Arc;

use rbee_testkit::fake_hub::{FakeHub, Fault};

use rbee_api::queen::TaskEvent;
use rbee_api::sse::SseEvent;

use crate::support::{Queen, Sshd, error, free_port, read_sse, run_client_check};

const REPO: &str = "test/SmolLM2-135M-Instruct-GGUF";

#[tokio::test]
async fn the_dashboard_pulls_a_model_chats_with_it_and_shows_its_worker_in_chromium() {
    let hub = FakeHub::start().await;
    let bytes = std::fs::read(rbee_testkit::model_path()).unwrap();
    hub.add_file(REPO, "SmolLM2-135M-Instruct.Q4_1.gguf", Arc::new(bytes));
    // About three seconds for the model, so the page shows its progress part way.
    hub.set_fault(Fault::Slow {
        bytes_per_sec: 32_000_000,
    });
    let key = "browser-key";
    let data = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&[("XDG_DATA_HOME", data.path().to_str().unwrap())]).await;
    let mut queen =
        Queen::start_with(&sshd, &["--api-key", key], &[("HF_ENDPOINT", &hub.url)]).await;
    queen.key = Some(key.to_owned());
    let (status, body) = queen
        .add_node(&sshd, "loop", free_port(), data.path())
        .await;
    assert_eq!(status, 200, "{body}");
    // Another program answers on the broken node's hive port by hanging up.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    std::thread::spawn(move || taken.incoming().for_each(drop));
    let (status, body) = queen
        .add_node(&sshd, "broken", taken_port, data.path())
        .await;
    assert_eq!(status, 200, "{body}");
    let resp = (queen.post("/v2/tasks").bearer_auth(key))
        .json(&serde_json::json!({"node": "broken", "model": "file:/none.gguf", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events: Vec<TaskEvent> = (read_sse(resp).await.iter())
        .filter_map(TaskEvent::from_frame)
        .map(Result::unwrap)
        .collect();
    let failed = error(&events).expect("the broken node's hive cannot start");
    assert!(failed.error.message.contains("cannot listen"), "{failed:?}");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let pull = format!("hf:{REPO}");
    let args = [
        "--url",
        &queen.url,
        "--key",
        key,
        "--pull",
        &pull,
        "--screenshots",
        shots.to_str().unwrap(),
        "--node",
        "loop",
        "--broken-node",
        "broken",
    ];
    run_client_check("dashboard-check.py", &args, "dashboard check passed").await;
    for shot in ["lab.png", "chat.png"] {
        let size = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(size > 10_000, "{shot} is {size} bytes");
    }
}
