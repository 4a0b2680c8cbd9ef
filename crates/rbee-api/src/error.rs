//! The error envelope every rbee HTTP endpoint answers with, and the closed set of codes.
//!
//! A code names one failure and is never reused for another meaning; the HTTP status that
//! goes with it is fixed here so that every server maps errors the same way.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every error code of the rbee APIs and the HTTP status of each (`docs/api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidApiKey,
    NodeNotFound,
    SshFailed,
    ConnectionTimeout,
    VersionMismatch,
    ModelNotFound,
    /// The model file exists but cannot be used (not GGUF, truncated, unsupported).
    InvalidModel,
    DownloadFailed,
    InsufficientRam,
    /// The node's disk cannot hold a download.
    InsufficientDisk,
    VramExhausted,
    BackendUnavailable,
    LoadingTimeout,
    AllSlotsBusy,
    WorkerNotFound,
    WorkerCrashed,
    /// The worker was shut down before the answer was complete: its hive (or the queen)
    /// went away or stopped it.
    WorkerStopped,
    /// The worker is up but its model is still loading (or failed to load).
    ModelNotReady,
    JobNotFound,
    /// No download of that model is known to the hive.
    DownloadNotFound,
    /// No route answers at this path.
    UnknownEndpoint,
    /// The path exists, but not for this method.
    MethodNotAllowed,
    /// The request body is larger than the server accepts.
    PayloadTooLarge,
    Cancelled,
    Internal,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::InvalidApiKey => 401,
            Self::NodeNotFound
            | Self::ModelNotFound
            | Self::WorkerNotFound
            | Self::JobNotFound
            | Self::DownloadNotFound
            | Self::UnknownEndpoint => 404,
            Self::MethodNotAllowed => 405,
            Self::VersionMismatch => 409,
            Self::PayloadTooLarge => 413,
            Self::InvalidModel
            | Self::InsufficientRam
            | Self::VramExhausted
            | Self::BackendUnavailable => 422,
            Self::Cancelled => 499,
            Self::SshFailed | Self::DownloadFailed | Self::WorkerCrashed | Self::WorkerStopped => {
                502
            }
            Self::AllSlotsBusy | Self::ModelNotReady => 503,
            Self::InsufficientDisk => 507,
            Self::ConnectionTimeout | Self::LoadingTimeout => 504,
            Self::Internal => 500,
        }
    }

    /// The code as it appears on the wire, e.g. `ALL_SLOTS_BUSY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::InvalidApiKey => "INVALID_API_KEY",
            Self::NodeNotFound => "NODE_NOT_FOUND",
            Self::SshFailed => "SSH_FAILED",
            Self::ConnectionTimeout => "CONNECTION_TIMEOUT",
            Self::VersionMismatch => "VERSION_MISMATCH",
            Self::ModelNotFound => "MODEL_NOT_FOUND",
            Self::InvalidModel => "INVALID_MODEL",
            Self::DownloadFailed => "DOWNLOAD_FAILED",
            Self::InsufficientRam => "INSUFFICIENT_RAM",
            Self::InsufficientDisk => "INSUFFICIENT_DISK",
            Self::VramExhausted => "VRAM_EXHAUSTED",
            Self::BackendUnavailable => "BACKEND_UNAVAILABLE",
            Self::LoadingTimeout => "LOADING_TIMEOUT",
            Self::AllSlotsBusy => "ALL_SLOTS_BUSY",
            Self::WorkerNotFound => "WORKER_NOT_FOUND",
            Self::WorkerCrashed => "WORKER_CRASHED",
            Self::WorkerStopped => "WORKER_STOPPED",
            Self::ModelNotReady => "MODEL_NOT_READY",
            Self::JobNotFound => "JOB_NOT_FOUND",
            Self::DownloadNotFound => "DOWNLOAD_NOT_FOUND",
            Self::UnknownEndpoint => "UNKNOWN_ENDPOINT",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Cancelled => "CANCELLED",
            Self::Internal => "INTERNAL",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The inside of the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

/// `{"error": {...}}` — the body of every failed HTTP response and of `error` SSE events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

impl ErrorEnvelope {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorBody {
                code,
                message: message.into(),
                details: Value::Null,
            },
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.error.details = details;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_serialises_with_screaming_code_and_details() {
        let env = ErrorEnvelope::new(ErrorCode::AllSlotsBusy, "busy")
            .with_details(serde_json::json!({"slots_total": 1, "slots_busy": 1}));
        let text = serde_json::to_string(&env).unwrap();
        // Compared as values: the order of `details` keys depends on serde_json's features.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"error": {"code": "ALL_SLOTS_BUSY", "message": "busy",
                                         "details": {"slots_busy": 1, "slots_total": 1}}})
        );
        assert!(text.starts_with(r#"{"error":{"code":"ALL_SLOTS_BUSY","message":"busy","#));
        let back: ErrorEnvelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn wire_name_matches_serde_name_for_every_code() {
        use ErrorCode::*;
        for code in [
            InvalidRequest,
            InvalidApiKey,
            NodeNotFound,
            SshFailed,
            ConnectionTimeout,
            VersionMismatch,
            ModelNotFound,
            InvalidModel,
            DownloadFailed,
            InsufficientRam,
            InsufficientDisk,
            VramExhausted,
            BackendUnavailable,
            LoadingTimeout,
            AllSlotsBusy,
            WorkerNotFound,
            WorkerCrashed,
            ModelNotReady,
            JobNotFound,
            DownloadNotFound,
            UnknownEndpoint,
            Cancelled,
            Internal,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            assert!((400..600).contains(&code.http_status()));
        }
    }
}
