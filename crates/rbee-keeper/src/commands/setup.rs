//! `rbee setup add-node | list-nodes | remove-node | install`.

use futures::StreamExt;
use rbee_api::NodeName;
use rbee_api::ids::InvalidId;
use rbee_api::queen::{
    Beehive, BeehiveList, HiveSettings, NodeConfig, NodeRemoved, NodeRequest, NodeSettingsRequest,
    SetupEvent,
};
use rbee_api::routes::queen as paths;
use rbee_api::sse::SseEvent;
use reqwest::Method;

use crate::cli::{AddNodeArgs, HiveSettingsArgs, SetupCommand};
use crate::config::Config;
use crate::error::{Result, fail};
use crate::queen::Queen;

pub async fn run(queen: &Queen, config: &Config, command: &SetupCommand) -> Result<()> {
    match command {
        SetupCommand::AddNode(args) => add(queen, config, args).await,
        SetupCommand::ListNodes(flag) => list(queen, flag.json).await,
        SetupCommand::RemoveNode { name } => {
            let removed: NodeRemoved = queen
                .json(
                    queen
                        .request(Method::POST, paths::BEEHIVES_REMOVE)
                        .json(&NodeRequest {
                            node_name: node_name(name)?,
                        }),
                )
                .await?;
            println!("Removed node {}.", removed.node_name);
            Ok(())
        }
        SetupCommand::SetNode { name, hive } => {
            let req = NodeSettingsRequest {
                node_name: node_name(name)?,
                hive_settings: settings(hive),
            };
            let node: Beehive = queen
                .json(
                    queen
                        .request(Method::POST, paths::BEEHIVES_SETTINGS)
                        .json(&req),
                )
                .await?;
            let flags: Vec<String> = (node.config.hive_settings.flags().into_iter())
                .map(|(flag, value)| format!("{flag} {value}"))
                .collect();
            println!(
                "{}'s hive will start with {} (when it next starts; `rbee workers health --node {}` shows it).",
                node.config.node_name,
                if flags.is_empty() {
                    "its defaults".to_owned()
                } else {
                    flags.join(" ")
                },
                node.config.node_name
            );
            Ok(())
        }
        SetupCommand::Install { node } => {
            let req = NodeRequest {
                node_name: node_name(node)?,
            };
            follow(
                queen,
                queen
                    .request(Method::POST, paths::BEEHIVES_INSTALL)
                    .json(&req),
            )
            .await?;
            println!("Installed rbee on {node}.");
            Ok(())
        }
    }
}

fn settings(args: &HiveSettingsArgs) -> HiveSettings {
    HiveSettings {
        idle_timeout_secs: args.idle_timeout.map(|d| d.as_secs().max(1)),
        memory_limit_mb: args.memory_limit_mb,
        worker_slots: args.worker_slots,
        models_dir: args.models_dir.clone(),
        worker_port_start: args.worker_port_start,
    }
}

fn node_name(text: &str) -> Result<NodeName> {
    text.parse().map_err(|e: InvalidId| fail(e.to_string()))
}

async fn add(queen: &Queen, config: &Config, args: &AddNodeArgs) -> Result<()> {
    let install_path = args
        .install_path
        .clone()
        .or_else(|| config.remote.git_repo_dir.clone())
        .ok_or_else(|| {
            fail("--install-path is required (or set [remote] git_repo_dir in the configuration)")
        })?;
    let node = NodeConfig {
        node_name: node_name(&args.name)?,
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
        hive_settings: settings(&args.hive),
    };
    let saved = follow(
        queen,
        queen.request(Method::POST, paths::BEEHIVES_ADD).json(&node),
    )
    .await?;
    let c = &saved.config;
    let backends: Vec<&str> = saved.state.backends.iter().map(|b| b.as_str()).collect();
    println!(
        "Added node {} ({}@{}:{}){}",
        c.node_name,
        c.ssh_user,
        c.ssh_host,
        c.ssh_port,
        if backends.is_empty() {
            format!(
                "; rbee is not installed there yet: run `rbee setup install --node {}`",
                c.node_name
            )
        } else {
            format!("; backends: {}", backends.join(", "))
        }
    );
    Ok(())
}

/// Follows a setup stream (adding or installing a node), printing what the queen narrates;
/// the node as registered at its end.
async fn follow(queen: &Queen, req: reqwest::RequestBuilder) -> Result<Beehive> {
    let resp = queen.send(req).await?;
    let mut frames = Box::pin(rbee_http::client::frames(resp));
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| fail(format!("the stream from queen-rbee broke: {e}")))?;
        match SetupEvent::from_frame(&frame) {
            Some(Ok(SetupEvent::Narration(n))) => crate::output::narrate(&n),
            Some(Ok(SetupEvent::Error(e))) => return Err(fail(e.error.message)),
            Some(Ok(SetupEvent::Done(done))) => return Ok(done.node),
            Some(Err(e)) => return Err(fail(format!("unreadable event from queen-rbee: {e}"))),
            None => {}
        }
    }
    Err(fail("the stream from queen-rbee ended without a result"))
}

async fn list(queen: &Queen, json: bool) -> Result<()> {
    let list: BeehiveList = queen
        .json(queen.request(Method::GET, paths::BEEHIVES_LIST))
        .await?;
    if json {
        return crate::output::json(&list);
    }
    if list.beehives.is_empty() {
        println!("No nodes registered. Add one with `rbee setup add-node`.");
        return Ok(());
    }
    println!(
        "{:<16} {:<28} {:<12} {:<12} INSTALL PATH",
        "NODE", "SSH", "STATUS", "BACKENDS"
    );
    for Beehive { config: c, state } in list.beehives {
        let backends: Vec<&str> = state.backends.iter().map(|x| x.as_str()).collect();
        println!(
            "{:<16} {:<28} {:<12} {:<12} {}",
            c.node_name,
            format!("{}@{}:{}", c.ssh_user, c.ssh_host, c.ssh_port),
            state.status.as_str(),
            if backends.is_empty() {
                "-".to_owned()
            } else {
                backends.join(",")
            },
            c.install_path
        );
    }
    Ok(())
}
