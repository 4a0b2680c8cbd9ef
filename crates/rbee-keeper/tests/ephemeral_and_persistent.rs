//! Ephemeral mode (rbee starts the queen and takes the whole tree down) and persistent mode
//! (rbee uses a running queen and leaves everything running; the next request is warm).

use std::time::Duration;

use crate::support::{User, alive, descendants, first_output, signal, wait_gone};

const STORY: &[&str] = &[
    "infer",
    "--prompt",
    "Write a short story about a cat.",
    "--temperature",
    "0",
];

#[tokio::test]
async fn ephemeral_mode_streams_a_story_and_leaves_no_process_behind() {
    let user = User::new();
    let mut child = user
        .rbee(&[STORY, &["--max-tokens", "60"]].concat())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let (mut stdout, first) = first_output(&mut child).await;
    let tree = descendants(pid);
    assert!(
        tree.len() >= 3,
        "queen, hive and worker run below rbee: {tree:?}"
    );
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut rest)
        .await
        .unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    let story = first + &rest;
    assert!(story.to_lowercase().contains("cat"), "{story:?}");
    assert!(story.split_whitespace().count() >= 20, "{story:?}");
    for pid in tree {
        wait_gone(pid, Duration::from_secs(5)).await;
    }
}

/// `rbee` killed by `sig` mid-answer: the queen, hive and worker it started all stop.
async fn ephemeral_tree_dies_with_rbee(sig: &str) {
    let user = User::new();
    let mut child = user
        .rbee(&[STORY, &["--max-tokens", "3000"]].concat())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let (_stdout, _) = first_output(&mut child).await;
    let tree = descendants(pid);
    assert!(tree.len() >= 3, "queen, hive and worker: {tree:?}");
    signal(pid, sig);
    let _ = child.wait().await.unwrap();
    for pid in tree {
        wait_gone(pid, Duration::from_secs(30)).await;
    }
}

#[tokio::test]
async fn ephemeral_tree_stops_when_rbee_gets_sigterm() {
    ephemeral_tree_dies_with_rbee("TERM").await;
}

#[tokio::test]
async fn ephemeral_tree_stops_when_the_terminal_closes_sighup() {
    ephemeral_tree_dies_with_rbee("HUP").await;
}

#[tokio::test]
async fn ephemeral_tree_stops_when_rbee_is_killed_sigkill() {
    ephemeral_tree_dies_with_rbee("KILL").await;
}

#[tokio::test]
async fn persistent_mode_leaves_the_tree_running_and_the_second_request_is_warm() {
    let user = User::new();
    let mut queen = user.queen().await;
    let (code, cold, stderr) = user.run(&[STORY, &["--max-tokens", "8"]].concat()).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!cold.trim().is_empty());
    assert!(stderr.contains("Spawning a worker"), "{stderr}");
    assert!(
        stderr.contains("[queen-rbee] Starting rbee-hive on localhost"),
        "{stderr}"
    );

    let workers = queen
        .wait_workers("an idle worker", |w| {
            w.len() == 1 && w[0]["state"] == "idle"
        })
        .await;
    let worker_pid = workers[0]["pid"].as_u64().unwrap() as u32;
    let queen_pid = queen.child.id().unwrap();
    assert!(
        alive(queen_pid) && alive(worker_pid),
        "persistent mode leaves queen and worker running"
    );

    let (code, warm, stderr) = user.run(&[STORY, &["--max-tokens", "8"]].concat()).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Reusing idle worker"), "{stderr}");
    assert!(!stderr.contains("Spawning a worker"), "{stderr}");
    assert_eq!(warm, cold, "greedy output is the same warm or cold");

    let tree = descendants(queen_pid);
    signal(queen_pid, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(60), queen.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    for pid in tree {
        wait_gone(pid, Duration::from_secs(5)).await;
    }
}
