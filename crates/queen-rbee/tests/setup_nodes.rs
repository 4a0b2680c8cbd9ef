//! Registering nodes: the SSH test before saving, list, remove.

use rbee_api::NodeName;
use serde_json::json;

use crate::support::{Queen, Sshd, call, free_port};

#[tokio::test]
async fn add_node_tests_ssh_records_backends_and_lists_it() {
    let sshd = Sshd::start(&[]).await;
    let queen = Queen::start(&sshd).await;
    let install = tempfile::tempdir().unwrap();
    let (status, body) = queen
        .add_node(&sshd, "loop", free_port(), install.path())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "reachable");
    assert_eq!(
        body["backends"],
        json!(["cpu"]),
        "rbee-hive detect ran over SSH"
    );
    assert!(body["last_connected_unix"].as_u64().is_some());
    let nodes = queen.nodes().await;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["node_name"], "loop");
    assert!(
        nodes[0].get("hive_api_key").is_none(),
        "the hive key is never listed"
    );
    let metrics = queen.metrics().await;
    assert_eq!(
        rbee_http::metrics::sample(&metrics, "rbee_queen_nodes{status=\"reachable\"}"),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn failed_ssh_test_saves_nothing_and_says_why() {
    let sshd = Sshd::start(&[]).await;
    let queen = Queen::start(&sshd).await;
    let (status, body, narration) = queen
        .setup(
            "/v2/registry/beehives/add",
            json!({
                "node_name": "closed",
                "ssh_host": "127.0.0.1",
                "ssh_port": free_port(),
                "ssh_user": Sshd::user(),
                "install_path": "/opt/rbee",
            }),
        )
        .await;
    assert_eq!(narration, ["Testing SSH connection to 127.0.0.1"]);
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "SSH_FAILED");
    let reason = body["error"]["details"]["reason"].as_str().unwrap();
    assert!(reason.contains("Connection refused"), "{reason}");
    assert!(queen.nodes().await.is_empty());
}

#[tokio::test]
async fn remove_forgets_a_node_and_bad_names_are_refused() {
    let sshd = Sshd::start(&[]).await;
    let queen = Queen::start(&sshd).await;
    let install = tempfile::tempdir().unwrap();
    assert_eq!(
        queen
            .add_node(&sshd, "gone-soon", free_port(), install.path())
            .await
            .0,
        200
    );
    let (status, _) = call(
        queen
            .post("/v2/registry/beehives/remove")
            .json(&json!({"node_name": "gone-soon"})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(queen.nodes().await.is_empty());
    let (status, body) = call(
        queen
            .post("/v2/registry/beehives/remove")
            .json(&json!({"node_name": "gone-soon"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NODE_NOT_FOUND"))
    );
    let (status, body) = queen
        .add_node(&sshd, NodeName::LOCALHOST, free_port(), install.path())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
}
