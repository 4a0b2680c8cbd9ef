//! The web dashboard in a real browser: headless Chromium driven over WebDriver by
//! `scripts/dashboard-check.py`, against a queen with a key, a node registered over a real
//! sshd, the queen's local hive, a real worker and the local Hub look-alike to pull from. Screenshots of the lab and the chat are left in
//! `target/tmp/dashboard/`.

use std::sync::Arc;

use rbee_testkit::fake_hub::{FakeHub, Fault};

use crate::support::{Queen, Sshd, free_port, run_client_check};

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
    ];
    run_client_check("dashboard-check.py", &args, "dashboard check passed").await;
    for shot in ["lab.png", "chat.png"] {
        let size = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(size > 10_000, "{shot} is {size} bytes");
    }
}
