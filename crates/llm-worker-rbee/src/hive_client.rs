//! The worker's call to its hive when its model cannot be loaded (that it listens, the hive
//! learns from its ready line).
//!
//! It authenticates with the worker's own API key, which the hive generated and knows.

use std::time::Duration;

use rbee_api::routes::hive;
use rbee_api::worker::WorkerFailedCallback;

#[derive(Debug, Clone)]
pub struct HiveClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl HiveClient {
    pub fn new(base: &str, key: &str) -> reqwest::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// Tells the hive why the model could not be loaded.
    pub async fn failed(&self, body: &WorkerFailedCallback) -> reqwest::Result<()> {
        let url = format!("{}{}", self.base, hive::WORKERS_FAILED);
        self.http
            .post(&url)
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?
            .error_for_status()
            .map(drop)
    }
}
