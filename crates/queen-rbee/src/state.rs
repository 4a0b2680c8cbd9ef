//! Everything a running queen shares between its routes and tasks.

use std::sync::Arc;
use std::time::Duration;

use rbee_http::metrics::{Family, Metrics};
use tokio_util::sync::CancellationToken;

use crate::hives::Hives;
use crate::registry::BeehiveRegistry;
use crate::tasks::Tasks;

pub type AppState = Arc<QueenState>;

pub struct QueenState {
    pub registry: Arc<dyn BeehiveRegistry>,
    pub hives: Hives,
    pub tasks: Tasks,
    pub loading_timeout: Duration,
    pub remote_binary_path: Option<String>,
    /// Listed by `GET /v1/models` whether or not a node has it yet.
    pub default_model: Option<String>,
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
}

impl QueenState {
    /// `localhost` and every registered node, in registry order.
    pub fn node_names(&self) -> Result<Vec<String>, crate::error::QueenError> {
        let mut nodes = vec![rbee_api::queen::LOCALHOST.to_owned()];
        nodes.extend(
            self.registry
                .list()?
                .into_iter()
                .map(|r| r.beehive.node_name),
        );
        Ok(nodes)
    }
}

/// The queen's metric families (served at `GET /metrics`).
pub const METRICS: &[Family] = &[
    Family::counter(
        "rbee_queen_tasks_total",
        "Inference tasks (rbee infer and the OpenAI API) by outcome: completed, cancelled, or the error code.",
    ),
    Family::counter("rbee_queen_tokens_total", "Tokens relayed to clients."),
    Family::histogram(
        "rbee_queen_time_to_first_token_seconds",
        "From a task's start to its first token, cold starts included.",
    ),
    Family::histogram(
        "rbee_queen_token_latency_seconds",
        "Time between consecutive tokens relayed to a client.",
    ),
    Family::counter(
        "rbee_queen_placements_total",
        "Tasks placed by the queen, by the rule that chose the node.",
    ),
    Family::gauge("rbee_queen_nodes", "Registered nodes by status."),
];
