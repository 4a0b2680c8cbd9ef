//! Everything a running queen shares between its routes and tasks.

use std::sync::Arc;
use std::time::Duration;

use rbee_api::{ModelRef, NodeName};
use tokio_util::sync::CancellationToken;

use crate::error::QueenError;
use crate::hives::Hives;
use crate::lab::LabFeed;
use crate::lanes::Lanes;
use crate::metrics::QueenMetrics;
use crate::registry::BeehiveRegistry;
use crate::running::RunningTasks;

pub type AppState = Arc<QueenState>;

pub struct QueenState {
    pub registry: Arc<dyn BeehiveRegistry>,
    pub hives: Hives,
    pub tasks: RunningTasks,
    /// Worker starts and slot queues, per model and worker.
    pub lanes: Lanes,
    pub loading_timeout: Duration,
    /// Slots asked for each worker the queen starts; `None` leaves it to the hive.
    pub worker_slots: Option<u16>,
    /// Listed by `GET /v1/models` whether or not a node has it yet.
    pub default_model: Option<ModelRef>,
    pub shutdown: CancellationToken,
    pub metrics: Arc<QueenMetrics>,
    /// The lab's live state for the dashboard, polled while someone watches.
    pub lab: LabFeed,
}

impl QueenState {
    /// `localhost` and every registered node, in registry order.
    pub fn node_names(&self) -> Result<Vec<NodeName>, QueenError> {
        let mut nodes = vec![NodeName::localhost()];
        nodes.extend(
            self.registry
                .list()?
                .into_iter()
                .map(|r| r.config.node_name),
        );
        Ok(nodes)
    }
}
