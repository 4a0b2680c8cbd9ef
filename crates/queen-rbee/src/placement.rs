//! Where a task runs when it names no node.
//!
//! The candidates are `localhost` and every registered node; each one's hive is started if
//! needed (nodes that cannot be reached are left out). Then, in order:
//! 1. a node with an idle worker that already has the model (no load at all);
//! 2. a node whose catalog has the model and that passes the preflight for it (no
//!    download), the one with the most free memory first;
//! 3. the node with the most free memory for the chosen backend (RAM for `cpu`, the
//!    device's free VRAM for a GPU backend).
//!
//! The decision and its reason are narrated to the user.

use rbee_api::hive::PreflightRequest;
use rbee_api::worker::WorkerState;
use rbee_api::{Backend, BackendChoice, ErrorCode, ErrorEnvelope, ModelRef, NodeName};

use crate::clients::CallError;
use crate::error::QueenError;
use crate::hives::Hives;
use crate::narration::Narrator;

/// The chosen node, the backend it runs the task on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub node: NodeName,
    pub backend: Backend,
    pub reason: String,
    /// Which rule chose it: `idle_worker`, `catalog` or `free_memory`.
    pub rule: &'static str,
}

/// What placement knows about one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: NodeName,
    /// The backend the task would use there (`auto` resolved by its detection).
    pub backend: Backend,
    pub idle_worker: bool,
    /// In the catalog and passing the preflight.
    pub ready_model: bool,
    /// Free memory for the backend; `None` when the node lacks the backend.
    pub free_mb: Option<u64>,
}

/// The policy itself, over what the candidates reported (in registry order, localhost first).
pub fn choose(candidates: &[Candidate]) -> Option<Placed> {
    if let Some(c) = candidates.iter().find(|c| c.idle_worker) {
        return Some(Placed {
            node: c.node.clone(),
            backend: c.backend,
            reason: "an idle worker has the model".into(),
            rule: "idle_worker",
        });
    }
    let most_free = |filter: &dyn Fn(&Candidate) -> bool| {
        candidates
            .iter()
            .filter(|c| filter(c) && c.free_mb.is_some())
            .max_by_key(|c| c.free_mb)
    };
    if let Some(c) = most_free(&|c| c.ready_model) {
        return Some(Placed {
            node: c.node.clone(),
            backend: c.backend,
            reason: "its catalog has the model and it passes the preflight".into(),
            rule: "catalog",
        });
    }
    most_free(&|_| true).map(|c| Placed {
        node: c.node.clone(),
        backend: c.backend,
        reason: format!(
            "most free memory for {} ({} MB)",
            c.backend,
            c.free_mb.unwrap_or_default()
        ),
        rule: "free_memory",
    })
}

/// Why a node is left out of placement.
#[derive(Debug, thiserror::Error)]
enum Unfit {
    #[error(transparent)]
    Hive(#[from] QueenError),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// What `node` offers for `model`, starting its hive if needed.
async fn survey(
    hives: &Hives,
    node: &NodeName,
    model: &ModelRef,
    choice: BackendChoice,
    device: u32,
    narrator: &Narrator,
) -> Result<Candidate, Unfit> {
    let hive = hives.ensure(node, narrator).await?;
    let resources = hive.resources().await?;
    let backend = choice.resolve(&resources.usable_backends());
    let workers = hive.workers().await?.workers;
    let idle_worker = workers.iter().any(|w| {
        &w.model_ref == model
            && w.backend == backend
            && w.device == device
            && w.state == WorkerState::Idle
    });
    let in_catalog = (hive.models().await?.models.iter()).any(|m| &m.reference == model);
    let ready_model = in_catalog
        && hive
            .preflight(&PreflightRequest {
                model_ref: model.clone(),
                backend,
                device,
            })
            .await
            .is_ok();
    let free_mb = if !resources.detected.backends.contains(&backend) {
        None
    } else if backend == Backend::Cuda {
        resources
            .detected
            .vram_free_mb
            .get(&backend)
            .and_then(|free| free.get(device as usize))
            .copied()
    } else {
        resources.ram_available_mb
    };
    Ok(Candidate {
        node: node.clone(),
        backend,
        idle_worker,
        ready_model,
        free_mb,
    })
}

/// Chooses a node for `model` among `nodes` (localhost and every registered node); starting
/// a node's hive is narrated through `narrator`.
pub async fn place(
    nodes: &[NodeName],
    hives: &Hives,
    model: &ModelRef,
    backend: BackendChoice,
    device: u32,
    narrator: &Narrator,
) -> Result<Placed, QueenError> {
    let surveys = futures::future::join_all(
        (nodes.iter()).map(|node| survey(hives, node, model, backend, device, narrator)),
    )
    .await;
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for (node, survey) in nodes.iter().zip(surveys) {
        match survey {
            Ok(c) => candidates.push(c),
            Err(reason) => {
                tracing::warn!("placement leaves out {node}: {reason}");
                skipped.push(format!("{node}: {reason}"));
            }
        }
    }
    choose(&candidates).ok_or_else(|| {
        QueenError::Remote(ErrorEnvelope::new(
            ErrorCode::BackendUnavailable,
            format!(
                "no node can run {model} on {backend}{}; name one with --node",
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(" (unreachable: {})", skipped.join("; "))
                }
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, idle: bool, ready: bool, free: Option<u64>) -> Candidate {
        Candidate {
            node: name.parse().unwrap(),
            backend: Backend::Cpu,
            idle_worker: idle,
            ready_model: ready,
            free_mb: free,
        }
    }

    #[test]
    fn an_idle_worker_with_the_model_wins_over_free_memory() {
        let c = [
            node("localhost", false, true, Some(9000)),
            node("mac", true, true, Some(100)),
        ];
        let placed = choose(&c).unwrap();
        assert_eq!(placed.node, "mac");
        assert!(placed.reason.contains("idle worker"));
    }

    #[test]
    fn a_catalog_that_has_the_model_wins_over_free_memory() {
        let c = [
            node("localhost", false, false, Some(9000)),
            node("workstation", false, true, Some(200)),
            node("mac", false, true, Some(300)),
        ];
        let placed = choose(&c).unwrap();
        assert_eq!(placed.node, "mac");
        assert!(placed.reason.contains("catalog"));
    }

    #[test]
    fn otherwise_the_most_free_memory_for_the_backend() {
        let c = [
            node("localhost", false, false, Some(500)),
            node("workstation", false, false, None),
            node("mac", false, false, Some(800)),
        ];
        let placed = choose(&c).unwrap();
        assert_eq!(placed.node, "mac");
        assert_eq!(placed.reason, "most free memory for cpu (800 MB)");
        assert!(choose(&[node("a", false, false, None)]).is_none());
    }
}
