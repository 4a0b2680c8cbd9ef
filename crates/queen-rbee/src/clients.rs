//! The queen's HTTP clients for a node's hive and for its workers.

use std::time::Duration;

use rbee_api::ErrorEnvelope;
use rbee_api::hive::{
    DownloadRequest, DownloadStarted, ShutdownWorkerRequest, SpawnRequest, SpawnResponse,
    WorkersList,
};
use rbee_api::routes::{hive as hive_routes, worker as worker_routes};
use rbee_api::worker::{HealthResponse, InferenceRequest, ReadyResponse};
use rbee_http::client::envelope_of;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call to another rbee process failed.
#[derive(Debug, Clone)]
pub enum CallError {
    /// No answer: connection refused, reset, timed out.
    Unreachable(String),
    /// An answer with an error envelope.
    Refused(ErrorEnvelope),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(m) => f.write_str(m),
            Self::Refused(e) => write!(f, "{} ({})", e.error.message, e.error.code),
        }
    }
}

/// One node's hive, with the key it accepts.
#[derive(Debug, Clone)]
pub struct HiveClient {
    pub node: String,
    pub url: String,
    key: String,
    http: reqwest::Client,
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response, what: &str) -> Result<T, CallError> {
    if resp.status().is_success() {
        resp.json()
            .await
            .map_err(|e| CallError::Unreachable(format!("{what}: unreadable answer: {e}")))
    } else {
        Err(CallError::Refused(envelope_of(resp).await))
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_default()
}

impl HiveClient {
    pub fn new(node: &str, url: &str, key: &str, http: reqwest::Client) -> Self {
        Self {
            node: node.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.key)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("GET {url}: {e}")))?;
        decode(resp, &url).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        let url = self.url(path);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("POST {url}: {e}")))?;
        decode(resp, &url).await
    }

    pub async fn health(&self, timeout: Duration) -> Result<HealthResponse, CallError> {
        self.get(hive_routes::HEALTH, timeout).await
    }

    pub async fn workers(&self) -> Result<WorkersList, CallError> {
        self.get(hive_routes::WORKERS_LIST, Duration::from_secs(10))
            .await
    }

    pub async fn download(&self, model_ref: &str) -> Result<DownloadStarted, CallError> {
        self.post(
            hive_routes::MODELS_DOWNLOAD,
            &DownloadRequest {
                model_ref: model_ref.to_owned(),
            },
        )
        .await
    }

    /// The download progress stream.
    pub async fn download_progress(&self, id: &str) -> Result<reqwest::Response, CallError> {
        let url = self.url(hive_routes::MODELS_DOWNLOAD_PROGRESS);
        let resp = self
            .http
            .get(&url)
            .query(&[("id", id)])
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("GET {url}: {e}")))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(CallError::Refused(envelope_of(resp).await))
        }
    }

    pub async fn spawn(&self, req: &SpawnRequest) -> Result<SpawnResponse, CallError> {
        self.post(hive_routes::WORKERS_SPAWN, req).await
    }

    pub async fn stop_worker(&self, worker_id: &str) -> Result<serde_json::Value, CallError> {
        self.post(
            hive_routes::WORKERS_SHUTDOWN,
            &ShutdownWorkerRequest {
                worker_id: worker_id.to_owned(),
            },
        )
        .await
    }

    pub async fn shutdown(&self) -> Result<serde_json::Value, CallError> {
        self.post(hive_routes::ADMIN_SHUTDOWN, &serde_json::json!({}))
            .await
    }

    /// The hive's log stream.
    pub async fn logs(&self, follow: bool) -> Result<reqwest::Response, CallError> {
        let url = self.url(hive_routes::LOGS);
        let resp = self
            .http
            .get(&url)
            .query(&[("follow", follow)])
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("GET {url}: {e}")))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(CallError::Refused(envelope_of(resp).await))
        }
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

    pub async fn ready(&self) -> Result<ReadyResponse, CallError> {
        let url = format!("{}{}", self.url, worker_routes::READY);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("GET {url}: {e}")))?;
        decode(resp, &url).await
    }

    pub async fn loading_progress(&self) -> Result<reqwest::Response, CallError> {
        let url = format!("{}{}", self.url, worker_routes::LOADING_PROGRESS);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("GET {url}: {e}")))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(CallError::Refused(envelope_of(resp).await))
        }
    }

    pub async fn infer(&self, req: &InferenceRequest) -> Result<reqwest::Response, CallError> {
        let url = format!("{}{}", self.url, worker_routes::INFERENCE);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.key)
            .json(req)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("POST {url}: {e}")))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(CallError::Refused(envelope_of(resp).await))
        }
    }

    pub async fn cancel(&self, job_id: &str) -> Result<serde_json::Value, CallError> {
        let url = format!("{}{}", self.url, worker_routes::inference_job(job_id));
        let resp = self
            .http
            .delete(&url)
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(6))
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("DELETE {url}: {e}")))?;
        decode(resp, &url).await
    }
}
