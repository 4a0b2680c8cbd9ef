//! Generated malformed requests at every route of a running worker, hive and queen.
//!
//! Each test starts one daemon (the queen together with the `localhost` hive and worker that
//! its first task starts) and sends it `RBEE_FUZZ_COUNT` requests (default 2000), drawn one
//! after the other from a generator seeded with `RBEE_FUZZ_SEED` (default 42): any method, at
//! a real route or a mangled path, with garbage queries, right and wrong keys, and a body that
//! is missing, empty, not JSON, the wrong shape, a valid request mutated, or oversized.
//!
//! The rules, for every answer: it comes within 5 s (for an event stream, its headers: a
//! followed log may stay open); it is no 5xx but the few `docs/api.md` documents for the route
//! ([`judge::DOCUMENTED_5XX`]); every error (status >= 400; HEAD answers have no body) carries
//! the rbee error envelope, or `openai::ErrorResponse` on the OpenAI routes. Afterwards every
//! daemon still runs and answers its health route and a request with its key.
//!
//! No request may start real work or end a daemon: the shutdown routes are left out (and a
//! mangled path that names one is replaced), and every body bound for a route that would start
//! inference, a task, a download, a worker or an SSH setup is made invalid by an unknown field
//! or a field of the wrong type ([`routes::Route::guarded`]).
//!
//! A failure names the seed and the request's index. The generator never looks at answers, so
//! the same seed makes the same requests; `RBEE_FUZZ_COUNT=<index + 1>` replays up to one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use rbee_api::queen::TaskEvent;
use rbee_api::routes::{hive as hive_routes, queen as queen_routes, worker as worker_routes};
use rbee_api::sse::SseEvent;
use rbee_testkit::{Log, Started, alive, model_path, read_sse};
use serde_json::json;
use tokio::process::Command;

use self::generate::{FuzzRequest, Generator};
use self::judge::{Answer, Exchange, Verdict};
use self::routes::Route;
use crate::support::{Queen, bin_dir};

const WORKER_KEY: &str = "fuzz-worker-key";
const HIVE_KEY: &str = "fuzz-hive-key";
const QUEEN_KEY: &str = "fuzz-queen-key";
const DEFAULT_SEED: u64 = 42;
const DEFAULT_COUNT: usize = 2000;
/// Every answer must come within this; there is no retry.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Failures shown in full in a report (all are counted by route and rule).
const SHOWN: usize = 12;

