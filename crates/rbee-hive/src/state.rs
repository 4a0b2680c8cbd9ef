//! Everything a running hive shares between its routes and background tasks.

use std::sync::Arc;

use rbee_http::metrics::{Family, Metrics};
use tokio_util::sync::CancellationToken;

use crate::catalog::ModelCatalog;
use crate::downloads::Downloads;
use crate::logs::LogHub;
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
    pub metrics: Metrics,
}

/// The hive's metric families (served at `GET /metrics`).
pub const METRICS: &[Family] = &[
    Family::gauge("rbee_hive_workers", "Workers by state."),
    Family::counter("rbee_hive_workers_spawned_total", "Workers spawned."),
    Family::counter(
        "rbee_hive_downloads_total",
        "Model downloads by outcome (completed, failed).",
    ),
    Family::counter(
        "rbee_hive_download_bytes_total",
        "Bytes received from the model hub.",
    ),
    Family::counter(
        "rbee_hive_preflight_refusals_total",
        "Spawns refused by the preflight, by error code.",
    ),
];
