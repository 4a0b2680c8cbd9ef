//! Everything a running queen shares between its routes and tasks.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hives::Hives;
use crate::registry::BeehiveRegistry;
use crate::tasks::Tasks;

pub type AppState = Arc<QueenState>;

pub struct QueenState {
    pub registry: Arc<dyn BeehiveRegistry>,
    pub hives: Hives,
    pub tasks: Tasks,
    pub loading_timeout: Duration,
    pub remote_binary_path: Option<String>,
    pub shutdown: CancellationToken,
}
