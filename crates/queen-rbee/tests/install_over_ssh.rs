//! `POST /v2/registry/beehives/install`: clone the repository at its branch into the
//! install path and build the node's binaries in release mode, over SSH, narrated.
//!
//! The repository is [`rbee_testkit::stand_in_repo`], so the test proves the mechanism
//! without rebuilding Candle.

use serde_json::json;

use crate::support::{Queen, Sshd, free_port};

#[tokio::test]
async fn install_clones_the_branch_and_builds_release_binaries_over_ssh() {
    let sshd = Sshd::start(&[]).await;
    let repo = tempfile::tempdir().unwrap();
    rbee_testkit::stand_in_repo(repo.path(), "stable");
    let nodes = tempfile::tempdir().unwrap();
    let install = nodes.path().join("rbee");
    let queen = Queen::start_with_local_binaries(&sshd).await;
    let (status, body, said) = queen
        .setup(
            "/v2/registry/beehives/add",
            json!({
                "node_name": "fresh",
                "ssh_host": "127.0.0.1",
                "ssh_port": sshd.port,
                "ssh_user": Sshd::user(),
                "git_repo_url": repo.path(),
                "git_branch": "stable",
                "install_path": install,
                "hive_port": free_port(),
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backends"], json!([]), "nothing installed yet");
    assert!(said[0].starts_with("Testing SSH connection"), "{said:?}");

    let (status, body, said) = queen
        .setup(
            "/v2/registry/beehives/install",
            json!({"node_name": "fresh"}),
        )
        .await;
    assert_eq!(status, 200, "{body} {said:#?}");
    assert_eq!(
        body["backends"],
        json!(["cpu"]),
        "the end event has the node"
    );
    assert!(
        said.iter()
            .any(|l| l.contains("checked out") && l.contains("stable")),
        "{said:#?}"
    );
    assert!(install.join("target/release/rbee-hive").is_file());
    assert!(install.join("target/release/llm-worker-rbee").is_file());
    let nodes = queen.nodes().await;
    assert_eq!(
        nodes[0]["backends"],
        json!(["cpu"]),
        "detected after the install"
    );
}
