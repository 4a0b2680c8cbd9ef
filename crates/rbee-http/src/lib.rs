//! HTTP plumbing shared by `llm-worker-rbee`, `rbee-hive`, `queen-rbee` and `rbee`.
//!
//! Each daemon defines its own error enum and routes; what must behave identically in all of
//! them lives here so it is written once:
//! - [`error`]: turning an [`rbee_api::ErrorEnvelope`] into an HTTP response.
//! - [`json`]: a JSON body extractor whose rejections use the envelope (`INVALID_REQUEST`).
//! - [`client`]: reading another rbee process's event stream and error envelopes.
//! - [`config_file`]: the daemons' settings from rbee's configuration file.
//! - [`daemon`]: serving until stopped, the data directory, sibling binaries.
//! - [`auth`]: the bearer-key middleware guarding every route but health.
//! - [`sse`]: typed Server-Sent Event streams ending with `data: [DONE]`.
//! - [`logging`]: the daemons' log output on stderr.
//! - [`metrics`]: Prometheus counters, gauges and histograms served at `GET /metrics`.
//! - [`shutdown`]: waiting for SIGTERM or SIGINT.

pub mod auth;
pub mod client;
pub mod config_file;
pub mod daemon;
pub mod error;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod shutdown;
pub mod sse;

pub use error::ApiError;
pub use json::ApiJson;
