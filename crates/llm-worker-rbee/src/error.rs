//! The worker's errors and their one mapping onto the HTTP error envelope.

use axum::response::{IntoResponse, Response};
use rbee_api::worker::RefusedDetails;
use rbee_api::{ErrorCode, ErrorEnvelope};
use rbee_http::ApiError;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    InvalidRequest(String, RefusedDetails),
    #[error("all {total} slots are busy; retry when a request finishes")]
    AllSlotsBusy { total: usize, busy: usize },
    #[error("the model is still loading; follow /v1/loading/progress")]
    Loading,
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    #[error("no running job `{0}`")]
    JobNotFound(String),
    #[error("a job named `{0}` is already running")]
    JobExists(rbee_api::JobId),
    #[error("the tokenizer task stopped")]
    Tokenizer(#[from] tokio::task::JoinError),
}

impl WorkerError {
    pub fn envelope(&self) -> ErrorEnvelope {
        let message = rbee_http::error::with_causes(self);
        match self {
            Self::InvalidRequest(_, details) => {
                let details = serde_json::to_value(details).unwrap_or(Value::Null);
                ErrorEnvelope::new(ErrorCode::InvalidRequest, message).with_details(details)
            }
            Self::AllSlotsBusy { total, busy } => {
                ErrorEnvelope::new(ErrorCode::AllSlotsBusy, message)
                    .with_details(json!({"slots_total": total, "slots_busy": busy}))
            }
            Self::Loading | Self::LoadFailed(_) => {
                ErrorEnvelope::new(ErrorCode::ModelNotReady, message)
            }
            Self::JobNotFound(_) => ErrorEnvelope::new(ErrorCode::JobNotFound, message),
            Self::JobExists(_) => ErrorEnvelope::new(ErrorCode::InvalidRequest, message),
            Self::Tokenizer(_) => ErrorEnvelope::new(ErrorCode::Internal, message),
        }
    }
}

impl IntoResponse for WorkerError {
    fn into_response(self) -> Response {
        ApiError(self.envelope()).into_response()
    }
}
