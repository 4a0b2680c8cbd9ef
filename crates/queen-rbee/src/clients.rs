//! The queen's HTTP clients for a node's hive and for its workers.

use std::time::Duration;

use rbee_api::hive::{
    DeleteModelRequest, DownloadRequest, DownloadStarted, KeepAliveRequest, KeptAlive,
    ModelDeleted, ModelEntry, ModelSettingsRequest, ModelsList, PreflightPassed, PreflightRequest,
    Resources, ShutdownWorkerRequest, SpawnRequest, SpawnResponse, WorkerStopped, WorkersList,
};
use rbee_api::routes::{hive as hive_routes, worker as worker_routes};
use rbee_api::worker::{
    CancelResponse, HealthResponse, InferenceRequest, ModelInfo, ReadyResponse,
};
use rbee_api::{ErrorEnvelope, JobId, ModelRef, NodeName, ShuttingDown, WorkerId};
use rbee_http::client::envelope_of;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call to another rbee process failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No (usable) answer: connection refused, reset, timed out, or a body that is not one.
    #[error("{what}: {source}")]
    Unreachable {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer with an error envelope.
    #[error("{} ({})", .0.error.message, .0.error.code)]
    Refused(ErrorEnvelope),
    /// Connected, but no answer began before the deadline (a frozen or overloaded peer).
    #[error("{what}: no answer within {} s", .after.as_secs())]
    NoAnswer { what: String, after: Duration },
}

/// How long a streamed answer (tokens, progress, logs) may take to begin.
const FIRST_BYTE: Duration = Duration::from_secs(5);
/// Deadlines of calls whose whole answer is awaited.
const QUICK: Duration = Duration::from_secs(10);
/// Spawning (which checks the model and memory) and stopping a worker (which waits for it).
const SLOW: Duration = Duration::from_secs(30);

/// Sends `req`; a successful response, else why not. `what` names the call in messages.
async fn send(req: reqwest::RequestBuilder, what: String) -> Result<reqwest::Response, CallError> {
    let resp = req.send().await.map_err(|source| CallError::Unreachable {
        what: what.clone(),
        source,
    })?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(CallError::Refused(envelope_of(resp).await))
    }
}

/// Sends `req` for a streamed answer: the response once its headers arrived, at most
/// [`FIRST_BYTE`] later.
async fn open_stream(
    req: reqwest::RequestBuilder,
    what: String,
) -> Result<reqwest::Response, CallError> {
    tokio::time::timeout(FIRST_BYTE, send(req, what.clone()))
        .await
        .unwrap_or(Err(CallError::NoAnswer {
            what,
            after: FIRST_BYTE,
        }))
}

/// Sends `req` and reads its JSON answer.
async fn fetch<T: DeserializeOwned>(
    req: reqwest::RequestBuilder,
    what: String,
) -> Result<T, CallError> {
    send(req, what.clone())
        .await?
        .json()
        .await
        .map_err(|source| CallError::Unreachable {
            what: format!("{what}: unreadable answer"),
            source,
        })
}

/// The HTTP client the queen uses for hives and workers (one connection pool).
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
}

impl CallError {
    /// The queen's error for a failed call to `hive`.
    pub fn from_hive(self, hive: &HiveClient) -> crate::error::QueenError {
        use crate::error::QueenError;
        match self {
            Self::Refused(envelope) => QueenError::Remote(envelope),
            unreachable @ (Self::Unreachable { .. } | Self::NoAnswer { .. }) => {
                QueenError::ConnectionTimeout {
                    node: hive.node.clone(),
                    url: hive.url.clone(),
                    attempts: 1,
                    reason: unreachable.to_string(),
                }
            }
        }
    }
}

/// One node's hive, with the key it accepts.
#[derive(Debug, Clone)]
pub struct HiveClient {
    pub node: NodeName,
    pub url: String,
    key: String,
    http: reqwest::Client,
}

impl HiveClient {
    pub fn new(node: &NodeName, url: &str, key: &str, http: reqwest::Client) -> Self {
        Self {
            node: node.clone(),
            url: url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http,
        }
    }

    fn get(&self, path: &str) -> (reqwest::RequestBuilder, String) {
        let url = format!("{}{path}", self.url);
        (
            self.http.get(&url).bearer_auth(&self.key),
            format!("GET {url}"),
        )
    }

    fn post(&self, path: &str, body: &impl Serialize) -> (reqwest::RequestBuilder, String) {
        let url = format!("{}{path}", self.url);
        (
            self.http.post(&url).bearer_auth(&self.key).json(body),
            format!("POST {url}"),
        )
    }

    pub async fn health(&self, timeout: Duration) -> Result<HealthResponse, CallError> {
        let (req, what) = self.get(hive_routes::HEALTH);
        fetch(req.timeout(timeout), what).await
    }

    pub async fn workers(&self) -> Result<WorkersList, CallError> {
        let (req, what) = self.get(hive_routes::WORKERS_LIST);
        fetch(req.timeout(Duration::from_secs(10)), what).await
    }

    pub async fn models(&self) -> Result<ModelsList, CallError> {
        let (req, what) = self.get(hive_routes::MODELS);
        fetch(req.timeout(Duration::from_secs(5)), what).await
    }

