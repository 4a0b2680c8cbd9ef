//! `POST /v2/registry/beehives/install`: clone the repository at its branch into the
//! install path and build the node's binaries in release mode, over SSH, narrated.
//!
//! The repository is a small local stand-in with the two packages a node needs, so the
//! test proves the mechanism without rebuilding Candle.

use std::path::Path;

use serde_json::json;

use crate::support::{Queen, Sshd, call, free_port, read_sse};

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A repository whose `stable` branch holds a workspace with `rbee-hive` (printing a CPU-only
/// detection) and `llm-worker-rbee`.
fn stand_in_repo(root: &Path) {
    let write = |path: &str, text: &str| {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"hive\", \"worker\"]\n",
    );
    write(
        "hive/Cargo.toml",
        "[package]\nname = \"rbee-hive\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(
        "hive/src/main.rs",
        "fn main() { println!(\"{{\\\"backends\\\":[\\\"cpu\\\"],\\\"devices\\\":{{\\\"cpu\\\":1}}}}\"); }\n",
    );
    write(
        "worker/Cargo.toml",
        "[package]\nname = \"llm-worker-rbee\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write("worker/src/main.rs", "fn main() {}\n");
    write(
        "Cargo.lock",
        "version = 4\n\n[[package]]\nname = \"llm-worker-rbee\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"rbee-hive\"\nversion = \"0.1.0\"\n",
    );
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "stand-in"]);
    git(root, &["checkout", "-q", "-b", "stable"]);
}

#[tokio::test]
async fn install_clones_the_branch_and_builds_release_binaries_over_ssh() {
    let sshd = Sshd::start(&[]).await;
    let repo = tempfile::tempdir().unwrap();
    stand_in_repo(repo.path());
    let nodes = tempfile::tempdir().unwrap();
    let install = nodes.path().join("rbee");
    let queen = Queen::start_with_local_binaries(&sshd).await;
    let (status, body) = call(queen.post("/v2/registry/beehives/add").json(&json!({
        "node_name": "fresh",
        "ssh_host": "127.0.0.1",
        "ssh_port": sshd.port,
        "ssh_user": Sshd::user(),
        "git_repo_url": repo.path(),
        "git_branch": "stable",
        "install_path": install,
        "hive_port": free_port(),
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backends"], json!([]), "nothing installed yet");

    let resp = queen
        .post("/v2/registry/beehives/install")
        .json(&json!({"node_name": "fresh"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let frames = read_sse(resp).await;
    let said: Vec<String> = frames
        .iter()
        .filter(|f| f.event == "narration")
        .map(|f| {
            serde_json::from_str::<serde_json::Value>(&f.data).unwrap()["human"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(frames.last().unwrap().event, "end", "{said:#?}");
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
