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

mod generate;
mod judge;
mod routes;

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
