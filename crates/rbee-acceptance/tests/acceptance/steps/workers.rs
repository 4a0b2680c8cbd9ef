//! Workers as the queen reports them, and the requests the suite sends itself.

use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{then, when};
use serde_json::Value;

use crate::world::{Rbee, assert_envelope, checked};

async fn workers_on(world: &Rbee, node: &str) -> Vec<Value> {
    world
        .workers()
        .await
        .into_iter()
        .filter(|w| w["node"] == node)
        .collect()
}

#[then(regex = r#"^within (\d+) s the queen lists no worker on "(\w+)"$"#)]
async fn no_worker_listed(world: &mut Rbee, secs: u64, node: String) {
    Rbee::eventually(
        &format!("no worker listed on {node}"),
        Duration::from_secs(secs),
        || async {
            let listed = workers_on(world, &node).await;
            if listed.is_empty() {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        },
    )
    .await;
}

#[then(regex = r#"^within (\d+) s the worker on "(\w+)" is idle$"#)]
async fn worker_idle(world: &mut Rbee, secs: u64, node: String) {
    Rbee::eventually(
        &format!("the worker on {node} idle"),
        Duration::from_secs(secs),
        || async {
            let listed = workers_on(world, &node).await;
            if listed.len() == 1 && listed[0]["state"] == "idle" {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        },
    )
    .await;
}

#[when(regex = r#"^I ask the queen's OpenAI API for a chat completion with model "(.+)"$"#)]
async fn openai_chat(world: &mut Rbee, model: String) {
    let req = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", world.queen_url))
        .json(&serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "Write a short story about a cat."}],
            "max_tokens": 16,
            "temperature": 0
        }));
    let (status, body) = checked(req).await;
    assert_eq!(status, 200, "{body}");
    world.answer = Some(body);
}

#[then("the answer is a chat completion with coherent text")]
async fn openai_answer(world: &mut Rbee) {
    let body = world.answer.as_ref().expect("an answer");
    assert_eq!(body["object"], "chat.completion", "{body}");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.split_whitespace().count() >= 8,
        "not a coherent answer: {body}"
    );
    assert_eq!(body["usage"]["completion_tokens"], 16, "{body}");
}

#[when(regex = r#"^I shut down the worker on "(\w+)" with `(.+)`$"#)]
async fn shutdown_worker(world: &mut Rbee, node: String, line: String) {
    let listed = workers_on(world, &node).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    world.run(&line.replace("<id>", &id)).await;
}

/// The base URL and key of a daemon named in a table: `queen`, `hive [with key]`,
/// `worker [with key]` (the hive and worker of workstation).
async fn target(world: &Rbee, daemon: &str) -> (String, Option<String>) {
    let with_key = daemon.ends_with("with key");
    match daemon.split_whitespace().next() {
        Some("queen") => (world.queen_url.clone(), None),
        Some("hive") => {
            let host = world.cluster.host("workstation");
            let pid = world
                .process_on("workstation", "rbee-hive")
                .first()
                .expect("a hive on workstation")
                .pid;
            let key = environment(pid, "RBEE_HIVE_API_KEY");
            (format!("http://{}:9200", host.ip), key.filter(|_| with_key))
        }
        Some("worker") => {
            let listed = workers_on(world, "workstation").await;
            let w = listed.first().expect("a worker on workstation");
            assert!(
                w.get("api_key").is_none(),
                "the queen hands out no worker key: {w}"
            );
            let pid = w["pid"].as_u64().expect("the worker's pid") as u32;
            (
                w["url"].as_str().unwrap().to_owned(),
                environment(pid, "RBEE_WORKER_API_KEY").filter(|_| with_key),
            )
        }
        other => panic!("unknown daemon {other:?}"),
    }
}

#[then("these requests fail with the error envelope:")]
async fn requests_fail(world: &mut Rbee, step: &Step) {
    let table = step.table.as_ref().expect("a table");
    for row in table.rows.iter().skip(1) {
        let [daemon, method, path, body, status, code] = &row[..] else {
            panic!("row {row:?} needs 6 cells");
        };
        let (base, key) = target(world, daemon).await;
        let mut req =
            reqwest::Client::new().request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if !body.is_empty() {
            req = req
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let (got, answer) = checked(req).await;
        assert_envelope(got, &answer, &answer.to_string());
        assert_eq!(
            (
                got.to_string(),
                answer["error"]["code"].as_str().unwrap_or_default()
            ),
            (status.clone(), code.as_str()),
            "{daemon} {method} {path}: {answer}"
        );
    }
}

/// A variable of a process's environment, readable by an admin of the node (where the hive
/// and worker keys live).
fn environment(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(prefix.as_str()))
        .map(str::to_owned)
}
