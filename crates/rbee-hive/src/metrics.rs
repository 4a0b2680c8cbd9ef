//! The hive's metrics, served at `GET /metrics`.

use rbee_api::worker::WorkerState;
use rbee_http::metrics::{Counter, Exposition, LabeledCounter, StateGauge};

#[derive(Debug, Default)]
pub struct HiveMetrics {
    /// Workers by state, recounted at each scrape.
    pub workers: StateGauge<WorkerState>,
    pub workers_spawned: Counter,
    /// Downloads by outcome (`completed`, `failed`).
    pub downloads: LabeledCounter,
    pub download_bytes: Counter,
    /// Spawns refused by the preflight, by error code.
    pub preflight_refusals: LabeledCounter,
}

impl HiveMetrics {
    pub fn exposition(&self) -> Exposition {
        let mut out = Exposition::default();
        out.state_gauge(
            "rbee_hive_workers",
            "Workers by state.",
            "state",
            &self.workers,
        )
        .counter(
            "rbee_hive_workers_spawned_total",
            "Workers spawned.",
            &self.workers_spawned,
        )
        .labeled_counter(
            "rbee_hive_downloads_total",
            "Model downloads by outcome (completed, failed).",
            "outcome",
            &self.downloads,
        )
        .counter(
            "rbee_hive_download_bytes_total",
            "Bytes received from the model hub.",
            &self.download_bytes,
        )
        .labeled_counter(
            "rbee_hive_preflight_refusals_total",
            "Spawns refused by the preflight, by error code.",
            "code",
            &self.preflight_refusals,
        );
        out
    }
}
