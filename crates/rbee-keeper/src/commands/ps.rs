//! `rbee ps`: the loaded workers of every node.

use rbee_api::queen::NodeWorkersList;
use rbee_api::routes::queen as paths;
use reqwest::Method;

use crate::cli::JsonFlag;
use crate::error::Result;
use crate::output;
use crate::queen::Queen;

pub async fn run(queen: &Queen, flag: &JsonFlag) -> Result<()> {
    let list: NodeWorkersList = queen
        .json(queen.request(Method::GET, paths::WORKERS_LIST))
        .await?;
    if flag.json {
        return output::json(&list);
    }
    if list.workers.is_empty() {
        println!("No models are loaded. `rbee infer` or a request to the queen loads one.");
        return Ok(());
    }
    println!(
        "{:<12} {:<9} {:<24} {:<7} {:<10} {:<14} MODEL",
        "NODE", "STATE", "COMPUTE", "SLOTS", "MEMORY", "UNLOADS IN"
    );
    for w in list.workers {
        let info = &w.worker;
        let compute = match &info.compute {
            Some(c) => format!("{}:{} {}", info.backend, info.device, c.describe()),
            None => format!("{}:{}", info.backend, info.device),
        };
        let busy = info.slots_total.saturating_sub(info.slots_available);
        println!(
            "{:<12} {:<9} {:<24} {:<7} {:<10} {:<14} {}",
            w.node,
            info.state.as_str(),
            compute,
            format!("{busy}/{}", info.slots_total),
            info.rss_bytes.map_or_else(|| "-".into(), output::size),
            // A worker at work is not counting down.
            info.unload_in_secs
                .map_or_else(|| "-".into(), output::duration),
            info.model_ref
        );
    }
    Ok(())
}
