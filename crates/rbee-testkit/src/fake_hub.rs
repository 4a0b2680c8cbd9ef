//! A test double of the Hugging Face Hub: the URL protocol the hive speaks, with faults to
//! inject (connection reset at a byte, slow transfer, corrupted content) and a record of what was asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// Bytes per body chunk (the unit of a slow transfer's pauses).
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Serve correctly.
    None,
    /// Drop the connection after this many bytes of the file, on the first `n` GETs.
    ResetAt { byte: u64, times: u32 },
    /// Drop every connection after this many bytes of the response.
    ResetEvery { after: u64 },
    /// Flip a byte in the middle of every transfer.
    Corrupt,
    /// Send the file at about this many bytes per second.
    Slow { bytes_per_sec: u64 },
    /// Report this size for every file (`x-linked-size`), as for a file larger than a disk.
    ClaimSize { bytes: u64 },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

/// A repository's files, by revision and name.
struct Repo {
    files: HashMap<(String, String), Arc<Vec<u8>>>,
}

#[derive(Clone)]
struct Hub {
    repos: Arc<Mutex<HashMap<String, Repo>>>,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

pub struct FakeHub {
    pub url: String,
    hub: Hub,
    _server: tokio::task::JoinHandle<()>,
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FakeHub {
    /// A hub on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// A hub on a free port of `address` (e.g. a bridge other network namespaces reach).
    pub async fn start_on(address: &str) -> Self {
        let hub = Hub {
            repos: Arc::default(),
            fault: Arc::new(Mutex::new(Fault::None)),
            requests: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/api/models/{org}/{repo}/revision/{rev}", get(repo_info))
            .route(
                "/{org}/{repo}/resolve/{rev}/{*file}",
                get(resolve).head(resolve),
            )
            .with_state(hub.clone());
        let listener = tokio::net::TcpListener::bind((address, 0)).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            hub,
            _server: server,
        }
    }

    /// Adds a file to the `main` revision of `repo`.
    pub fn add_file(&self, repo: &str, name: &str, data: Arc<Vec<u8>>) {
        self.add_file_at(repo, "main", name, data);
    }

    /// Adds a file to one revision (branch, tag or commit) of `repo`.
    pub fn add_file_at(&self, repo: &str, revision: &str, name: &str, data: Arc<Vec<u8>>) {
        let mut repos = self.hub.repos.lock().unwrap();
        repos
            .entry(repo.to_owned())
            .or_insert_with(|| Repo {
                files: HashMap::new(),
            })
            .files
            .insert((revision.to_owned(), name.to_owned()), data);
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.hub.fault.lock().unwrap() = fault;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.hub.requests.lock().unwrap().clone()
    }

    /// GETs of file contents (not metadata, nor reads of a file's start).
    pub fn downloads(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.contains("/resolve/"))
            .filter(|r| !r.range.as_deref().is_some_and(is_bounded))
            .collect()
    }
}

async fn repo_info(
    State(hub): State<Hub>,
    Path((org, repo, rev)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    hub.record("GET", &format!("/api/models/{org}/{repo}"), &headers);
    let repos = hub.repos.lock().unwrap();
    let Some(r) = repos.get(&format!("{org}/{repo}")) else {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    };
    let mut names: Vec<&String> = (r.files.keys())
        .filter(|(r, _)| *r == rev)
        .map(|(_, name)| name)
        .collect();
    if names.is_empty() {
        return (StatusCode::NOT_FOUND, format!("Revision Not Found: {rev}")).into_response();
    }
    names.sort();
    let siblings: Vec<_> = names
        .iter()
        .map(|n| serde_json::json!({"rfilename": n}))
        .collect();
    axum::Json(serde_json::json!({"id": format!("{org}/{repo}"), "siblings": siblings}))
        .into_response()
}

/// Whether a `Range` header names its last byte (`bytes=0-1023`, not `bytes=512-`).
fn is_bounded(range: &str) -> bool {
    range
        .split_once('-')
        .is_some_and(|(_, end)| !end.is_empty())
}

impl Hub {
    fn record(&self, method: &str, path: &str, headers: &HeaderMap) {
        let get = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.requests.lock().unwrap().push(Request {
            method: method.to_owned(),
            path: path.to_owned(),
            range: get(header::RANGE),
            authorization: get(header::AUTHORIZATION),
        });
    }
}

/// The answer to `HEAD`: the size and hashes, no body.
fn head(size: u64, meta: [(&'static str, String); 3]) -> Response {
    let mut resp = Response::new(Body::empty());
    for (k, v) in meta {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, size.into());
    resp
}

/// A bounded range, served whole and without faults.
fn bounded(data: &[u8], start: u64, end: u64) -> Response {
    let size = data.len() as u64;
    let end = end.min(size.saturating_sub(1));
    let slice = data[start.min(size) as usize..=end as usize].to_vec();
    let mut resp = Response::new(Body::from(slice));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    resp.headers_mut().insert(
        header::CONTENT_RANGE,
        format!("bytes {start}-{end}/{size}").parse().unwrap(),
    );
    resp
}

impl Hub {
    /// The fault for this transfer; a reset counts down its remaining times.
    fn take_fault(&self) -> Fault {
        let mut fault = self.fault.lock().unwrap();
        let current = *fault;
        if let Fault::ResetAt { byte, times } = current {
            *fault = if times > 1 {
                Fault::ResetAt {
                    byte,
                    times: times - 1,
                }
            } else {
                Fault::None
            };
        }
        current
    }
}

/// The file from `start`, chunked, with `fault` applied: a flipped byte, a reset or a crawl.
fn transfer(data: &[u8], start: u64, fault: Fault) -> Response {
    let size = data.len() as u64;
    let mut body: Vec<u8> = data[start as usize..].to_vec();
    if fault == Fault::Corrupt && !body.is_empty() {
        let mid = body.len() / 2;
        body[mid] ^= 0xFF;
    }
    let cut = match fault {
        Fault::ResetAt { byte, .. } if byte > start => Some((byte - start) as usize),
        Fault::ResetEvery { after } => Some(after as usize),
        _ => None,
    };
    let status = if start > 0 {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let len = body.len();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = match cut {
        Some(cut) if cut < len => vec![
            Ok(body[..cut].to_vec()),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected reset",
            )),
        ],
        _ => body.chunks(CHUNK).map(|c| Ok(c.to_vec())).collect(),
    };
    let pause = match fault {
        Fault::Slow { bytes_per_sec } => {
            Duration::from_secs_f64(CHUNK as f64 / bytes_per_sec.max(1) as f64)
        }
        _ => Duration::ZERO,
    };
    let stream = futures::stream::iter(chunks).then(move |c| async move {
        if pause.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(pause).await;
        }
        c
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, len.into());
    if start > 0 {
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", size - 1)
                .parse()
                .unwrap(),
        );
    }
    resp
}

async fn resolve(
    State(hub): State<Hub>,
    method: axum::http::Method,
    Path((org, repo, rev, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/{org}/{repo}/resolve/{rev}/{file}");
    hub.record(method.as_str(), &path, &headers);
    let data = {
        let repos = hub.repos.lock().unwrap();
        match repos
            .get(&format!("{org}/{repo}"))
            .and_then(|r| r.files.get(&(rev.clone(), file.clone())))
        {
            Some(d) => d.clone(),
            None => return (StatusCode::NOT_FOUND, "Entry not found").into_response(),
        }
    };
    let size = data.len() as u64;
    let claimed = match *hub.fault.lock().unwrap() {
        Fault::ClaimSize { bytes } => bytes,
        _ => size,
    };
    let meta = [
        ("x-linked-size", claimed.to_string()),
        ("x-linked-etag", format!("\"{}\"", sha256_hex(&data))),
        ("etag", format!("\"{}\"", sha256_hex(&data))),
    ];
    if method == axum::http::Method::HEAD {
        return head(size, meta);
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'));
    let start: u64 = range.and_then(|(a, _)| a.parse().ok()).unwrap_or(0);
    // A bounded range (`bytes=0-4194303`) reads the start of a file, as a header check does:
    // served whole, and faults are kept for the transfers.
    if let Some(end) = range.and_then(|(_, b)| b.parse::<u64>().ok()) {
        return bounded(&data, start, end);
    }
    let fault = hub.take_fault();
    transfer(&data, start, fault)
}
