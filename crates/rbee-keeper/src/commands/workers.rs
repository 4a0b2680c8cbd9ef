//! `rbee workers list | health | shutdown`.

use rbee_api::ids::InvalidId;
use rbee_api::queen::{NodeHealth, NodeWorkerStopped, NodeWorkersList, WorkerShutdownRequest};
use rbee_api::routes::queen as paths;
use reqwest::Method;

use crate::cli::WorkersCommand;
use crate::error::{Result, fail};
use crate::queen::Queen;

pub async fn run(queen: &Queen, command: &WorkersCommand) -> Result<()> {
    match command {
        WorkersCommand::List(flag) => {
            let list: NodeWorkersList = queen
                .json(queen.request(Method::GET, paths::WORKERS_LIST))
                .await?;
            if flag.json {
                return crate::output::json(&list);
            }
            if list.workers.is_empty() {
                println!("No workers are running.");
                return Ok(());
            }
            println!(
                "{:<12} {:<20} {:<10} {:<24} {:<22} MODEL",
                "NODE", "WORKER", "STATE", "URL", "COMPUTE"
            );
            for w in list.workers {
                let compute =
                    (w.worker.compute.as_ref()).map_or_else(|| "-".into(), |c| c.describe());
                println!(
                    "{:<12} {:<20} {:<10} {:<24} {:<22} {}",
                    w.node,
                    w.worker.id,
                    w.worker.state.as_str(),
                    w.worker.url,
                    compute,
                    w.worker.model_ref
                );
            }
        }
        WorkersCommand::Health { node } => {
            let health: NodeHealth = queen
                .json(
                    queen
                        .request(Method::GET, paths::WORKERS_HEALTH)
                        .query(&[("node", node)]),
                )
                .await?;
            match &health.hive_version {
                Some(v) => println!("rbee-hive {v} on {node} at {}: alive", health.hive_url),
                None => println!("rbee-hive on {node} at {}: not answering", health.hive_url),
            }
            for w in health.workers {
                println!(
                    "  {} {} ({}) {}{}",
                    w.worker_id,
                    if w.healthy { "healthy" } else { "UNHEALTHY" },
                    w.state.as_str(),
                    w.model_ref,
                    w.detail.map(|d| format!(": {d}")).unwrap_or_default()
                );
            }
        }
        WorkersCommand::Shutdown { id } => {
            let worker_id = id.parse().map_err(|e: InvalidId| fail(e.to_string()))?;
            let stopped: NodeWorkerStopped = queen
                .json(
                    queen
                        .request(Method::POST, paths::WORKERS_SHUTDOWN)
                        .json(&WorkerShutdownRequest { worker_id }),
                )
                .await?;
            println!("Stopped worker {id} on {}.", stopped.node);
        }
    }
    Ok(())
}
