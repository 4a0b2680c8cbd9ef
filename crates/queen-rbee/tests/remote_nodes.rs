//! Inference on a node reached over SSH: the hive started detached, cold then warm, the
//! version check, an unreachable hive, and the cascade when the queen stops.

use std::time::Duration;

use rbee_api::queen::TaskEvent;
use serde_json::Value;

use crate::support::{Queen, Sshd, call, error, free_port, narration, signal, text, wait_gone};

async fn node_with_data_dir() -> (Sshd, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&[("XDG_DATA_HOME", data.path().to_str().unwrap())]).await;
    (sshd, data)
}

#[tokio::test]
async fn cold_then_warm_start_on_a_node_over_ssh_and_the_queen_stops_it_all() {
    let (sshd, data) = node_with_data_dir().await;
    let mut queen = Queen::start(&sshd).await;
    let hive_port = free_port();
    assert_eq!(
        queen
            .add_node(&sshd, "loop", hive_port, data.path())
            .await
            .0,
        200
    );

    let cold = queen.task("loop", 12).await;
    assert!(error(&cold).is_none(), "{cold:?}");
    let told = narration(&cold);
    assert!(
        told.contains("Starting rbee-hive on loop over SSH"),
        "{told}"
    );
    assert!(told.contains("Spawning a worker"), "{told}");
    assert!(cold.iter().any(|e| matches!(e, TaskEvent::Loading(_))));
    assert!(matches!(cold.last(), Some(TaskEvent::End(_))));
    assert!(!text(&cold).is_empty());
    assert!(
        data.path().join("rbee/models.db").is_file(),
        "the node's hive keeps its catalog in its data dir"
    );

    let warm = queen.task("loop", 12).await;
    let told = narration(&warm);
    assert!(told.contains("Reusing idle worker"), "{told}");
    assert!(!told.contains("Starting rbee-hive"), "{told}");
    assert_eq!(text(&warm), text(&cold));

    let (_, nodes) = call(queen.get("/v2/registry/beehives/list")).await;
    assert_eq!(nodes["beehives"][0]["status"], "reachable");
    let (_, workers) = call(queen.get("/v2/workers/list")).await;
    let worker: &Value = &workers["workers"][0];
    assert_eq!(worker["node"], "loop");
    let worker_pid = worker["pid"].as_u64().unwrap() as u32;

    signal(queen.child.id().unwrap(), "TERM");
    let status = tokio::time::timeout(Duration::from_secs(60), queen.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    wait_gone(worker_pid, Duration::from_secs(10)).await;
    assert!(
        reqwest::get(format!("http://127.0.0.1:{hive_port}/v1/health"))
            .await
            .is_err(),
        "the node's hive is stopped"
    );
}

/// A stand-in hive that answers health with another version.
async fn hive_of_version(version: &'static str) -> u16 {
    let app = axum::Router::new().route(
        "/v1/health",
        axum::routing::get(move || async move {
            axum::Json(
                serde_json::json!({"status": "alive", "version": version, "api_version": "v1"}),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn hive_of_another_version_is_refused_naming_both_versions() {
    let (sshd, data) = node_with_data_dir().await;
    let queen = Queen::start(&sshd).await;
    let port = hive_of_version("9.9.9").await;
    assert_eq!(queen.add_node(&sshd, "old", port, data.path()).await.0, 200);
    let events = queen.task("old", 4).await;
    let err = &error(&events).expect("an error").error;
    assert_eq!(err.code.as_str(), "VERSION_MISMATCH");
    assert!(
        err.message.contains("9.9.9") && err.message.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("rbee setup install --node old"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn frozen_hive_is_tried_three_times_then_connection_timeout() {
    let (sshd, data) = node_with_data_dir().await;
    let queen = Queen::start(&sshd).await;
    let hive_port = free_port();
    assert_eq!(
        queen
            .add_node(&sshd, "loop", hive_port, data.path())
            .await
            .0,
        200
    );
    assert!(error(&queen.task("loop", 2).await).is_none());
    let pid = pid_listening_on(hive_port);
    signal(pid, "STOP");
    let events = queen.task("loop", 2).await;
    signal(pid, "CONT");
    let err = &error(&events).expect("an error").error;
    assert_eq!(err.code.as_str(), "CONNECTION_TIMEOUT", "{}", err.message);
    assert_eq!(err.details["attempts"], 3);
    assert!(
        err.message.contains("check that rbee-hive runs"),
        "{}",
        err.message
    );
    let told = narration(&events);
    for n in 1..=3 {
        assert!(told.contains(&format!("attempt {n}/3")), "{told}");
    }
    let (_, nodes) = call(queen.get("/v2/registry/beehives/list")).await;
    assert_eq!(nodes["beehives"][0]["status"], "unreachable");
}

/// The process listening on a loopback TCP port, from `ss`.
fn pid_listening_on(port: u16) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("nothing listens on {port}: {text}"))
}

#[tokio::test]
async fn a_nodes_hive_settings_are_passed_when_its_hive_starts() {
    let (sshd, data) = node_with_data_dir().await;
    let queen = Queen::start(&sshd).await;
    let hive_port = free_port();
    let models = data.path().join("elsewhere");
    let (status, body, _) = queen
        .setup(
            "/v2/registry/beehives/add",
            serde_json::json!({"node_name": "tuned", "ssh_host": "127.0.0.1",
                "ssh_port": sshd.port, "ssh_user": crate::support::Sshd::user(),
                "install_path": data.path(), "hive_port": hive_port,
                "hive_settings": {"idle_timeout_secs": 1, "worker_slots": 2,
                    "models_dir": models}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hive_settings"]["worker_slots"], 2, "{body}");

    // A setting the hive would refuse is refused at once, naming it.
    let (status, body) =
        call(queen.post("/v2/registry/beehives/settings").json(
            &serde_json::json!({"node_name": "tuned", "hive_settings": {"worker_slots": 0}}),
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["field"], "worker_slots", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("worker_slots")
    );

    let events = queen.task("tuned", 4).await;
    assert!(error(&events).is_none(), "{events:?}");
    let (_, workers) = call(queen.get("/v2/workers/list")).await;
    assert_eq!(workers["workers"][0]["slots_total"], 2, "{workers}");
    // The hive's command line, as the node's process table shows it.
    let port_flag = format!("--port\0{hive_port}\0");
    let hive_cmdline = (std::fs::read_dir("/proc").unwrap().flatten())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .find(|c| c.contains("rbee-hive\0daemon") && c.contains(&port_flag))
        .expect("the node's hive runs");
    for expected in [
        "--idle-timeout\u{0}1s".to_owned(),
        "--worker-slots\u{0}2".to_owned(),
        format!("--models-dir\0{}", models.display()),
    ] {
        assert!(
            hive_cmdline.contains(&expected),
            "{expected:?} in {hive_cmdline:?}"
        );
    }
    // Idle for a second, the worker is stopped by its hive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, workers) = call(queen.get("/v2/workers/list")).await;
        if workers["workers"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running: {workers}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = call(
        queen
            .post("/v2/registry/beehives/settings")
            .json(&serde_json::json!({"node_name": "tuned", "hive_settings": {}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("hive_settings").is_none(),
        "defaults again: {body}"
    );
}
