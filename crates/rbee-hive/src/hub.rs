//! A client for the Hugging Face Hub's HTTP protocol, as much as downloading GGUF files needs:
//! listing a repository (`/api/models/<repo>/revision/main`), a file's size and sha256
//! (`HEAD <repo>/resolve/main/<file>`: `X-Linked-Size`, `X-Linked-Etag`), and ranged
//! downloads of `<repo>/resolve/main/<file>`.
//!
//! Written here rather than taken from the `hf-hub` crate: its downloads restart from byte 0
//! after a broken connection (retries cover only the initial request), never verify the
//! sha256 the Hub reports, and it brings a large dependency tree (xet, uploads) the hive
//! does not need.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, ETAG, RANGE};
use tokio::io::AsyncWriteExt;

/// The revision of a reference that names none.
pub const DEFAULT_REVISION: &str = "main";

/// A file of a Hub repository, as the `HEAD` of its resolve URL describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub url: String,
    pub size: u64,
    /// The content sha256 (LFS files); `None` when the Hub reports only a git hash.
    pub sha256: Option<String>,
}

/// Why a Hub request failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Denied(String),
    /// A network failure or server error; a retry may succeed.
    #[error("{0}")]
    Transient(String),
}

#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    http: reqwest::Client,
    /// For `HEAD` requests: the metadata headers are on the first answer, not the redirect.
    no_redirect: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct RepoInfo {
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

impl HubClient {
    pub fn new(endpoint: &str, token: Option<String>) -> reqwest::Result<Self> {
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(30))
                .redirect(redirects)
                .user_agent(concat!("rbee-hive/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            http: build(reqwest::redirect::Policy::limited(10))?,
            no_redirect: build(reqwest::redirect::Policy::none())?,
        })
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            None => req,
        }
    }

    fn status_error(&self, what: &str, status: StatusCode) -> HubError {
        match status {
            StatusCode::NOT_FOUND => {
                HubError::NotFound(format!("{what} does not exist on {}", self.endpoint))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => HubError::Denied(format!(
                "{what} is private or gated (HTTP {status}); set HF_TOKEN to a token with access"
            )),
            s => HubError::Transient(format!("{what}: HTTP {s}")),
        }
    }

    /// File names in `repo` at `revision`.
    pub async fn list_files(&self, repo: &str, revision: &str) -> Result<Vec<String>, HubError> {
        let url = format!("{}/api/models/{repo}/revision/{revision}", self.endpoint);
        let resp = self
            .auth(self.http.get(&url))
            .send()
            .await
            .map_err(|e| HubError::Transient(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(self.status_error(
                &format!("repository {repo} at revision {revision}"),
                resp.status(),
            ));
        }
        let info: RepoInfo = resp
            .json()
            .await
            .map_err(|e| HubError::Transient(format!("GET {url}: unreadable answer: {e}")))?;
        Ok(info.siblings.into_iter().map(|s| s.rfilename).collect())
    }

    /// Size and sha256 of `file` in `repo` at `revision`.
    pub async fn file_info(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<RemoteFile, HubError> {
        let url = format!("{}/{repo}/resolve/{revision}/{file}", self.endpoint);
        let resp = self
            .auth(self.no_redirect.head(&url))
            .send()
            .await
            .map_err(|e| HubError::Transient(format!("HEAD {url}: {e}")))?;
        let status = resp.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(self.status_error(&format!("{repo}/{file}"), status));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.trim()
                        .trim_start_matches("W/")
                        .trim_matches('"')
                        .to_owned()
                })
        };
        let size = header("x-linked-size")
            .or_else(|| header(CONTENT_LENGTH.as_str()))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                HubError::Transient(format!("HEAD {url}: no file size in the answer"))
            })?;
        let sha256 = header("x-linked-etag")
            .or_else(|| header(ETAG.as_str()))
            .filter(|e| e.len() == 64 && e.chars().all(|c| c.is_ascii_hexdigit()))
            .map(|e| e.to_ascii_lowercase());
        Ok(RemoteFile { url, size, sha256 })
    }

    /// The first `len` bytes of `file` (a `Range` request; a server that ignores it is read
    /// no further than `len`).
    pub async fn fetch_prefix(&self, file: &RemoteFile, len: u64) -> Result<Vec<u8>, HubError> {
        let resp = self
            .auth(self.http.get(&file.url))
            .header(RANGE, format!("bytes=0-{}", len.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| HubError::Transient(format!("GET {}: {e}", file.url)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_error(&file.url, status));
        }
        let mut out = Vec::with_capacity(len as usize);
        let mut body = resp.bytes_stream();
        while (out.len() as u64) < len {
            match body.next().await {
                Some(chunk) => out.extend_from_slice(&chunk.map_err(|e| {
                    HubError::Transient(format!("GET {}: connection lost: {e}", file.url))
                })?),
                None => break,
            }
        }
        out.truncate(len as usize);
        Ok(out)
    }

    /// Appends `file`'s bytes from `offset` on to `dest`, calling `progress` with the bytes
    /// written so far. One attempt; the caller retries.
    pub async fn fetch_from(
        &self,
        file: &RemoteFile,
        dest: &mut tokio::fs::File,
        offset: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<(), HubError> {
        let mut req = self.auth(self.http.get(&file.url));
        if offset > 0 {
            req = req.header(RANGE, format!("bytes={offset}-"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| HubError::Transient(format!("GET {}: {e}", file.url)))?;
        let status = resp.status();
        if offset > 0 && status == StatusCode::OK {
            return Err(HubError::Transient(format!(
                "GET {}: the server ignored the Range request",
                file.url
            )));
        }
        if !status.is_success() {
            return Err(self.status_error(&file.url, status));
        }
        let mut written = offset;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                HubError::Transient(format!(
                    "connection lost at byte {written} of {}: {e}",
                    file.size
                ))
            })?;
            dest.write_all(&chunk)
                .await
                .map_err(|e| HubError::Transient(format!("cannot write the download: {e}")))?;
            written += chunk.len() as u64;
            progress(written);
        }
        dest.flush()
            .await
            .map_err(|e| HubError::Transient(format!("cannot write the download: {e}")))?;
        if written < file.size {
            return Err(HubError::Transient(format!(
                "connection closed at byte {written} of {}",
                file.size
            )));
        }
        Ok(())
    }
}
