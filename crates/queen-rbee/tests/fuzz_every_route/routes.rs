//! Every route of each daemon, with a valid body to mutate, and which ones must never get a
//! valid body.

use rbee_api::routes::{hive, queen, worker};
use reqwest::Method;
use serde_json::{Value, json};

/// The model the generated bodies name: fixed, so that the requests are the same on
/// every machine. No body that names it is ever valid where it would be loaded.
const MODEL: &str = "file:/models/fuzz.gguf";
pub const DOWNLOAD_REF: &str = "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q8_0";
pub const WORKER_ID: &str = "worker-0a1b2c3d4e5f";

/// Never sent: they end the daemon.
const EXCLUDED: &[&str] = &[worker::ADMIN_SHUTDOWN, hive::ADMIN_SHUTDOWN];

/// The query parameters a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    None,
    /// Hive `?id=`.
    Download,
    /// Hive `?follow=&source=`.
    HiveLogs,
    /// Queen `?node=`.
    Node,
    /// Queen `?node=&follow=`.
    NodeLogs,
    /// Hive `?ref=`.
    ModelRef,
    /// Queen `?model=&node=`.
    ModelShow,
}

pub struct Route {
    pub method: Method,
    /// As declared in `rbee_api::routes`, `{param}` for a path parameter.
    pub path: &'static str,
    pub query: QueryKind,
    /// A valid body, which the generator mutates.
    pub body: Option<Value>,
    /// A valid body would start real work (inference, a download, a worker, SSH): every
    /// body generated for the route is made invalid.
    pub guarded: bool,
    /// Fields of a guarded body that never accept a number, a bool or an object.
    pub poison: &'static [&'static str],
}

impl Route {
    fn new(method: Method, path: &'static str) -> Self {
        Self {
            method,
            path,
            query: QueryKind::None,
            body: None,
            guarded: false,
            poison: &[],
        }
    }

    fn get(path: &'static str) -> Self {
        Self::new(Method::GET, path)
    }

    fn delete(path: &'static str) -> Self {
        Self::new(Method::DELETE, path)
    }

    fn post(path: &'static str, body: Value) -> Self {
        Self {
            body: Some(body),
            ..Self::new(Method::POST, path)
        }
    }

    fn query(mut self, kind: QueryKind) -> Self {
        self.query = kind;
        self
    }

    fn guarded(mut self, poison: &'static [&'static str]) -> Self {
        self.guarded = true;
        self.poison = poison;
        self
    }
}

/// `llm-worker-rbee`, without `POST /v1/admin/shutdown`.
pub fn worker() -> Vec<Route> {
    let inference = json!({"prompt": "Hello", "max_tokens": 1, "temperature": 0.0, "stop": ["\n"]});
    vec![
        Route::get(worker::HEALTH),
        Route::get(worker::READY),
        Route::get(worker::LOADING_PROGRESS),
        Route::post(worker::INFERENCE, inference)
            .guarded(&["prompt", "messages", "job_id", "stop"]),
        Route::delete(worker::INFERENCE_JOB),
        Route::get(worker::METRICS),
    ]
}

/// `rbee-hive`, without `POST /v1/admin/shutdown`.
pub fn hive() -> Vec<Route> {
    let failed = json!({"worker_id": WORKER_ID,
        "error": {"error": {"code": "INVALID_MODEL", "message": "fuzz"}}});
    vec![
        Route::get(hive::HEALTH),
        Route::get(hive::WORKERS_LIST),
        Route::post(
            hive::WORKERS_SPAWN,
            json!({"model_ref": MODEL, "backend": "cpu",
            "device": 0, "slots": 1}),
        )
        .guarded(&["model_ref"]),
        Route::post(hive::WORKERS_SHUTDOWN, json!({"worker_id": WORKER_ID})),
        Route::post(hive::WORKERS_FAILED, failed),
        Route::get(hive::MODELS),
        Route::get(hive::RESOURCES),
        Route::post(
            hive::PREFLIGHT,
            json!({"model_ref": MODEL, "backend": "cpu", "device": 0}),
        ),
        Route::post(hive::MODELS_DOWNLOAD, json!({"model_ref": DOWNLOAD_REF}))
            .guarded(&["model_ref"]),
        Route::get(hive::MODELS_DOWNLOAD_PROGRESS).query(QueryKind::Download),
        Route::get(hive::LOGS).query(QueryKind::HiveLogs),
        Route::get(hive::METRICS),
        Route::get(hive::MODELS_INFO).query(QueryKind::ModelRef),
        Route::post(hive::MODELS_DELETE, json!({"model_ref": MODEL})).guarded(&["model_ref"]),
        Route::post(
            hive::MODELS_SETTINGS,
            json!({"model_ref": MODEL, "settings": {"context_length": 512}}),
        )
        .guarded(&["model_ref", "settings"]),
        Route::post(
            hive::WORKERS_KEEP_ALIVE,
            json!({"worker_id": WORKER_ID, "seconds": 60}),
        ),
    ]
}

