//! `rbee ps`: the loaded workers of every node.

use rbee_api::queen::NodeWorkersList;
use rbee_api::routes::queen as paths;
use reqwest::Method;

use crate::cli::JsonFlag;
use crate::error::Result;
use crate::output;
use crate::queen::Queen;

/// Keep-alives this long (a century) mean "for ever".
const FOREVER_SECS: u64 = 100 * 365 * 24 * 3600;

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
            match (info.unload_in_secs, info.keep_alive_secs) {
                // A keep-alive of "for ever" (a negative one) is stored as ages.
                (_, Some(k)) if k >= FOREVER_SECS => "never".into(),
                (Some(s), _) => output::duration(s),
                // A worker at work is not counting down.
                (None, _) => "-".into(),
            },
            info.model_ref
        );
    }
    Ok(())
}
