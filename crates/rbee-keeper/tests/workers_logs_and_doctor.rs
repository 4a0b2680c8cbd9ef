//! `rbee workers …`, `rbee logs`, `rbee doctor`, and an API key the queen refuses.

use crate::support::User;

#[tokio::test]
async fn workers_list_health_logs_and_shutdown_through_the_cli() {
    let user = User::new();
    let _queen = user.queen().await;
    let (code, _, stderr) = user
        .run(&["infer", "--prompt", "hi", "--max-tokens", "4"])
        .await;
    assert_eq!(code, Some(0), "{stderr}");

    let (code, list, _) = user.run(&["workers", "list"]).await;
    assert_eq!(code, Some(0));
    let row = list
        .lines()
        .find(|l| l.starts_with("localhost"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("idle") && row.contains("SmolLM2"), "{row}");
    // The compute path the worker reported: rbee's CPU kernels, with the ISA they chose.
    assert!(row.contains("rbee-cpu ("), "{row}");
    let id = row.split_whitespace().nth(1).unwrap().to_owned();

    let (code, health, _) = user
        .run(&["workers", "health", "--node", "localhost"])
        .await;
    assert_eq!(code, Some(0));
    assert!(
        health.contains("alive") && health.contains(&format!("{id} healthy")),
        "{health}"
    );

    let (code, logs, _) = user.run(&["logs", "--node", "localhost"]).await;
    assert_eq!(code, Some(0));
    assert!(
        logs.lines()
            .any(|l| l.starts_with(&format!("[worker:{id}]")) && l.contains("model loaded")),
        "{logs}"
    );
    assert!(
        logs.lines().any(|l| l.starts_with("[hive] spawned")),
        "{logs}"
    );

    let (code, out, _) = user.run(&["workers", "shutdown", "--id", &id]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("Stopped worker {id}")));
    let (_, list, _) = user.run(&["workers", "list"]).await;
    assert!(list.contains("No workers"), "{list}");

    let (code, _, stderr) = user
        .run(&["workers", "shutdown", "--id", "worker-nope"])
        .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("worker-nope"), "{stderr}");
}

#[tokio::test]
async fn a_refused_api_key_says_authentication_failed_and_names_the_config_file() {
    let user = User::new();
    let _queen = user.queen_with(&["--api-key", "right-key"]).await;
    let config = user.home.path().join("rbee.toml");
    std::fs::write(&config, "api_key = \"wrong-key\"\n").unwrap();
    let mut cmd = user.rbee(&["workers", "list"]);
    cmd.env("RBEE_CONFIG", &config);
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");

    std::fs::write(&config, "api_key = \"right-key\"\n").unwrap();
    let mut cmd = user.rbee(&["workers", "list"]);
    cmd.env("RBEE_CONFIG", &config);
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn doctor_prints_one_line_per_check() {
    let user = User::new();
    let _queen = user.queen().await;
    let (code, out, stderr) = user.run(&["doctor"]).await;
    assert_eq!(code, Some(0), "{out}{stderr}");
    for check in [
        "queen-rbee",
        "rbee-hive",
        "llm-worker-rbee",
        "default model",
        "data directory",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("{check} missing: {out}"));
        assert!(line.starts_with("ok"), "{line}");
    }
    assert!(out.contains("(running)"), "{out}");
}
