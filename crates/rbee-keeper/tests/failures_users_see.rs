//! What users see when things go wrong: one clear message, the right exit
//! code, never a stack trace or a hang.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::support::{User, descendants, first_output, signal};

const LONG: &[&str] = &[
    "infer",
    "--prompt",
    "Write a long story about a cat.",
    "--max-tokens",
    "3000",
    "--temperature",
    "0",
];

#[tokio::test]
async fn unknown_node_fails_with_the_add_node_hint() {
    let user = User::new();
    let (code, stdout, stderr) = user
        .run(&["infer", "--node", "nowhere", "--prompt", "hi"])
        .await;
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("nowhere") && stderr.contains("rbee setup add-node"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn ctrl_c_cancels_on_the_worker_prints_canceled_and_exits_130() {
    let user = User::new();
    let queen = user.queen().await;
    let mut child = user.rbee(LONG).spawn().unwrap();
    let (_stdout, _) = first_output(&mut child).await;
    signal(child.id().unwrap(), "INT");
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim_end().ends_with("Canceled."), "{stderr}");
    queen
        .wait_workers("the worker idle again", |w| {
            w.len() == 1 && w[0]["state"] == "idle"
        })
        .await;
}

#[tokio::test]
async fn a_request_for_a_busy_worker_waits_its_turn_in_the_queue() {
    let user = User::new();
    let queen = user.queen_with(&["--worker-slots", "1"]).await;
    let short = [
        "infer",
        "--prompt",
        "Write about a cat.",
        "--max-tokens",
        "300",
    ];
    let mut first = user.rbee(&short).spawn().unwrap();
    let (_stdout, _) = first_output(&mut first).await;
    let (code, _, stderr) = user
        .run(&["infer", "--prompt", "hi", "--max-tokens", "4"])
        .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("waiting for a slot (place 1"), "{stderr}");
    assert!(first.wait().await.unwrap().success());
    assert_eq!(queen.workers().await.len(), 1);
}

#[tokio::test]
async fn busy_worker_with_a_full_queue_is_retried_after_1_2_4_seconds_then_exit_1() {
    let user = User::new();
    let queen = user
        .queen_with(&["--queue-limit", "0", "--worker-slots", "1"])
        .await;
    let mut long = user.rbee(LONG).spawn().unwrap();
    let (_stdout, _) = first_output(&mut long).await;
    let (code, _, stderr) = user
        .run(&["infer", "--prompt", "hi", "--max-tokens", "4"])
        .await;
    assert_eq!(code, Some(1), "{stderr}");
    for (n, wait) in [(1, 1), (2, 2), (3, 4)] {
        assert!(
            stderr.contains(&format!("retrying in {wait} s ({n}/3)")),
            "{stderr}"
        );
    }
    assert!(stderr.contains("another node"), "{stderr}");
    signal(long.id().unwrap(), "INT");
    let _ = long.wait().await;
    drop(queen);
}

/// Kills one process of the tree mid-answer; rbee must fail with the partial answer saved.
async fn kill_mid_answer(victim: impl FnOnce(&[serde_json::Value], &[u32]) -> u32) {
    let user = User::new();
    let queen = user.queen().await;
    let mut child = user.rbee(LONG).spawn().unwrap();
    let (mut stdout, first) = first_output(&mut child).await;
    let workers = queen.workers().await;
    signal(
        victim(&workers, &descendants(queen.child.id().unwrap())),
        "KILL",
    );
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("stop: cancelled"), "{stderr}");
    let (tokens, saved) = rbee_testkit::partial_answer(&stderr);
    assert!(
        !saved.is_empty() && (first.clone() + &rest).starts_with(&saved),
        "{saved:?}"
    );
    assert!(tokens > 0);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let file = stderr.split("saved in ").nth(1).unwrap().trim();
    assert!(
        file.starts_with(user.home.path().to_str().unwrap()),
        "partial answers stay in the user's own directory: {file}"
    );
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{file}");
}

fn worker_pid(workers: &[serde_json::Value]) -> u32 {
    workers[0]["pid"].as_u64().unwrap() as u32
}

#[tokio::test]
async fn worker_killed_mid_stream_saves_the_partial_answer_and_exits_1() {
    kill_mid_answer(|workers, _| worker_pid(workers)).await;
}

#[tokio::test]
async fn hive_killed_mid_stream_is_an_error_not_a_cancel() {
    kill_mid_answer(|workers, tree| {
        let worker = worker_pid(workers);
        *tree
            .iter()
            .find(|&&pid| pid != worker)
            .expect("the hive runs below the queen")
    })
    .await;
}
