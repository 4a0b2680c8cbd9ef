//! Wire types shared by every rbee process.
//!
//! Everything that crosses a process boundary — request and response bodies, the SSE event
//! enums, the error envelope with its codes, and the route paths — is declared here once and
//! used by both the server and the client side. The crate depends on nothing heavier than
//! serde so that any rbee crate may use it.
//!
//! Layout:
//! - [`backend`]: the compute backends (`cpu`, `cuda`, `metal`).
//! - [`duration`]: `500ms`, `30s`, `5m` as written in flags.
//! - [`error`]: the `{"error":{"code","message","details"}}` envelope and [`ErrorCode`].
//! - [`model_ref`]: `hf:` and `file:` model references.
//! - [`narration`]: human-readable narration events streamed alongside data.
//! - [`hive`]: the `rbee-hive` API (workers, models, downloads, logs, detection).
//! - [`openai`]: the OpenAI-compatible API the queen serves (`/v1/chat/completions`, …).
//! - [`queen`]: the `queen-rbee` API (node registry, tasks, workers across nodes).
//! - [`worker`]: the `llm-worker-rbee` API (inference, loading progress, readiness, callbacks).
//! - [`routes`]: every route path, so clients and servers never disagree on a URL.
//! - [`sse`]: names shared by all Server-Sent Event streams.

pub mod backend;
pub mod duration;
pub mod error;
pub mod hive;
pub mod model_ref;
pub mod narration;
pub mod openai;
pub mod queen;
pub mod routes;
pub mod sse;
pub mod worker;

pub use backend::Backend;
pub use error::{ErrorBody, ErrorCode, ErrorEnvelope};
pub use narration::Narration;

/// Version of the rbee wire protocol spoken by this build (the `api_version` of health answers).
pub const API_VERSION: &str = "v1";