    pub async fn resources(&self) -> Result<Resources, CallError> {
        let (req, what) = self.get(hive_routes::RESOURCES);
        fetch(req.timeout(Duration::from_secs(10)), what).await
    }

    /// `Ok` when a worker for this catalog model would pass the node's preflight.
    pub async fn preflight(&self, body: &PreflightRequest) -> Result<PreflightPassed, CallError> {
        let (req, what) = self.post(hive_routes::PREFLIGHT, body);
        fetch(req.timeout(Duration::from_secs(30)), what).await
    }

    pub async fn download(&self, model_ref: &ModelRef) -> Result<DownloadStarted, CallError> {
        let body = DownloadRequest {
            model_ref: model_ref.clone(),
        };
        let (req, what) = self.post(hive_routes::MODELS_DOWNLOAD, &body);
        fetch(req.timeout(QUICK), what).await
    }

    /// What the node's worker binary reads from a catalogued model's header.
    pub async fn model_info(&self, model_ref: &ModelRef) -> Result<ModelInfo, CallError> {
        let (req, what) = self.get(hive_routes::MODELS_INFO);
        let query = [("ref", model_ref.to_string())];
        fetch(req.query(&query).timeout(SLOW), what).await
    }

    pub async fn delete_model(&self, model_ref: &ModelRef) -> Result<ModelDeleted, CallError> {
        let body = DeleteModelRequest {
            model_ref: model_ref.clone(),
        };
        let (req, what) = self.post(hive_routes::MODELS_DELETE, &body);
        fetch(req.timeout(QUICK), what).await
    }

    /// Sets how a catalogued model's workers run it (the hive checks a template compiles).
    pub async fn set_model_settings(
        &self,
        body: &ModelSettingsRequest,
    ) -> Result<ModelEntry, CallError> {
        let (req, what) = self.post(hive_routes::MODELS_SETTINGS, body);
        fetch(req.timeout(SLOW), what).await
    }

    /// The download progress stream.
    pub async fn download_progress(&self, id: &str) -> Result<reqwest::Response, CallError> {
        let (req, what) = self.get(hive_routes::MODELS_DOWNLOAD_PROGRESS);
        open_stream(req.query(&[("id", id)]), what).await
    }

    pub async fn spawn(&self, body: &SpawnRequest) -> Result<SpawnResponse, CallError> {
        let (req, what) = self.post(hive_routes::WORKERS_SPAWN, body);
        fetch(req.timeout(SLOW), what).await
    }

    pub async fn stop_worker(&self, worker_id: &WorkerId) -> Result<WorkerStopped, CallError> {
        let body = ShutdownWorkerRequest {
            worker_id: worker_id.clone(),
        };
        let (req, what) = self.post(hive_routes::WORKERS_SHUTDOWN, &body);
        fetch(req.timeout(SLOW), what).await
    }

    pub async fn keep_alive(
        &self,
        worker_id: &WorkerId,
        seconds: u64,
    ) -> Result<KeptAlive, CallError> {
        let body = KeepAliveRequest {
            worker_id: worker_id.clone(),
            seconds,
        };
        let (req, what) = self.post(hive_routes::WORKERS_KEEP_ALIVE, &body);
        fetch(req.timeout(SLOW), what).await
    }

    pub async fn shutdown(&self) -> Result<ShuttingDown, CallError> {
        let url = format!("{}{}", self.url, hive_routes::ADMIN_SHUTDOWN);
        let req = self.http.post(&url).bearer_auth(&self.key);
        fetch(req.timeout(QUICK), format!("POST {url}")).await
    }

    /// The hive's log stream.
    pub async fn logs(&self, follow: bool) -> Result<reqwest::Response, CallError> {
        let (req, what) = self.get(hive_routes::LOGS);
        open_stream(req.query(&[("follow", follow)]), what).await
    }
}

/// One worker, with the key the hive generated for it.
#[derive(Debug, Clone)]
pub struct WorkerClient {
    pub url: String,
    key: String,
    http: reqwest::Client,
}

impl WorkerClient {
    pub fn new(url: &str, key: &str, http: reqwest::Client) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> (reqwest::RequestBuilder, String) {
        let url = format!("{}{path}", self.url);
        let what = format!("{method} {url}");
        (self.http.request(method, &url).bearer_auth(&self.key), what)
    }

    pub async fn ready(&self) -> Result<ReadyResponse, CallError> {
        let (req, what) = self.request(reqwest::Method::GET, worker_routes::READY);
        fetch(req.timeout(Duration::from_secs(5)), what).await
    }

    pub async fn loading_progress(&self) -> Result<reqwest::Response, CallError> {
        let (req, what) = self.request(reqwest::Method::GET, worker_routes::LOADING_PROGRESS);
        open_stream(req, what).await
    }

    pub async fn infer(&self, body: &InferenceRequest) -> Result<reqwest::Response, CallError> {
        let (req, what) = self.request(reqwest::Method::POST, worker_routes::INFERENCE);
        open_stream(req.json(body), what).await
    }

    pub async fn cancel(&self, job_id: &JobId) -> Result<CancelResponse, CallError> {
        let (req, what) = self.request(
            reqwest::Method::DELETE,
            &worker_routes::inference_job(job_id),
        );
        fetch(req.timeout(Duration::from_secs(6)), what).await
    }
}
