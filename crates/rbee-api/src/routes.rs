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
    pub const METRICS: &str = "/metrics";

    pub fn inference_job(job_id: &crate::JobId) -> String {
        format!("{INFERENCE}/{job_id}")
    }
}

/// `rbee-hive` routes.
pub mod hive {
    pub const HEALTH: &str = "/v1/health";
    pub const WORKERS_LIST: &str = "/v1/workers/list";
    pub const WORKERS_SPAWN: &str = "/v1/workers/spawn";
    /// The worker's callback when its model cannot be loaded.
    pub const WORKERS_FAILED: &str = "/v1/workers/failed";
    pub const WORKERS_SHUTDOWN: &str = "/v1/workers/shutdown";
    pub const WORKERS_KEEP_ALIVE: &str = "/v1/workers/keep_alive";
    pub const MODELS: &str = "/v1/models";
    pub const RESOURCES: &str = "/v1/resources";
    pub const PREFLIGHT: &str = "/v1/preflight";
    pub const MODELS_DOWNLOAD: &str = "/v1/models/download";
    pub const MODELS_DOWNLOAD_PROGRESS: &str = "/v1/models/download/progress";
    /// `GET ?ref=<model ref>`: what the GGUF header of a catalogued model says.
    pub const MODELS_INFO: &str = "/v1/models/info";
    pub const MODELS_DELETE: &str = "/v1/models/delete";
    /// `POST`: how a catalogued model's workers run it (chat template, context).
    pub const MODELS_SETTINGS: &str = "/v1/models/settings";
    pub const LOGS: &str = "/v1/logs";
    pub const ADMIN_SHUTDOWN: &str = "/v1/admin/shutdown";
    pub const METRICS: &str = "/metrics";
}

/// `queen-rbee` routes.
pub mod queen {
    pub const HEALTH: &str = "/health";
    pub const BEEHIVES_ADD: &str = "/v2/registry/beehives/add";
    pub const BEEHIVES_LIST: &str = "/v2/registry/beehives/list";
    pub const BEEHIVES_REMOVE: &str = "/v2/registry/beehives/remove";
    pub const BEEHIVES_INSTALL: &str = "/v2/registry/beehives/install";
    pub const BEEHIVES_SETTINGS: &str = "/v2/registry/beehives/settings";
    /// Stops a node's hive and its workers (they start again with the next task).
    pub const BEEHIVES_STOP: &str = "/v2/registry/beehives/stop";
    /// The web dashboard's page, and its scripts and styles; served without the key, which
    /// the page asks for and sends with every call it makes.
    pub const DASHBOARD: &str = "/";
    pub const DASHBOARD_ASSET: &str = "/ui/{file}";
    /// The lab's state, pushed as server-sent events.
    pub const LAB_EVENTS: &str = "/v2/lab/events";
    pub const TASKS: &str = "/v2/tasks";
    /// `DELETE /v2/tasks/{id}`.
    pub const TASK: &str = "/v2/tasks/{id}";
    pub const WORKERS_LIST: &str = "/v2/workers/list";
    pub const WORKERS_HEALTH: &str = "/v2/workers/health";
    pub const WORKERS_SHUTDOWN: &str = "/v2/workers/shutdown";
    pub const LOGS: &str = "/v2/logs";
    pub const MODELS_LIST: &str = "/v2/models/list";
    pub const MODELS_PULL: &str = "/v2/models/pull";
    pub const MODELS_REMOVE: &str = "/v2/models/remove";
    pub const MODELS_SHOW: &str = "/v2/models/show";
    pub const MODELS_SETTINGS: &str = "/v2/models/settings";
    pub const METRICS: &str = "/metrics";
    /// The OpenAI-compatible API.
    pub const OPENAI_MODELS: &str = "/v1/models";
    /// One model of [`OPENAI_MODELS`]; its id may hold slashes (`<node>/<model ref>`).
    pub const OPENAI_MODEL: &str = "/v1/models/{*id}";
    pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
    pub const COMPLETIONS: &str = "/v1/completions";
    /// Ollama's API.
    pub const OLLAMA_VERSION: &str = "/api/version";
    pub const OLLAMA_TAGS: &str = "/api/tags";
    pub const OLLAMA_PS: &str = "/api/ps";
    pub const OLLAMA_SHOW: &str = "/api/show";
    pub const OLLAMA_PULL: &str = "/api/pull";
    pub const OLLAMA_DELETE: &str = "/api/delete";
    pub const OLLAMA_CHAT: &str = "/api/chat";
    pub const OLLAMA_GENERATE: &str = "/api/generate";

    pub fn task(id: &crate::JobId) -> String {
        format!("{TASKS}/{id}")
    }
}
