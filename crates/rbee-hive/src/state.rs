//! Everything a running hive shares between its routes and background tasks.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::catalog::ModelCatalog;
use crate::downloads::Downloads;
use crate::logs::LogHub;
use crate::metrics::HiveMetrics;
use crate::preflight::Preflight;
use crate::workers::WorkerPool;

pub type AppState = Arc<HiveState>;

pub struct HiveState {
    pub catalog: Arc<dyn ModelCatalog>,
    pub downloads: Arc<Downloads>,
    pub preflight: Preflight,
    pub pool: Arc<WorkerPool>,
    pub logs: Arc<LogHub>,
    /// Cancelled to stop the hive: workers are stopped, then the server.
    pub shutdown: CancellationToken,
    pub metrics: Arc<HiveMetrics>,
}
