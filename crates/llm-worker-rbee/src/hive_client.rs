//! The worker's two calls to its hive: "I listen" and "my model failed to load".
//!
//! Both authenticate with the worker's own API key, which the hive generated and knows.

use std::time::Duration;

use rbee_api::routes::hive;
use rbee_api::worker::{WorkerFailedCallback, WorkerReadyCallback};

#[derive(Debug, Clone)]
pub struct HiveClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl HiveClient {
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    pub async fn ready(&self, body: &WorkerReadyCallback) -> Result<(), String> {
        self.post(hive::WORKERS_READY, body).await
    }

    pub async fn failed(&self, body: &WorkerFailedCallback) -> Result<(), String> {
        self.post(hive::WORKERS_FAILED, body).await
    }

    async fn post(&self, path: &str, body: &impl serde::Serialize) -> Result<(), String> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("POST {url}: HTTP {}", resp.status()))
        }
    }
}
