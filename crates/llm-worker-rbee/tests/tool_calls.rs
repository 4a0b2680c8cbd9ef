//! Tool calls through the worker's own API: the calls come in `end`'s `tools`, with
//! arguments that follow the function's schema even from SmolLM2-135M, whose template knows
//! nothing of tools (the generic format).

use serde_json::{Value, json};

use crate::support::Worker;

fn tools() -> Value {
    json!([
        {"name": "get_weather", "description": "The current weather in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                        "required": ["city"], "additionalProperties": false}},
        {"name": "add", "description": "Adds two numbers",
         "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                        "required": ["a", "b"], "additionalProperties": false}}
    ])
}

fn ask(messages: Value, choice: Value) -> Value {
    json!({"messages": messages, "tools": tools(), "tool_choice": choice,
           "max_tokens": 64, "temperature": 0})
}

#[tokio::test]
async fn a_required_call_names_a_tool_with_arguments_that_follow_its_schema() {
    let w = Worker::ready(&[]).await;
    let question = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    let out = w.infer(ask(question.clone(), json!("required"))).await;
    let tools = out.end().tools.clone().expect("tools were offered");
    assert_eq!(tools.tool_calls.len(), 1, "{tools:?}");
    let call = &tools.tool_calls[0];
    let args: Value = serde_json::from_str(&call.arguments).unwrap();
    match call.name.as_str() {
        "get_weather" => assert!(args["city"].is_string() && args.as_object().unwrap().len() == 1),
        "add" => assert!(args["a"].is_number() && args["b"].is_number()),
        other => panic!("no tool is named {other}"),
    }
    let named = w.infer(ask(question, json!({"function": "add"}))).await;
    let calls = named.end().tools.clone().unwrap().tool_calls;
    assert_eq!(
        calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["add"]
    );
}

#[tokio::test]
async fn with_auto_the_answer_is_text_or_a_call_and_a_result_leads_to_an_answer() {
    let w = Worker::ready(&[]).await;
    let out = w
        .infer(ask(
            json!([{"role": "user", "content": "Say hello to me."}]),
            json!("auto"),
        ))
        .await;
    let tools = out.end().tools.clone().expect("tools were offered");
    assert!(
        tools.content.is_empty() != tools.tool_calls.is_empty(),
        "text or calls: {tools:?}"
    );
    let history = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"}
    ]);
    let answer = w.infer(ask(history, json!("none"))).await;
    assert!(answer.end().tools.is_none(), "none offers no tools");
    assert!(
        answer.text().split_whitespace().count() >= 3,
        "{}",
        answer.text()
    );
}

#[tokio::test]
async fn impossible_tool_requests_are_refused_naming_tools() {
    let w = Worker::ready(&[]).await;
    let question = json!([{"role": "user", "content": "Hi"}]);
    let bodies = [
        ask(question.clone(), json!({"function": "missing"})),
        json!({"messages": question, "tool_choice": "required", "max_tokens": 4}),
        json!({"prompt": "Hi", "tools": tools(), "max_tokens": 4}),
        json!({"messages": question, "tools": tools(), "format": {"type": "json_object"}, "max_tokens": 4}),
    ];
    for body in bodies {
        let resp = w.post("/v1/inference").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"]["details"]["field"], "tools", "{answer}");
    }
}
