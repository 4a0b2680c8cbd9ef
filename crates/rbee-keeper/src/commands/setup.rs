//! `rbee setup add-node | list-nodes | remove-node | install`.

use futures::StreamExt;
use rbee_api::queen::{Beehive, BeehiveList, NodeRequest, NodeStatus};
use rbee_api::routes::queen as paths;
use reqwest::Method;

use crate::cli::{AddNodeArgs, SetupCommand};
use crate::config::Config;
use crate::error::{Result, fail};
use crate::queen::Queen;

pub async fn run(queen: &Queen, config: &Config, command: &SetupCommand) -> Result<()> {
    match command {
        SetupCommand::AddNode(args) => add(queen, config, args).await,
        SetupCommand::ListNodes => list(queen).await,
        SetupCommand::RemoveNode { name } => {
            queen
                .send(
                    queen
                        .request(Method::POST, paths::BEEHIVES_REMOVE)
                        .json(&NodeRequest {
                            node_name: name.clone(),
                        }),
                )
                .await?;
            println!("Removed node {name}.");
            Ok(())
        }
        SetupCommand::Install { node } => install(queen, node).await,
    }
}

async fn add(queen: &Queen, config: &Config, args: &AddNodeArgs) -> Result<()> {
    let install_path = args
        .install_path
        .clone()
        .or_else(|| config.remote.git_repo_dir.clone())
        .ok_or_else(|| {
            fail("--install-path is required (or set [remote] git_repo_dir in the configuration)")
        })?;
    let node = Beehive {
        node_name: args.name.clone(),
        ssh_host: args.ssh_host.clone(),
        ssh_port: args.ssh_port,
        ssh_user: args.ssh_user.clone(),
        ssh_key_path: args.ssh_key.clone(),
        git_repo_url: args
            .git_repo
            .clone()
            .or_else(|| config.remote.git_repo.clone()),
        git_branch: args.git_branch.clone(),
        install_path,
        hive_port: args.hive_port,
        last_connected_unix: None,
        last_error: None,
        status: NodeStatus::Unknown,
        backends: Vec::new(),
        devices: Default::default(),
    };
    eprintln!("[queen-rbee] Testing SSH connection to {}", node.ssh_host);
    let saved: Beehive = queen
        .json(queen.request(Method::POST, paths::BEEHIVES_ADD).json(&node))
        .await?;
    let backends: Vec<&str> = saved.backends.iter().map(|b| b.as_str()).collect();
    println!(
        "Added node {} ({}@{}:{}){}",
        saved.node_name,
        saved.ssh_user,
        saved.ssh_host,
        saved.ssh_port,
        if backends.is_empty() {
            "; rbee is not installed there yet: run `rbee setup install --node ".to_owned()
                + &saved.node_name
                + "`"
        } else {
            format!("; backends: {}", backends.join(", "))
        }
    );
    Ok(())
}

async fn list(queen: &Queen) -> Result<()> {
    let list: BeehiveList = queen
        .json(queen.request(Method::GET, paths::BEEHIVES_LIST))
        .await?;
    if list.beehives.is_empty() {
        println!("No nodes registered. Add one with `rbee setup add-node`.");
        return Ok(());
    }
    println!(
        "{:<16} {:<28} {:<12} {:<12} INSTALL PATH",
        "NODE", "SSH", "STATUS", "BACKENDS"
    );
    for b in list.beehives {
        let backends: Vec<&str> = b.backends.iter().map(|x| x.as_str()).collect();
        println!(
            "{:<16} {:<28} {:<12} {:<12} {}",
            b.node_name,
            format!("{}@{}:{}", b.ssh_user, b.ssh_host, b.ssh_port),
            b.status.as_str(),
            if backends.is_empty() {
                "-".to_owned()
            } else {
                backends.join(",")
            },
            b.install_path
        );
    }
    Ok(())
}

async fn install(queen: &Queen, node: &str) -> Result<()> {
    let resp = queen
        .send(
            queen
                .request(Method::POST, paths::BEEHIVES_INSTALL)
                .json(&NodeRequest {
                    node_name: node.to_owned(),
                }),
        )
        .await?;
    let mut frames = Box::pin(rbee_http::client::frames(resp));
    while let Some(frame) = frames.next().await {
        let frame =
            frame.map_err(|e| fail(format!("install stream from queen-rbee broke: {e}")))?;
        match frame.event.as_str() {
            "narration" => {
                if let Ok(n) = serde_json::from_str::<rbee_api::Narration>(&frame.data) {
                    crate::output::narrate(&n);
                }
            }
            "error" => {
                let e: rbee_api::ErrorEnvelope = serde_json::from_str(&frame.data)
                    .map_err(|e| fail(format!("unreadable error from queen-rbee: {e}")))?;
                return Err(fail(e.error.message));
            }
            "end" => {
                println!("Installed rbee on {node}.");
                return Ok(());
            }
            _ => {}
        }
    }
    Err(fail("the install stream ended without a result"))
}