/// `queen-rbee`: the node registry, tasks, workers, logs and the OpenAI API.
pub fn queen() -> Vec<Route> {
    let node = json!({"node_name": "fuzz-node", "ssh_host": "127.0.0.1", "ssh_user": "nobody",
        "install_path": "/tmp/rbee-fuzz", "ssh_port": 22, "hive_port": 9200,
        "git_repo_url": "https://example.invalid/rbee.git"});
    let task = json!({"model": MODEL, "node": "localhost", "prompt": "Hi", "max_tokens": 1,
        "temperature": 0});
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1, "temperature": 0});
    vec![
        Route::get(queen::HEALTH),
        Route::post(queen::BEEHIVES_ADD, node).guarded(&[
            "node_name",
            "ssh_host",
            "ssh_user",
            "install_path",
        ]),
        Route::get(queen::BEEHIVES_LIST),
        Route::post(queen::BEEHIVES_REMOVE, json!({"node_name": "fuzz-node"})),
        Route::post(queen::BEEHIVES_INSTALL, json!({"node_name": "fuzz-node"}))
            .guarded(&["node_name"]),
        Route::post(queen::BEEHIVES_STOP, json!({"node_name": "localhost"}))
            .guarded(&["node_name"]),
        Route::get(queen::DASHBOARD),
        Route::get(queen::DASHBOARD_ASSET),
        Route::get(queen::LAB_EVENTS),
        Route::post(queen::TASKS, task)
            .guarded(&["model", "node", "prompt", "messages", "task_id"]),
        Route::delete(queen::TASK),
        Route::get(queen::WORKERS_LIST),
        Route::get(queen::WORKERS_HEALTH).query(QueryKind::Node),
        Route::post(queen::WORKERS_SHUTDOWN, json!({"worker_id": WORKER_ID})),
        Route::get(queen::LOGS).query(QueryKind::NodeLogs),
        Route::get(queen::METRICS),
        Route::get(queen::MODELS_LIST).query(QueryKind::Node),
        Route::get(queen::MODELS_SHOW).query(QueryKind::ModelShow),
        Route::post(
            queen::MODELS_PULL,
            json!({"node": "localhost", "model": DOWNLOAD_REF}),
        )
        .guarded(&["node", "model"]),
        Route::post(
            queen::MODELS_REMOVE,
            json!({"node": "localhost", "model": MODEL}),
        )
        .guarded(&["node", "model"]),
        Route::post(
            queen::MODELS_SETTINGS,
            json!({"node": "localhost", "model": MODEL, "settings": {"context_length": 512}}),
        )
        .guarded(&["model", "settings"]),
        Route::get(queen::OPENAI_MODELS),
        Route::get(queen::OPENAI_MODEL),
        Route::post(queen::CHAT_COMPLETIONS, chat).guarded(&["model", "messages"]),
        Route::post(
            queen::COMPLETIONS,
            json!({"model": MODEL, "prompt": "Hi", "max_tokens": 1}),
        )
        .guarded(&["model", "prompt"]),
    ]
}

/// Whether `path` fits `template`, a `{param}` standing for one non-empty segment.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// The route a request reaches, matched as the router matches it (the path as sent).
pub fn route_at<'r>(routes: &'r [Route], path: &str) -> Option<&'r Route> {
    routes.iter().find(|r| matches(r.path, path))
}

/// A guarded route that `path` might reach, in any form a router could read it.
pub fn guarded_at<'r>(routes: &'r [Route], path: &str) -> Option<&'r Route> {
    let forms = forms(path);
    routes
        .iter()
        .filter(|r| r.guarded)
        .find(|r| forms.iter().any(|f| matches(r.path, f)))
}

/// Whether `path` might reach a shutdown route.
pub fn excluded(path: &str) -> bool {
    forms(path)
        .iter()
        .any(|f| EXCLUDED.iter().any(|e| matches(e, f)))
}

/// The path as sent, percent-decoded, and with empty segments dropped; each lower-cased
/// and without a trailing slash. Deliberately more than any router matches.
fn forms(path: &str) -> Vec<String> {
    let decoded = percent_decoded(path);
    let collapsed: String = decoded
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{s}"))
        .collect();
    [path.to_owned(), decoded, collapsed]
        .into_iter()
        .map(|p| p.trim_end_matches('/').to_lowercase())
        .collect()
}

fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
