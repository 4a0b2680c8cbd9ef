//! Stopping a hive stops every worker: by signal, over HTTP, and even when the hive is
//! killed outright.

use std::time::Duration;

use crate::support::{Hive, HiveOptions, signal, wait_gone};

async fn two_workers(hive: &Hive) -> Vec<u32> {
    let a = hive.spawn_file().await;
    let b = hive.spawn_file().await;
    let mut pids = Vec::new();
    for s in [a, b] {
        let w = hive.wait_idle(s["worker_id"].as_str().unwrap()).await;
        pids.push(w["pid"].as_u64().unwrap() as u32);
    }
    pids
}

#[tokio::test]
async fn sigterm_stops_every_worker_and_exits_zero_keeping_the_catalog() {
    let data = tempfile::tempdir().unwrap();
    let mut hive = Hive::start(HiveOptions::new(data.path())).await;
    let pids = two_workers(&hive).await;
    signal(hive.pid(), "TERM");
    assert_eq!(hive.wait_exit().await, Some(0), "{}", hive.log.text());
    for pid in pids {
        wait_gone(pid, Duration::from_secs(1)).await;
    }
    assert!(data.path().join("models.db").is_file());
}

#[tokio::test]
async fn admin_shutdown_stops_every_worker_and_exits_zero() {
    let data = tempfile::tempdir().unwrap();
    let mut hive = Hive::start(HiveOptions::new(data.path())).await;
    let pids = two_workers(&hive).await;
    let resp = hive.post("/v1/admin/shutdown").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hive.wait_exit().await, Some(0));
    for pid in pids {
        wait_gone(pid, Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn workers_exit_even_when_the_hive_is_killed() {
    let data = tempfile::tempdir().unwrap();
    let mut hive = Hive::start(HiveOptions::new(data.path())).await;
    let pids = two_workers(&hive).await;
    signal(hive.pid(), "KILL");
    hive.wait_exit().await;
    for pid in pids {
        wait_gone(pid, Duration::from_secs(10)).await;
    }
}
