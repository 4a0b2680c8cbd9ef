//! How a daemon tells the process that started it that it accepts connections: one JSON
//! line on its standard output, written once it listens, and nothing else on stdout.
//!
//! `{"ready":{"service":"rbee-hive","url":"http://127.0.0.1:41234","version":"0.1.0","api_version":"v1","pid":4242}}`
//!
//! The parent learns the address (daemons may listen on port 0) and that serving has
//! begun, without reading logs; `rbee_http::daemon` writes and reads it.

use serde::{Deserialize, Serialize};

/// The line's only field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyLine {
    pub ready: Ready,
}

/// A daemon that accepts connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// `queen-rbee`, `rbee-hive` or `llm-worker-rbee`.
    pub service: String,
    /// Where others reach it.
    pub url: String,
    pub version: String,
    pub api_version: String,
    pub pid: u32,
}
