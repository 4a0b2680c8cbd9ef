//! Route paths of every rbee HTTP API, defined once for servers and clients.

/// `llm-worker-rbee` routes.
pub mod worker {
    pub const HEALTH: &str = "/v1/health";
    pub const READY: &str = "/v1/ready";
    pub const LOADING_PROGRESS: &str = "/v1/loading/progress";
    pub const INFERENCE: &str = "/v1/inference";
    /// `DELETE /v1/inference/{job_id}`.
    pub const INFERENCE_JOB: &str = "/v1/inference/{job_id}";
    pub const ADMIN_SHUTDOWN: &str = "/v1/admin/shutdown";

    pub fn inference_job(job_id: &str) -> String {
        format!("{INFERENCE}/{job_id}")
    }
}

/// `rbee-hive` routes that workers call back on.
pub mod hive {
    pub const WORKERS_READY: &str = "/v1/workers/ready";
    pub const WORKERS_FAILED: &str = "/v1/workers/failed";
}