#[tokio::test]
async fn malformed_requests_never_crash_the_worker_and_are_answered_in_the_envelope() {
    let worker = start_worker().await;
    fuzz(&Target {
        daemon: Daemon::Worker,
        test: "malformed_requests_never_crash_the_worker_and_are_answered_in_the_envelope",
        base: worker.url.clone(),
        key: WORKER_KEY,
        routes: routes::worker(),
        health: worker_routes::HEALTH,
        probe: worker_routes::READY,
        processes: vec![("llm-worker-rbee".to_owned(), worker.child.id().unwrap())],
        log: Some(worker.log.clone()),
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_never_crash_the_hive_and_are_answered_in_the_envelope() {
    let data = tempfile::tempdir().unwrap();
    let hive = start_hive(data.path()).await;
    fuzz(&Target {
        daemon: Daemon::Hive,
        test: "malformed_requests_never_crash_the_hive_and_are_answered_in_the_envelope",
        base: hive.url.clone(),
        key: HIVE_KEY,
        routes: routes::hive(),
        health: hive_routes::HEALTH,
        probe: hive_routes::WORKERS_LIST,
        processes: vec![("rbee-hive".to_owned(), hive.child.id().unwrap())],
        log: Some(hive.log.clone()),
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_never_crash_the_queen_or_its_hive_and_are_answered_in_the_envelope() {
    // A long idle timeout keeps the first task's worker up however long the run takes.
    let queen = Queen::start_local(
        &["--api-key", QUEEN_KEY],
        &[("RBEE_QUEEN_LOCAL_HIVE_ARGS", "--idle-timeout 1h")],
    )
    .await;
    run_first_task(&queen).await;
    fuzz(&Target {
        daemon: Daemon::Queen,
        test: "malformed_requests_never_crash_the_queen_or_its_hive_and_are_answered_in_the_envelope",
        base: queen.url.clone(),
        key: QUEEN_KEY,
        routes: routes::queen(),
        health: queen_routes::HEALTH,
        probe: queen_routes::WORKERS_LIST,
        processes: daemons_of(queen.child.id().unwrap()),
        log: None,
    })
    .await;
}

/// A worker on the default model, its model loaded.
async fn start_worker() -> Started {
    let mut cmd = Command::new(bin_dir().join("llm-worker-rbee"));
    cmd.arg("--model").arg(model_path()).args([
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--api-key",
        WORKER_KEY,
    ]);
    let worker = rbee_testkit::start_daemon(&mut cmd).await;
    // The loading log is replayed, and ends with `ready` once the model is loaded.
    let progress = reqwest::Client::new()
        .get(format!("{}{}", worker.url, worker_routes::LOADING_PROGRESS))
        .bearer_auth(WORKER_KEY)
        .send()
        .await
        .unwrap();
    let frames = read_sse(progress).await;
    assert_eq!(
        frames.last().map(|f| f.event.as_str()),
        Some("ready"),
        "{frames:?}\nworker log:\n{}",
        worker.log.text()
    );
    worker
}

/// A hive with an empty catalog, whose downloads could reach no hub.
async fn start_hive(data: &Path) -> Started {
    let mut cmd = Command::new(bin_dir().join("rbee-hive"));
    cmd.args([
        "daemon",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--api-key",
        HIVE_KEY,
    ])
    .arg("--data-dir")
    .arg(data)
    .arg("--worker-bin")
    .arg(bin_dir().join("llm-worker-rbee"))
    .args(["--worker-host", "127.0.0.1"])
    .args([
        "--worker-port-start",
        &rbee_testkit::free_port().to_string(),
    ])
    .args(["--hf-endpoint", "http://127.0.0.1:9"])
    .env("XDG_DATA_HOME", data)
    .env_remove("HF_TOKEN")
    .env_remove("HF_ENDPOINT");
    rbee_testkit::start_daemon(&mut cmd).await
}

/// Runs one short task on `localhost`, so that the queen starts its hive and the hive a
/// worker: the queen's routes that relay to them are then live.
async fn run_first_task(queen: &Queen) {
    let resp = queen
        .post(queen_routes::TASKS)
        .bearer_auth(QUEEN_KEY)
        .json(&json!({
            "node": "localhost",
            "model": format!("file:{}", model_path().display()),
            "prompt": "Hi",
            "max_tokens": 1,
            "temperature": 0
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events: Vec<TaskEvent> = read_sse(resp)
        .await
        .iter()
        .filter_map(TaskEvent::from_frame)
        .map(Result::unwrap)
        .collect();
    assert!(
        events.iter().any(|e| matches!(e, TaskEvent::End(_))),
        "the first task did not end: {events:?}"
    );
}

/// The queen (`pid`) and the hive and worker it runs, by name.
fn daemons_of(pid: u32) -> Vec<(String, u32)> {
    let mut found = vec![("queen-rbee".to_owned(), pid)];
    for child in rbee_testkit::descendants(pid) {
        let name = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
        let name = name.trim();
        if ["rbee-hive", "llm-worker-rbee"].contains(&name) {
            found.push((name.to_owned(), child));
        }
    }
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"rbee-hive") && names.contains(&"llm-worker-rbee"),
        "the first task left no hive and worker running: {found:?}"
    );
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    Worker,
    Hive,
    Queen,
}

/// A running daemon under fuzz, and what must survive it.
struct Target {
    daemon: Daemon,
    /// The test's name, for the replay hint.
    test: &'static str,
    base: String,
    key: &'static str,
    routes: Vec<Route>,
    /// Answered without a key.
    health: &'static str,
    /// A valid `GET` with the key, answered `200`.
    probe: &'static str,
    /// Every process that must still run afterwards: `(name, pid)`.
    processes: Vec<(String, u32)>,
    /// The daemon's stderr, shown if it dies.
    log: Option<Log>,
}

impl Target {
    /// A process of the target that no longer runs.
    fn gone(&self) -> Option<&(String, u32)> {
        self.processes.iter().find(|(_, pid)| !alive(*pid))
    }
}

/// Sends the generated requests one by one and judges each answer; panics with a report if
/// any broke a rule, or a daemon died.
async fn fuzz(target: &Target) {
    let seed = env_or("RBEE_FUZZ_SEED", DEFAULT_SEED);
    let count = env_or("RBEE_FUZZ_COUNT", DEFAULT_COUNT);
    let client = fuzz_client();
    let mut generator = Generator::new(seed, target);
    let mut run = Run::default();
    for index in 0..count {
        let request = generator.request(index);
        match judge::exchange(&client, &request).await {
            Exchange::Answered(answer) => {
                *run.statuses.entry(answer.status).or_default() += 1;
                if let Err(verdict) = judge::judge(target.daemon, &request, &answer) {
                    run.fail(target, &request, Some(&answer), verdict);
                }
            }
            Exchange::Failed(verdict) => run.fail(target, &request, None, verdict),
            Exchange::ClosedEarly => run.closed_early += 1,
            Exchange::Unsendable(why) => run.unsendable.push(format!("#{index}: {why}")),
        }
        if let Some((name, pid)) = target.gone() {
            let mut problems = vec![format!(
                "{name} (pid {pid}) died by request #{index}:\n  {}",
                request.describe()
            )];
            problems.extend(
                target
                    .log
                    .as_ref()
                    .map(|log| format!("its log ends:\n{}", tail(&log.text(), 30))),
            );
            panic!("{}", run.report(target, seed, index + 1, &problems));
        }
    }
    let problems = survival(target, &client).await;
    run.finish(target, seed, count, problems);
}

/// A client that follows no redirect, uses no proxy, and opens a fresh connection per
/// request, so that an answer that closes its connection (after an oversized body) cannot
/// break the next request.
fn fuzz_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// After the run: every process still runs, and a health request and a request with the key
/// are answered `200`.
async fn survival(target: &Target, client: &reqwest::Client) -> Vec<String> {
    let mut problems: Vec<String> = target
        .processes
        .iter()
        .filter(|(_, pid)| !alive(*pid))
        .map(|(name, pid)| format!("{name} (pid {pid}) no longer runs after the run"))
        .collect();
    for (path, key) in [(target.health, None), (target.probe, Some(target.key))] {
        let mut req = client.get(format!("{}{path}", target.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        match tokio::time::timeout(ANSWER_WITHIN, req.send()).await {
            Ok(Ok(resp)) if resp.status() == 200 => {}
            Ok(Ok(resp)) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                problems.push(format!(
                    "GET {path} after the run answered {status}: {body}"
                ));
            }
            Ok(Err(e)) => problems.push(format!(
                "GET {path} after the run failed: {}",
                judge::causes(&e)
            )),
            Err(_) => problems.push(format!("GET {path} after the run: no answer within 5 s")),
        }
    }
    problems
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a run has seen so far.
#[derive(Default)]
struct Run {
    failures: Vec<Failure>,
    statuses: BTreeMap<u16, usize>,
    /// Requests the HTTP client refused to build (a generator problem, not the daemon's).
    unsendable: Vec<String>,
    /// Bodies over the 2 MB limit whose connection the daemon closed before reading them all
    /// (it answers without the body, as HTTP allows; the client then fails to write).
    closed_early: usize,
}

struct Failure {
    index: usize,
    /// Method, route reached and rule broken: how failures are counted.
    group: String,
    text: String,
}

impl Run {
    fn fail(
        &mut self,
        target: &Target,
        request: &FuzzRequest,
        answer: Option<&Answer>,
        verdict: Verdict,
    ) {
        let route =
            routes::route_at(&target.routes, request.url.path()).map_or("<no route>", |r| r.path);
        let detail = if verdict.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", verdict.detail)
        };
        let text = format!(
            "  {}      answer: {}\n      broke: {}{detail}\n",
            request.describe(),
            answer.map_or_else(|| "none".to_owned(), Answer::describe),
            verdict.rule,
        );
        self.failures.push(Failure {
            index: request.index,
            group: format!("{} {route}: {}", request.method, verdict.rule),
            text,
        });
    }

    fn report(&self, target: &Target, seed: u64, sent: usize, problems: &[String]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:?}: {} of {sent} generated requests (seed {seed}) broke the rules; answers by status: {:?}; oversized bodies cut off: {}",
            target.daemon,
            self.failures.len(),
            self.statuses,
            self.closed_early
        );
        let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for f in &self.failures {
            groups.entry(f.group.as_str()).or_insert((0, f.index)).0 += 1;
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
        let _ = writeln!(
            out,
            "failures by method, route reached and rule (count, first):"
        );
        for (group, (n, first)) in &groups {
            let _ = writeln!(out, "  {n:>5}  {group}  (#{first})");
        }
        let shown = self.failures.len().min(SHOWN);
        let _ = writeln!(out, "the first {shown} in full:");
        for f in self.failures.iter().take(SHOWN) {
            out.push_str(&f.text);
        }
        for p in problems {
            let _ = writeln!(out, "{p}");
        }
        let _ = writeln!(
            out,
            "replay: RBEE_FUZZ_SEED={seed} RBEE_FUZZ_COUNT=<index + 1> cargo test -p queen-rbee --test queen {}",
            target.test
        );
        out
    }

    fn finish(&self, target: &Target, seed: u64, count: usize, mut problems: Vec<String>) {
        if self.unsendable.len() * 10 > count {
            problems.push(format!(
                "{} requests could not be built, so the run proves little: {:?}",
                self.unsendable.len(),
                &self.unsendable[..self.unsendable.len().min(5)]
            ));
        }
        if self.failures.is_empty() && problems.is_empty() {
            println!(
                "{:?}: {count} generated requests (seed {seed}) kept the rules; answers by status: {:?}; {} could not be built",
                target.daemon,
                self.statuses,
                self.unsendable.len()
            );
            return;
        }
        panic!("{}", self.report(target, seed, count, &problems));
    }
}

/// Every route of each daemon, with a valid body to mutate, and which ones must never get a
/// valid body.
mod routes {
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
        let inference =
            json!({"prompt": "Hello", "max_tokens": 1, "temperature": 0.0, "stop": ["\n"]});
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
        let (t, p): (Vec<&str>, Vec<&str>) =
            (template.split('/').collect(), path.split('/').collect());
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
}

/// The seeded generator: each request from one route of the target, bent at random.
mod generate {
    use rand::rngs::StdRng;
    use rand::seq::IndexedRandom;
    use rand::{Rng, SeedableRng};
    use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
    use reqwest::{Method, Url};
    use serde_json::{Value, json};

    use super::Target;
    use super::routes::{self, QueryKind, Route};

    /// Over every body limit the daemons have (axum's default is 2 MB).
    const OVERSIZED: usize = 3 << 20;
    /// The daemons' request body limit (axum's default).
    pub const BODY_LIMIT: usize = 2 << 20;
    const METHODS: [Method; 7] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ];
    const VALID_IDS: &[&str] = &[
        "3f2c0000-0000-4000-8000-000000000000",
        "job-1",
        routes::WORKER_ID,
        "a",
    ];
    const NASTY: &[&str] = &[
        "..",
        ".",
        "../",
        "../../../../etc/passwd",
        "%00",
        "%2e%2e",
        "%2F",
        "%252e",
        "%",
        "%zz",
        "-rf",
        "--help",
        "*",
        " ",
        "\u{0}",
        "\t",
        "\r\n",
        "ü",
        "😀",
        "日本語",
        "\u{202e}",
        "\u{feff}",
        "\\",
        "$(id)",
        "`id`",
        ";",
        "'",
        "\"",
        "<script>",
        "{id}",
        "{job_id}",
        ":",
        "@",
        "~",
        "null",
        "NaN",
        "-1",
        "0",
        "18446744073709551616",
        "localhost",
        "hf:a/b",
        "file:/etc/passwd",
    ];
    /// Not JSON, each for its own reason.
    const BROKEN: &[&str] = &[
        "{",
        "}",
        "{\"a\":}",
        "{'a': 1}",
        "{\"a\": 1,}",
        "[1, 2",
        "{\"max_tokens\": 1e999}",
        "{\"temperature\": NaN}",
        "{\"top_p\": Infinity}",
        "nul",
        "\u{feff}{}",
        "{\"prompt\": \"\\ud800\"}",
        "{\"prompt\": \"\u{1}\"}",
        "{}{}",
        "{\"a\" 1}",
        "{\"a\":1}}",
        "\"unterminated",
    ];
    /// Appended to valid JSON: never whitespace, so the whole is never valid.
    const SUFFIXES: &[&str] = &["x", ",", "}", "]", "{}", "\u{0}", "null"];
    const SHAPES: &[&str] = &[
        "[]",
        "[1, 2, 3]",
        "\"text\"",
        "42",
        "-0",
        "true",
        "null",
        "{}",
        "{\"\": \"\"}",
        "[{}]",
        "[[]]",
        "[null, \"Hi\"]",
        "{\"error\": {\"code\": \"INTERNAL\", \"message\": \"x\"}}",
    ];
    /// Field names no request struct knows (they all refuse unknown fields).
    const UNKNOWN_FIELDS: &[&str] = &["promt", "__proto__", "fuzz", "", "MAX_TOKENS", "model_ref "];
    const CONTENT_TYPES: &[Option<&str>] = &[
        None,
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=fuzz"),
        Some("APPLICATION/JSON"),
        Some("application/vnd.rbee+json"),
        Some("application/json, text/html"),
        Some(""),
    ];
    const BOOLS: &[&str] = &["true", "false", "1", "yes", "TRUE", ""];
    const NODES: &[&str] = &["localhost", "fuzz-node", "", "-rf", "a.b_c-d"];
    const SOURCES: &[&str] = &[
        "hive",
        "worker:worker-0a1b2c3d4e5f",
        "worker:",
        "worker:a b",
        "queen",
    ];
    const DOWNLOAD_IDS: &[&str] = &[
        routes::DOWNLOAD_REF,
        "file:/models/fuzz.gguf",
        "hf:a/b",
        "llama3",
        "",
    ];

    /// One generated request, and how it was made.
    pub struct FuzzRequest {
        pub index: usize,
        pub method: Method,
        pub url: Url,
        pub authorization: Option<Vec<u8>>,
        pub content_type: Option<&'static str>,
        pub body: Option<Vec<u8>>,
        /// The route it was made from, then each choice that bent it.
        pub notes: Vec<String>,
    }

    impl FuzzRequest {
        pub fn build(&self, client: &reqwest::Client) -> reqwest::Result<reqwest::Request> {
            let mut builder = client.request(self.method.clone(), self.url.clone());
            if let Some(value) = self.authorization.as_deref() {
                let value =
                    HeaderValue::from_bytes(value).expect("generated header bytes are valid");
                builder = builder.header(AUTHORIZATION, value);
            }
            if let Some(content_type) = self.content_type {
                builder = builder.header(CONTENT_TYPE, content_type);
            }
            if let Some(body) = &self.body {
                builder = builder.body(body.clone());
            }
            builder.build()
        }

        pub fn describe(&self) -> String {
            let auth = self
                .authorization
                .as_deref()
                .map_or_else(|| "none".to_owned(), snippet);
            let body = self
                .body
                .as_deref()
                .map_or_else(|| "none".to_owned(), snippet);
            format!(
                "#{} {} {}\n      authorization: {auth}; content-type: {:?}\n      made as: {}\n      body: {body}\n",
                self.index,
                self.method,
                snippet(self.url.as_str().as_bytes()),
                self.content_type,
                self.notes.join("; ")
            )
        }
    }

    /// At most 240 bytes of `bytes`, as text, with the full length when cut.
    pub fn snippet(bytes: &[u8]) -> String {
        const SHOWN: usize = 240;
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
        if bytes.len() > SHOWN {
            format!("{text:?}… ({} bytes)", bytes.len())
        } else {
            format!("{text:?}")
        }
    }

    pub struct Generator<'a> {
        rng: StdRng,
        target: &'a Target,
    }

    impl<'a> Generator<'a> {
        pub fn new(seed: u64, target: &'a Target) -> Self {
            Self {
                rng: StdRng::seed_from_u64(seed),
                target,
            }
        }

        pub fn request(&mut self, index: usize) -> FuzzRequest {
            let target = self.target;
            let route = target
                .routes
                .choose(&mut self.rng)
                .expect("every daemon has routes");
            let mut notes = vec![format!("from {} {}", route.method, route.path)];
            let method = self.method(route);
            let url = self.url(route, &mut notes);
            let guard = if route.guarded {
                Some(route)
            } else {
                routes::guarded_at(&target.routes, url.path())
            };
            let authorization = self.authorization(&mut notes);
            let content_type = self.content_type();
            let body = self.body(route, guard, &mut notes);
            FuzzRequest {
                index,
                method,
                url,
                authorization,
                content_type,
                body,
                notes,
            }
        }

        fn method(&mut self, route: &Route) -> Method {
            if self.rng.random_bool(0.6) {
                route.method.clone()
            } else {
                METHODS.choose(&mut self.rng).expect("methods").clone()
            }
        }

        fn url(&mut self, route: &Route, notes: &mut Vec<String>) -> Url {
            let mut url = Url::parse(&self.target.base).expect("the daemon's URL");
            let path = self.path(route, notes);
            url.set_path(&path);
            self.query(&mut url, route.query, notes);
            if routes::excluded(url.path()) {
                url.set_path("/fuzz/not-a-shutdown-route");
                notes.push("path replaced: it named a shutdown route".to_owned());
            }
            url
        }

        /// The route's path, or (one time in three) a mangled one.
        fn path(&mut self, route: &Route, notes: &mut Vec<String>) -> String {
            let valid = self.fill(route.path, false);
            if self.rng.random_bool(0.65) {
                return valid;
            }
            let (path, how) = match self.rng.random_range(0..7) {
                0 if route.path.contains('{') => {
                    (self.fill(route.path, true), "garbage path parameter")
                }
                0 | 1 => (format!("{valid}/{}", self.garbage()), "an extra segment"),
                2 => (self.replace_segment(&valid), "a segment replaced"),
                3 => (format!("{valid}/"), "a trailing slash"),
                4 => (valid.replacen('/', "//", 2), "doubled slashes"),
                5 => (valid.to_uppercase(), "upper case"),
                _ => {
                    let segments = self.rng.random_range(1..4);
                    (
                        (0..segments)
                            .map(|_| format!("/{}", self.garbage()))
                            .collect(),
                        "a random path",
                    )
                }
            };
            notes.push(how.to_owned());
            path
        }

        /// `template` with each `{param}` replaced by a valid-looking id, or by garbage.
        fn fill(&mut self, template: &str, garbage: bool) -> String {
            template
                .split('/')
                .map(|s| match (s.starts_with('{'), garbage) {
                    (false, _) => s.to_owned(),
                    (true, true) => self.garbage(),
                    (true, false) => VALID_IDS.choose(&mut self.rng).expect("ids").to_string(),
                })
                .collect::<Vec<_>>()
                .join("/")
        }

        fn replace_segment(&mut self, path: &str) -> String {
            let mut segments: Vec<String> = path.split('/').map(str::to_owned).collect();
            // Segment 0 is the empty one before the leading slash.
            let i = self.rng.random_range(1..segments.len().max(2));
            if i < segments.len() {
                segments[i] = self.garbage();
            }
            segments.join("/")
        }

        /// A nasty path segment or value: traversal, NULs, flags, unicode, very long.
        fn garbage(&mut self) -> String {
            match self.rng.random_range(0..6) {
                0..=2 => NASTY.choose(&mut self.rng).expect("nasty").to_string(),
                3 => {
                    let c = *['A', '.', '%', 'é', '/']
                        .choose(&mut self.rng)
                        .expect("chars");
                    std::iter::repeat_n(c, self.rng.random_range(256..8192)).collect()
                }
                4 => {
                    let len = self.rng.random_range(1..40);
                    (0..len)
                        .map(|_| char::from(self.rng.random_range(0x21u8..0x7f)))
                        .collect()
                }
                _ => {
                    let len = self.rng.random_range(1..20);
                    (0..len).map(|_| self.rng.random::<char>()).collect()
                }
            }
        }

        /// The route's own parameters with good and bad values, or a garbage query.
        fn query(&mut self, url: &mut Url, kind: QueryKind, notes: &mut Vec<String>) {
            if kind != QueryKind::None && self.rng.random_bool(0.7) {
                let pairs = self.query_pairs(kind);
                if !pairs.is_empty() {
                    let mut query = url.query_pairs_mut();
                    for (name, value) in &pairs {
                        query.append_pair(name, value);
                    }
                }
                return;
            }
            if self.rng.random_bool(0.3) {
                let raw = self.garbage_query();
                url.set_query(Some(&raw));
                notes.push("a garbage query".to_owned());
            }
        }

        fn query_pairs(&mut self, kind: QueryKind) -> Vec<(&'static str, String)> {
            let fields: Vec<(&'static str, &'static [&'static str])> = match kind {
                QueryKind::None => Vec::new(),
                QueryKind::Download => vec![("id", DOWNLOAD_IDS)],
                QueryKind::HiveLogs => vec![("follow", BOOLS), ("source", SOURCES)],
                QueryKind::Node => vec![("node", NODES)],
                QueryKind::NodeLogs => vec![("node", NODES), ("follow", BOOLS)],
                QueryKind::ModelRef => vec![("ref", DOWNLOAD_IDS)],
                QueryKind::ModelShow => vec![("model", DOWNLOAD_IDS), ("node", NODES)],
            };
            let mut pairs = Vec::new();
            for (name, values) in fields {
                if self.rng.random_bool(0.15) {
                    continue; // left out
                }
                let value = if self.rng.random_bool(0.8) {
                    values.choose(&mut self.rng).expect("values").to_string()
                } else {
                    self.garbage()
                };
                pairs.push((name, value));
            }
            pairs
        }

        fn garbage_query(&mut self) -> String {
            match self.rng.random_range(0..6) {
                0 => "=".to_owned(),
                1 => "&&&=&".to_owned(),
                2 => {
                    let (name, value) = (self.garbage(), self.garbage());
                    format!("{name}={value}")
                }
                3 => "id=%ZZ&id=1&id&node=%00".to_owned(),
                4 => format!("follow={}", "t".repeat(self.rng.random_range(100..6000))),
                _ => "a[b]=c&a[]=d&node[]=x".to_owned(),
            }
        }

        /// The `Authorization` header: usually the right key, else a wrong one or a wrong form.
        fn authorization(&mut self, notes: &mut Vec<String>) -> Option<Vec<u8>> {
            let key = self.target.key;
            let (value, how) = match self.rng.random_range(0..20) {
                0..=10 => (Some(format!("Bearer {key}").into_bytes()), "the right key"),
                11 => (None, "no key"),
                12 => (Some(b"Bearer wrong-key".to_vec()), "a wrong key"),
                13 => (Some(b"Bearer ".to_vec()), "an empty bearer"),
                14 => (
                    Some(format!("bearer {key}").into_bytes()),
                    "lower-case bearer",
                ),
                15 => (
                    Some(format!("Basic {key}").into_bytes()),
                    "the Basic scheme",
                ),
                16 => (
                    Some(format!("Bearer  {key} ").into_bytes()),
                    "the key padded",
                ),
                17 => (
                    Some(format!("Bearer {key}{key}").into_bytes()),
                    "the key twice",
                ),
                18 => {
                    let huge = "k".repeat(self.rng.random_range(1000..16000));
                    (Some(format!("Bearer {huge}").into_bytes()), "a huge key")
                }
                _ => (Some(self.header_bytes()), "garbage"),
            };
            notes.push(format!("auth: {how}"));
            value
        }

        /// Bytes a header value may hold (visible ASCII, space, and bytes above 0x7f).
        fn header_bytes(&mut self) -> Vec<u8> {
            let len = self.rng.random_range(1..64);
            (0..len)
                .map(|_| match self.rng.random_range(0x20u8..=0xff) {
                    0x7f => b'x',
                    b => b,
                })
                .collect()
        }

        fn content_type(&mut self) -> Option<&'static str> {
            if self.rng.random_bool(0.6) {
                Some("application/json")
            } else {
                *CONTENT_TYPES.choose(&mut self.rng).expect("content types")
            }
        }

        /// None, empty, not JSON, the wrong shape, the route's body mutated, or oversized;
        /// made invalid when `guard` is a guarded route.
        fn body(
            &mut self,
            route: &Route,
            guard: Option<&Route>,
            notes: &mut Vec<String>,
        ) -> Option<Vec<u8>> {
            let base = route.body.clone().unwrap_or_else(|| json!({}));
            let mut value = match self.rng.random_range(0..100) {
                0..15 => {
                    notes.push("no body".to_owned());
                    return None;
                }
                15..20 => {
                    notes.push("an empty body".to_owned());
                    return Some(Vec::new());
                }
                20..40 => return Some(self.invalid_json(&base, notes)),
                40..52 => self.wrong_shape(notes),
                52..94 => self.mutated(base, notes),
                94..98 => {
                    notes.push("the valid body".to_owned());
                    base
                }
                98 => {
                    notes.push("a 3 MB JSON string".to_owned());
                    json!({"prompt": "a".repeat(OVERSIZED)})
                }
                _ => {
                    notes.push("3 MB that are not JSON".to_owned());
                    return Some(vec![b'x'; OVERSIZED]);
                }
            };
            if let Some(guard) = guard {
                self.poison(&mut value, guard.poison, notes);
            }
            Some(serde_json::to_vec(&value).expect("a JSON value serializes"))
        }

        /// Bytes that are not JSON (so no guard is needed).
        fn invalid_json(&mut self, base: &Value, notes: &mut Vec<String>) -> Vec<u8> {
            let text = serde_json::to_vec(base).expect("a JSON value serializes");
            let (bytes, how) = match self.rng.random_range(0..5) {
                0 => {
                    let cut = self.rng.random_range(0..text.len());
                    (text[..cut].to_vec(), "truncated JSON")
                }
                1 => {
                    let len = self.rng.random_range(0..512);
                    let mut bytes = vec![0xffu8];
                    bytes.extend((0..len).map(|_| self.rng.random::<u8>()));
                    (bytes, "random bytes")
                }
                2 => (
                    BROKEN
                        .choose(&mut self.rng)
                        .expect("broken")
                        .as_bytes()
                        .to_vec(),
                    "broken JSON",
                ),
                3 => (
                    "[".repeat(self.rng.random_range(129..100_000)).into_bytes(),
                    "deep, unclosed nesting",
                ),
                _ => {
                    let mut bytes = text;
                    bytes.extend_from_slice(
                        SUFFIXES.choose(&mut self.rng).expect("suffixes").as_bytes(),
                    );
                    (bytes, "trailing garbage")
                }
            };
            notes.push(how.to_owned());
            bytes
        }

        fn wrong_shape(&mut self, notes: &mut Vec<String>) -> Value {
            let text = SHAPES.choose(&mut self.rng).expect("shapes");
            notes.push(format!("the wrong shape {text}"));
            serde_json::from_str(text).expect("the shapes are JSON")
        }

        /// `value` with one to three fields dropped, added, or given a nasty value.
        fn mutated(&mut self, mut value: Value, notes: &mut Vec<String>) -> Value {
            if let Value::Object(map) = &mut value {
                for _ in 0..self.rng.random_range(1..=3) {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    let key = keys.choose(&mut self.rng).cloned();
                    match (self.rng.random_range(0..10), key) {
                        (0, Some(key)) => {
                            map.remove(&key);
                            notes.push(format!("dropped `{key}`"));
                        }
                        (1, _) | (_, None) => {
                            let name = UNKNOWN_FIELDS
                                .choose(&mut self.rng)
                                .expect("names")
                                .to_string();
                            let (nasty, what) = self.nasty_value();
                            notes.push(format!("unknown field `{name}` = {what}"));
                            map.insert(name, nasty);
                        }
                        (_, Some(key)) => {
                            let (nasty, what) = self.nasty_value();
                            notes.push(format!("`{key}` = {what}"));
                            map.insert(key, nasty);
                        }
                    }
                }
            }
            value
        }

        /// A value no field expects: out of range, the wrong type, huge, or deeply nested.
        fn nasty_value(&mut self) -> (Value, String) {
            match self.rng.random_range(0..14) {
                0 => (json!(u64::MAX), "u64::MAX".to_owned()),
                1 => (json!(1e300), "1e300".to_owned()),
                2 => (json!(i64::MIN), "i64::MIN".to_owned()),
                3 => (json!(-1), "-1".to_owned()),
                4 => (json!(0.5), "0.5".to_owned()),
                5 => {
                    let s = *["NaN", "Infinity", "-Infinity", "1e999"]
                        .choose(&mut self.rng)
                        .expect("s");
                    (json!(s), format!("{s:?} as a string"))
                }
                6 => {
                    let n = self.rng.random_range(1_000..100_000);
                    (json!("x".repeat(n)), format!("a {n}-character string"))
                }
                7 => {
                    let depth = self.rng.random_range(50..400);
                    (nested(depth), format!("{depth} levels of nesting"))
                }
                8 => (Value::Null, "null".to_owned()),
                9 => (json!(true), "true".to_owned()),
                10 => (
                    json!({"nested": {"deeper": [1, 2]}}),
                    "an object".to_owned(),
                ),
                11 => (json!([1, "two", null]), "a mixed list".to_owned()),
                12 => (json!(""), "an empty string".to_owned()),
                _ => {
                    let garbage = self.garbage();
                    (json!(garbage), "a garbage string".to_owned())
                }
            }
        }

        /// Makes a body bound for a guarded route invalid, whatever was done to it before:
        /// an unknown field or a field of the wrong type for an object, an object as the
        /// first (positional) field for a list. A scalar is never a request.
        fn poison(&mut self, value: &mut Value, fields: &[&str], notes: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if !fields.is_empty() && self.rng.random_bool(0.5) {
                        let field = *fields.choose(&mut self.rng).expect("fields");
                        let bad = match self.rng.random_range(0..4) {
                            0 => json!(7),
                            1 => json!(false),
                            2 => json!({"x": 1}),
                            _ => json!(-2.5),
                        };
                        notes.push(format!("made invalid: `{field}` = {bad}"));
                        map.insert(field.to_owned(), bad);
                    } else {
                        let name = *UNKNOWN_FIELDS.choose(&mut self.rng).expect("names");
                        notes.push(format!("made invalid: unknown field `{name}`"));
                        map.insert(name.to_owned(), json!(1));
                    }
                }
                Value::Array(items) => {
                    items.insert(0, json!({}));
                    notes.push("made invalid: an object as the first element".to_owned());
                }
                _ => {}
            }
        }
    }

    fn nested(depth: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..depth {
            value = json!([value]);
        }
        value
    }
}

/// Sending a request, and the rules its answer must keep.
mod judge {
    use rbee_api::openai::ErrorResponse;
    use rbee_api::routes::{queen, worker};
    use rbee_api::{ErrorCode, ErrorEnvelope};
    use reqwest::Method;
    use reqwest::header::CONTENT_TYPE;
    use tokio::time::{Instant, timeout_at};

    use super::generate::{BODY_LIMIT, FuzzRequest, snippet};
    use super::{ANSWER_WITHIN, Daemon};

    /// The 5xx answers `docs/api.md` documents for a route, and this setup could meet. Any
    /// other 5xx breaks the rules.
    pub const DOCUMENTED_5XX: &[(Daemon, &str, u16, ErrorCode)] = &[
        // The worker refuses inference while its model loads or its slots are taken.
        (
            Daemon::Worker,
            worker::INFERENCE,
            503,
            ErrorCode::ModelNotReady,
        ),
        (
            Daemon::Worker,
            worker::INFERENCE,
            503,
            ErrorCode::AllSlotsBusy,
        ),
        // The queen asked about `localhost` before its hive has started.
        (
            Daemon::Queen,
            queen::WORKERS_HEALTH,
            504,
            ErrorCode::ConnectionTimeout,
        ),
        (
            Daemon::Queen,
            queen::LOGS,
            504,
            ErrorCode::ConnectionTimeout,
        ),
    ];

    /// The queen's OpenAI-compatible routes, whose errors are `openai::ErrorResponse`.
    const OPENAI_PATHS: &[&str] = &[
        queen::OPENAI_MODELS,
        queen::OPENAI_MODEL,
        queen::CHAT_COMPLETIONS,
        queen::COMPLETIONS,
    ];

    pub struct Answer {
        pub status: u16,
        pub content_type: String,
        /// Empty for an event stream, whose body is not read.
        pub body: Vec<u8>,
    }

    impl Answer {
        pub fn describe(&self) -> String {
            format!(
                "{} {:?}: {}",
                self.status,
                self.content_type,
                snippet(&self.body)
            )
        }
    }

    /// A rule an answer broke, and what was seen.
    pub struct Verdict {
        pub rule: String,
        pub detail: String,
    }

    impl Verdict {
        fn new(rule: impl Into<String>, detail: impl Into<String>) -> Self {
            Self {
                rule: rule.into(),
                detail: detail.into(),
            }
        }
    }

    pub enum Exchange {
        Answered(Answer),
        /// No answer: too slow, or the connection failed.
        Failed(Verdict),
        /// The HTTP client refused to build the request.
        Unsendable(String),
        /// An oversized body the daemon stopped reading: the connection closed under the
        /// client's write (no hang, no crash; checked by liveness after every request).
        ClosedEarly,
    }

    /// Sends `request` and reads its answer, all within [`ANSWER_WITHIN`]; of an event
    /// stream, only the headers (a followed log stays open).
    pub async fn exchange(client: &reqwest::Client, request: &FuzzRequest) -> Exchange {
        let built = match request.build(client) {
            Ok(built) => built,
            Err(e) => return Exchange::Unsendable(causes(&e)),
        };
        let deadline = Instant::now() + ANSWER_WITHIN;
        let response = match timeout_at(deadline, client.execute(built)).await {
            Err(_) => return Exchange::Failed(Verdict::new("no answer within 5 s", "")),
            Ok(Err(e)) => {
                let why = causes(&e);
                let oversized = request.body.as_ref().is_some_and(|b| b.len() > BODY_LIMIT);
                if oversized && why.contains("error writing a body") {
                    return Exchange::ClosedEarly;
                }
                return Exchange::Failed(Verdict::new(
                    "a connection error instead of an answer",
                    why,
                ));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if status < 400 && content_type.starts_with("text/event-stream") {
            return Exchange::Answered(Answer {
                status,
                content_type,
                body: Vec::new(),
            });
        }
        match timeout_at(deadline, response.bytes()).await {
            Err(_) => Exchange::Failed(Verdict::new(
                format!("{status}, but its body not complete within 5 s"),
                "",
            )),
            Ok(Err(e)) => Exchange::Failed(Verdict::new(
                format!("{status}, but its body broke off"),
                causes(&e),
            )),
            Ok(Ok(body)) => Exchange::Answered(Answer {
                status,
                content_type,
                body: body.to_vec(),
            }),
        }
    }

    /// No undocumented 5xx; every error in the envelope (HEAD answers have no body).
    pub fn judge(daemon: Daemon, request: &FuzzRequest, answer: &Answer) -> Result<(), Verdict> {
        let status = answer.status;
        if status < 400 {
            return Ok(());
        }
        let path = request.url.path();
        let code = if request.method == Method::HEAD {
            None
        } else {
            Some(error_code(daemon, path, answer)?)
        };
        let documented = DOCUMENTED_5XX.iter().any(|(d, p, s, c)| {
            *d == daemon && *p == path && *s == status && code.is_none_or(|code| code == *c)
        });
        if status >= 500 && !documented {
            let code = code.map_or_else(String::new, |c| c.to_string());
            return Err(Verdict::new(format!("an undocumented {status}"), code));
        }
        Ok(())
    }

    /// The code of an error answer, which must be the rbee envelope, or on the OpenAI routes
    /// `openai::ErrorResponse` (the envelope plus `type` and `param`), whatever refused it.
    fn error_code(daemon: Daemon, path: &str, answer: &Answer) -> Result<ErrorCode, Verdict> {
        let status = answer.status;
        let openai = daemon == Daemon::Queen && OPENAI_PATHS.contains(&path);
        if openai {
            let e = serde_json::from_slice::<ErrorResponse>(&answer.body).map_err(|e| {
                Verdict::new(
                    format!("{status} without the OpenAI error object"),
                    e.to_string(),
                )
            })?;
            if e.error.message.is_empty() {
                return Err(Verdict::new(
                    format!("{status} with an empty error message"),
                    e.error.code.to_string(),
                ));
            }
            return Ok(e.error.code);
        }
        let envelope: ErrorEnvelope = serde_json::from_slice(&answer.body).map_err(|e| {
            Verdict::new(
                format!("{status} without the rbee error envelope"),
                e.to_string(),
            )
        })?;
        let code = envelope.error.code;
        if envelope.error.message.is_empty() {
            return Err(Verdict::new(
                format!("{status} with an empty error message"),
                code.to_string(),
            ));
        }
        Ok(code)
    }

    /// An error with every cause under it, on one line.
    pub fn causes(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
