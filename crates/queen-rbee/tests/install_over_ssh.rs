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

#[tokio::test]
async fn a_node_with_the_cuda_toolkit_gets_a_worker_built_with_cuda() {
    use std::os::unix::fs::PermissionsExt;
    // A stand-in `nvcc` on the node's PATH: the toolkit is detected over SSH.
    let toolkit = tempfile::tempdir().unwrap();
    let nvcc = toolkit.path().join("nvcc");
    std::fs::write(
        &nvcc,
        "#!/bin/sh\necho 'Cuda compilation tools, release 12.4'\n",
    )
    .unwrap();
    std::fs::set_permissions(&nvcc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        toolkit.path().display(),
        std::env::var("PATH").unwrap()
    );
    let sshd = Sshd::start(&[("PATH", &path)]).await;
    let repo = tempfile::tempdir().unwrap();
    rbee_testkit::stand_in_repo(repo.path(), "gpu");
    let nodes = tempfile::tempdir().unwrap();
    let install = nodes.path().join("rbee");
    let queen = Queen::start_with_local_binaries(&sshd).await;
    let (status, body, _) = queen
        .setup(
            "/v2/registry/beehives/add",
            json!({"node_name": "gpu-box", "ssh_host": "127.0.0.1", "ssh_port": sshd.port,
                "ssh_user": Sshd::user(), "git_repo_url": repo.path(), "git_branch": "gpu",
                "install_path": install,
                "hive_port": free_port()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, said) = queen
        .setup(
            "/v2/registry/beehives/install",
            json!({"node_name": "gpu-box"}),
        )
        .await;
    assert_eq!(status, 200, "{body} {said:#?}");
    assert!(
        said.iter()
            .any(|l| l.contains("CUDA toolkit found (nvcc): building the worker with cuda")),
        "{said:#?}"
    );
    // The stand-in worker says which backend it was built with.
    let built = std::process::Command::new(install.join("target/release/llm-worker-rbee"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&built.stdout), "cuda\n");
}
