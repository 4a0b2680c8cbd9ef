//! The queen's errors and their one mapping onto the HTTP error envelope.

use axum::response::{IntoResponse, Response};
use rbee_api::{ErrorCode, ErrorEnvelope, NodeName, TaskId, WorkerId};
use rbee_http::ApiError;
use serde_json::{Value, json};

use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum QueenError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    HiveSetting(#[from] rbee_api::queen::HiveSettingError),
    #[error(
        "node `{0}` is not registered; add it with `rbee setup add-node --name {0} --ssh-host <host> --ssh-user <user> --install-path <path>`"
    )]
    NodeNotFound(NodeName),
    #[error("SSH to {node} failed: {reason}")]
    SshFailed { node: NodeName, reason: String },
    #[error("rbee-hive on {node} did not start: {reason}")]
    HiveStart { node: NodeName, reason: String },
    #[error("rbee-hive on {node} may still run")]
    HiveStop {
        node: NodeName,
        #[source]
        source: crate::hives::StopError,
    },
    #[error(
        "rbee-hive on {node} did not answer at {url} after {attempts} attempts ({reason}); check that rbee-hive runs there (`rbee workers health --node {node}`)"
    )]
    ConnectionTimeout {
        node: NodeName,
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error(
        "lost contact with {node}: {reason}; the node may be down or cut off (`rbee setup list-nodes` shows its status)"
    )]
    NodeLost { node: NodeName, reason: String },
    #[error(
        "rbee-hive on {node} is version {hive}, this queen is {queen}; upgrade the node with `rbee setup install --node {node}`"
    )]
    VersionMismatch {
        node: NodeName,
        hive: String,
        queen: String,
    },
    #[error(
        "worker {worker_id} did not finish loading within {timeout:?} (last state: {state}); read its logs with `rbee logs --node {node}`"
    )]
    LoadingTimeout {
        node: NodeName,
        worker_id: WorkerId,
        timeout: std::time::Duration,
        state: String,
    },
    #[error("no worker `{0}` on any node")]
    WorkerNotFound(WorkerId),
    #[error("no task `{0}` is running")]
    TaskNotFound(TaskId),
    /// An error another rbee process answered with, passed on as it came.
    #[error("{}", .0.error.message)]
    Remote(ErrorEnvelope),
    #[error("{what} broke: {reason}")]
    StreamBroken { what: String, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Internal(String),
}

impl QueenError {
    pub fn envelope(&self) -> ErrorEnvelope {
        let (code, details): (ErrorCode, Value) = match self {
            Self::InvalidRequest(_) => (ErrorCode::InvalidRequest, Value::Null),
            Self::HiveSetting(e) => (ErrorCode::InvalidRequest, json!({"field": e.field()})),
            Self::NodeNotFound(node) => (
                ErrorCode::NodeNotFound,
                json!({"node": node, "hint": format!("rbee setup add-node --name {node} ...")}),
            ),
            Self::SshFailed { node, reason } => (
                ErrorCode::SshFailed,
                json!({"node": node, "reason": reason}),
            ),
            Self::ConnectionTimeout {
                node,
                url,
                attempts,
                ..
            } => (
                ErrorCode::ConnectionTimeout,
                json!({"node": node, "url": url, "attempts": attempts}),
            ),
            Self::NodeLost { node, .. } => (ErrorCode::ConnectionTimeout, json!({"node": node})),
            Self::VersionMismatch { node, hive, queen } => (
                ErrorCode::VersionMismatch,
                json!({"node": node, "hive_version": hive, "queen_version": queen}),
            ),
            Self::LoadingTimeout {
                worker_id, state, ..
            } => (
                ErrorCode::LoadingTimeout,
                json!({"worker_id": worker_id, "state": state}),
            ),
            Self::WorkerNotFound(_) => (ErrorCode::WorkerNotFound, Value::Null),
            Self::TaskNotFound(_) => (ErrorCode::JobNotFound, Value::Null),
            Self::Remote(envelope) => return envelope.clone(),
            Self::HiveStart { node, .. } | Self::HiveStop { node, .. } => {
                (ErrorCode::Internal, json!({"node": node}))
            }
            Self::StreamBroken { .. } | Self::Registry(_) | Self::Internal(_) => {
                (ErrorCode::Internal, Value::Null)
            }
        };
        ErrorEnvelope::new(code, rbee_http::error::with_causes(self)).with_details(details)
    }
}

impl IntoResponse for QueenError {
    fn into_response(self) -> Response {
        ApiError(self.envelope()).into_response()
    }
}
