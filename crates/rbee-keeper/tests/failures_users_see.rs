//! What users see when things go wrong: one clear message, the right exit
//! code, never a stack trace or a hang.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::support::{User, first_output, signal};

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
async fn busy_worker_is_retried_after_1_2_4_seconds_then_exit_1() {
    let user = User::new();
    let queen = user.queen().await;
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

#[tokio::test]
async fn worker_killed_mid_stream_saves_the_partial_answer_and_exits_1() {
    let user = User::new();
    let queen = user.queen().await;
    let mut child = user.rbee(LONG).spawn().unwrap();
    let (mut stdout, first) = first_output(&mut child).await;
    let workers = queen.workers().await;
    signal(workers[0]["pid"].as_u64().unwrap() as u32, "KILL");
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
    let (tokens, saved) = rbee_testkit::partial_answer(&stderr);
    assert!(
        !saved.is_empty() && (first.clone() + &rest).starts_with(&saved),
        "{saved:?}"
    );
    assert!(tokens > 0);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
