//! Constrained decoding: with a `format`, even SmolLM2-135M answers JSON that parses and
//! follows the schema, whatever the prompt asks for.

use rbee_api::worker::StopReason;
use serde_json::{Value, json};

use crate::support::Worker;

fn ask(content: &str, format: Value, max_tokens: usize) -> Value {
    json!({
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "format": format
    })
}

/// A schema with the features SDKs emit: nested `$defs`/`$ref`, `required`,
/// `additionalProperties: false`, enums, `const`, string lengths, bounded arrays, integers,
/// numbers, booleans, null and `anyOf`.
fn person_schema() -> Value {
    json!({
        "$defs": {
            "Pet": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["cat", "dog", "fish"]},
                    "name": {"type": "string", "minLength": 1, "maxLength": 12}
                },
                "required": ["kind", "name"],
                "additionalProperties": false
            }
        },
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 20},
            "age": {"type": "integer"},
            "height_m": {"type": "number"},
            "married": {"type": "boolean"},
            "nickname": {"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}]},
            "species": {"const": "human"},
            "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}, "minItems": 1, "maxItems": 2}
        },
        "required": ["name", "age", "height_m", "married", "nickname", "species", "pets"],
        "additionalProperties": false
    })
}

fn check_person(v: &Value) {
    let o = v.as_object().expect("an object");
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    for k in [
        "name", "age", "height_m", "married", "nickname", "species", "pets",
    ] {
        assert!(keys.contains(&k), "{k} missing from {v}");
    }
    assert_eq!(o.len(), 7, "no other properties: {v}");
    let name = o["name"].as_str().expect("name is a string");
    assert!((1..=20).contains(&name.chars().count()), "{v}");
    assert!(o["age"].is_i64() || o["age"].is_u64(), "{v}");
    assert!(o["height_m"].is_number(), "{v}");
    assert!(o["married"].is_boolean(), "{v}");
    assert!(
        o["nickname"].is_null()
            || o["nickname"]
                .as_str()
                .is_some_and(|s| s.chars().count() <= 10),
        "{v}"
    );
    assert_eq!(o["species"], "human");
    let pets = o["pets"].as_array().expect("pets is an array");
    assert!((1..=2).contains(&pets.len()), "{v}");
    for pet in pets {
        let p = pet.as_object().expect("a pet object");
        assert_eq!(p.len(), 2, "{v}");
        assert!(
            ["cat", "dog", "fish"].contains(&p["kind"].as_str().unwrap_or("")),
            "{v}"
        );
        let n = p["name"].as_str().expect("pet name");
        assert!((1..=12).contains(&n.chars().count()), "{v}");
    }
}

#[tokio::test]
async fn a_json_schema_is_followed_even_when_the_prompt_asks_for_something_else() {
    let w = Worker::ready(&[]).await;
    for prompt in [
        "Describe a person who owns pets, as JSON.",
        "Write a poem about the sea.",
    ] {
        let schema = json!({"type": "json_schema", "schema": person_schema()});
        let out = w.infer(ask(prompt, schema, 200)).await;
        let text = out.text();
        assert_eq!(out.end().stop_reason, StopReason::Eos, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        check_person(&v);
    }
}

#[tokio::test]
async fn json_object_gives_an_object_that_parses() {
    let w = Worker::ready(&[]).await;
    let out = w
        .infer(ask(
            "List three colours.",
            json!({"type": "json_object"}),
            120,
        ))
        .await;
    let text = out.text();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(v.is_object(), "{text}");
    assert_eq!(out.end().stop_reason, StopReason::Eos, "{text}");
}

#[tokio::test]
async fn a_schema_that_cannot_be_enforced_is_refused_before_generating() {
    let w = Worker::ready(&[]).await;
    for schema in [
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b"], "additionalProperties": false}),
        json!({"type": "strange"}),
    ] {
        let body = ask("Hi", json!({"type": "json_schema", "schema": schema}), 8);
        let resp = w.post("/v1/inference").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{schema}");
        let answer: Value = resp.json().await.unwrap();
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("`format`"), "{message}");
        assert_eq!(answer["error"]["details"]["field"], "format");
    }
    let unknown = ask("Hi", json!({"type": "yaml"}), 8);
    let resp = w.post("/v1/inference").json(&unknown).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

/// The grammar of a required call for a template that renders tools itself (Qwen, Hermes):
/// a `<tool_call>` block of JSON, with the arguments the function's schema allows.
#[test]
fn a_required_call_in_tool_call_blocks_admits_valid_calls_only() {
    use llm_worker_rbee::grammar::Grammars;
    use llm_worker_rbee::model_file::ModelFile;
    use llm_worker_rbee::tools::{ToolStyle, ToolUse};
    use rbee_api::worker::{Tool, ToolChoice};

    let file = ModelFile::open(&crate::support::model_path()).unwrap();
    let tokenizer = std::sync::Arc::clone(file.tokenizer());
    let grammars = Grammars::new(std::sync::Arc::clone(&tokenizer));
    let weather = Tool {
        name: "get_weather".into(),
        description: None,
        parameters: Some(
            json!({"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"], "additionalProperties": false}),
        ),
    };
    let tools = ToolUse::new(ToolStyle::Template, &[weather], ToolChoice::Required).unwrap();
    let grammar = tools.grammar().expect("a required call has a grammar");
    let follows = |text: &str| {
        let mut c = grammars.compile_tools(grammar.clone()).unwrap();
        for id in tokenizer.encode_plain(text) {
            let mut logits = vec![0.0f32; tokenizer.vocab_size()];
            c.mask(&mut logits).unwrap();
            if logits[id as usize] == f32::NEG_INFINITY {
                return false;
            }
            c.accept(id).unwrap();
        }
        c.is_finished()
    };
    let call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    assert!(follows(call));
    assert_eq!(
        tools.read(call).tool_calls[0].arguments,
        r#"{"city":"Paris"}"#
    );
    assert!(!follows("Sure! <tool_call>"));
    assert!(!follows("<tool_call>\n{\"name\": \"get_time\""));
    assert!(!follows(
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"town\""
    ));
}
