//! The official `ollama` Python package against the queen, as a chat UI that speaks Ollama
//! would use it.

use cucumber::{then, when};
use serde_json::Value;

use crate::world::Rbee;

/// Chats once, then lists the models and the running ones; prints what it saw as JSON.
const CLIENT: &str = r#"
import json, sys, ollama
host, model, key = sys.argv[1], sys.argv[2], sys.argv[3]
client = ollama.Client(host=host, headers={"Authorization": f"Bearer {key}"} if key else None)
answer = client.chat(model=model, messages=[{"role": "user", "content": "Write a short story about a cat."}],
                     options={"temperature": 0, "num_predict": 16})
print(json.dumps({"content": answer.message.content, "eval_count": answer.eval_count,
                  "done_reason": answer.done_reason,
                  "tags": [m.model for m in client.list().models],
                  "ps": [m.model for m in client.ps().models]}))
"#;

#[when(regex = r#"^the ollama package chats with model "(.+)" through the queen$"#)]
async fn ollama_chat(world: &mut Rbee, model: String) {
    let out = tokio::process::Command::new(rbee_testkit::sdk_python())
        .args(["-c", CLIENT, &world.queen_url, &model])
        .arg(world.api_key.clone().unwrap_or_default())
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the ollama client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world.answer = Some(serde_json::from_str(stdout.trim()).expect("the client's JSON"));
}

fn seen(world: &Rbee) -> &Value {
    world.answer.as_ref().expect("the ollama client ran")
}

#[then(regex = r#"^the ollama answer is coherent text of (\d+) tokens$"#)]
async fn ollama_answer(world: &mut Rbee, tokens: u64) {
    let seen = seen(world);
    let text = seen["content"].as_str().unwrap_or_default();
    assert!(
        text.split_whitespace().count() >= 8,
        "not a coherent answer: {seen}"
    );
    assert_eq!(seen["eval_count"], tokens, "{seen}");
    assert_eq!(seen["done_reason"], "length", "{seen}");
}

#[then(regex = r#"^the ollama package listed "(.+)" and "(.+)"$"#)]
async fn ollama_listed(world: &mut Rbee, bare: String, pinned: String) {
    let seen = seen(world);
    let tags: Vec<&str> = (seen["tags"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tags.contains(&bare.as_str()) && tags.contains(&pinned.as_str()),
        "{tags:?}"
    );
}

#[then(regex = r#"^the ollama package saw the model running on "(\w+)"$"#)]
async fn ollama_running(world: &mut Rbee, node: String) {
    let seen = seen(world);
    let running: Vec<&str> = (seen["ps"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        running.iter().any(|m| m.starts_with(&format!("{node}/"))),
        "{running:?}"
    );
}
