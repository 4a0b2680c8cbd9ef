//! The hive's errors and their one mapping onto the HTTP error envelope.

use axum::response::{IntoResponse, Response};
use rbee_api::{Backend, ErrorCode, ErrorEnvelope, ModelRef, WorkerId};
use rbee_http::ApiError;
use serde_json::json;

use std::sync::Arc;

use crate::catalog::CatalogError;

/// Clone, because one download's outcome goes to everyone waiting for it; causes are shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HiveError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    ModelNotFound(String),
    #[error("{0}")]
    InvalidModel(String),
    #[error("download of {model_ref} failed after {attempts} attempts: {cause}")]
    DownloadFailed {
        model_ref: ModelRef,
        attempts: u32,
        cause: String,
    },
    #[error(
        "not enough RAM for {model_ref}: needs {required_mb} MB (weights plus the attention cache at its context), {available_mb} MB available; try a smaller quantization, or a smaller context with `rbee models set {model_ref} --context-length <tokens>`"
    )]
    InsufficientRam {
        model_ref: ModelRef,
        required_mb: u64,
        available_mb: u64,
    },
    #[error(
        "not enough disk space for {model_ref}: the file needs {required_mb} MB, {available_mb} MB free in the models directory; free some space (`rbee models rm`) or choose a smaller quantization"
    )]
    InsufficientDisk {
        model_ref: ModelRef,
        required_mb: u64,
        available_mb: u64,
    },
    #[error("backend `{backend}` is not available on this node (found: {found})")]
    BackendUnavailable { backend: Backend, found: String },
    #[error(
        "not enough free VRAM on {backend} device {device}: needs {required_mb} MB, {free_mb} MB free; try a smaller quantization or another device"
    )]
    VramExhausted {
        backend: Backend,
        device: u32,
        required_mb: u64,
        free_mb: u64,
    },
    #[error("no download of `{0}` is known; start one with POST /v1/models/download")]
    DownloadNotFound(String),
    #[error("no worker `{0}` on this hive")]
    WorkerNotFound(WorkerId),
    #[error("the API key is not valid for worker `{0}`")]
    InvalidWorkerKey(WorkerId),
    #[error("a worker ({}) did not start: {reason}", .bin.display())]
    WorkerStart {
        bin: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Catalog(Arc<CatalogError>),
    /// A file operation of the hive's own failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// `llm-worker-rbee --check` succeeded but its report did not parse.
    #[error("unreadable answer from `llm-worker-rbee --check`")]
    CheckReport(#[source] Arc<serde_json::Error>),
    #[error("{0}")]
    Internal(String),
}

impl From<CatalogError> for HiveError {
    fn from(e: CatalogError) -> Self {
        Self::Catalog(Arc::new(e))
    }
}

impl HiveError {
    /// `what` failed on a file or process of the hive's own.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source: Arc::new(source),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::ModelNotFound(_) => ErrorCode::ModelNotFound,
            Self::InvalidModel(_) => ErrorCode::InvalidModel,
            Self::DownloadFailed { .. } => ErrorCode::DownloadFailed,
            Self::InsufficientRam { .. } => ErrorCode::InsufficientRam,
            Self::InsufficientDisk { .. } => ErrorCode::InsufficientDisk,
            Self::BackendUnavailable { .. } => ErrorCode::BackendUnavailable,
            Self::VramExhausted { .. } => ErrorCode::VramExhausted,
            Self::DownloadNotFound(_) => ErrorCode::DownloadNotFound,
            Self::WorkerNotFound(_) => ErrorCode::WorkerNotFound,
            Self::InvalidWorkerKey(_) => ErrorCode::InvalidApiKey,
            Self::WorkerStart { .. }
            | Self::Catalog(_)
            | Self::Io { .. }
            | Self::CheckReport(_)
            | Self::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn envelope(&self) -> ErrorEnvelope {
        let details = match self {
            Self::DownloadFailed {
                model_ref,
                attempts,
                cause,
            } => json!({"model_ref": model_ref, "attempts": attempts, "cause": cause}),
            Self::InsufficientRam {
                model_ref,
                required_mb,
                available_mb,
            }
            | Self::InsufficientDisk {
                model_ref,
                required_mb,
                available_mb,
            } => {
                json!({"model_ref": model_ref, "required_mb": required_mb, "available_mb": available_mb})
            }
            Self::BackendUnavailable { backend, found } => {
                json!({"backend": backend, "available": found})
            }
            Self::VramExhausted {
                backend,
                device,
                required_mb,
                free_mb,
            } => {
                json!({"backend": backend, "device": device, "required_mb": required_mb, "free_mb": free_mb})
            }
            _ => serde_json::Value::Null,
        };
        ErrorEnvelope::new(self.code(), rbee_http::error::with_causes(self)).with_details(details)
    }
}

impl IntoResponse for HiveError {
    fn into_response(self) -> Response {
        ApiError(self.envelope()).into_response()
    }
}
