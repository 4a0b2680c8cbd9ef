//! Wire types shared by every rbee process.
//!
//! Everything that crosses a process boundary — request and response bodies, the SSE event
//! enums, the error envelope with its codes, and the route paths — is declared here once and
//! used by both the server and the client side. The crate depends on nothing heavier than
//! serde so that any rbee crate may use it.
//!
//! Layout:
//! - [`backend`]: the compute backends (`cpu`, `cuda`, `metal`).
//! - [`dirs`]: where rbee keeps its files (XDG base directories).
//! - [`duration`]: `500ms`, `30s`, `5m` as written in flags.
//! - [`error`]: the `{"error":{"code","message","details"}}` envelope and [`ErrorCode`].
//! - [`ids`]: validated identifiers — [`NodeName`], [`WorkerId`], [`JobId`].
//! - [`model_ref`]: `hf:` and `file:` model references ([`ModelRef`]).
//! - [`narration`]: human-readable narration events streamed alongside data.
//! - [`hive`]: the `rbee-hive` API (workers, models, downloads, logs, detection).
//! - [`openai`]: the OpenAI-compatible API the queen serves (`/v1/chat/completions`, …).
//! - [`ollama`]: Ollama's API the queen serves (`/api/chat`, `/api/tags`, …).
//! - [`queen`]: the `queen-rbee` API (node registry, tasks, workers across nodes).
//! - [`ready`]: the line a daemon prints on stdout once it listens.
//! - [`worker`]: the `llm-worker-rbee` API (inference, loading progress, readiness, callbacks).
//! - [`split`]: models split over several GGUF files (`-00001-of-00003.gguf`).
//! - [`routes`]: every route path, so clients and servers never disagree on a URL.
//! - [`sse`]: the event streams' wire form, declared once per stream, and their decoder.

pub mod backend;
pub mod dirs;
pub mod duration;
pub mod error;
pub mod hive;
pub mod ids;
pub mod model_ref;
pub mod narration;
pub mod ollama;
pub mod openai;
pub mod queen;
pub mod ready;
pub mod routes;
pub mod split;
pub mod sse;
pub mod worker;

pub use backend::{Backend, BackendChoice};
pub use error::{ErrorBody, ErrorCode, ErrorEnvelope};
pub use ids::{JobId, NodeName, TaskId, WorkerId};
pub use model_ref::ModelRef;
pub use narration::Narration;

/// Version of the rbee wire protocol spoken by this build (the `api_version` of health answers).
pub const API_VERSION: &str = "v1";

/// Seconds since the Unix epoch: how every `*_unix` field is written.
pub fn now_unix() -> u64 {
    now_unix_ms() / 1000
}

/// Milliseconds since the Unix epoch (`*_unix_ms` fields).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `{"ok": true}`: the answer of a request that has nothing else to say (the hive's worker
/// callbacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ack {
    pub ok: bool,
}

impl Ack {
    pub const OK: Self = Self { ok: true };
}

/// Answer to `POST /v1/admin/shutdown` (worker and hive): `{"status": "shutting_down"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShuttingDown {
    pub status: ShutdownStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownStatus {
    ShuttingDown,
}

impl ShuttingDown {
    pub const NOW: Self = Self {
        status: ShutdownStatus::ShuttingDown,
    };
}
