//! Text generation through HTTP: coherent, reproducible, bounded, stoppable.

use llm_worker_rbee::model_file::ModelFile;
use rbee_api::worker::{InferenceEvent, StopReason};
use serde_json::json;

use crate::support::{Worker, model_path, story_request};

#[tokio::test]
async fn greedy_story_about_a_cat_is_coherent_english() {
    let w = Worker::ready(&[]).await;
    let out = w.infer(story_request(80, json!({}))).await;
    let text = out.text();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 30, "too short: {text:?}");
    assert!(
        text.to_lowercase().contains("cat"),
        "not about a cat: {text:?}"
    );
    let letters = text
        .chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
        .count();
    assert!(
        letters * 10 >= text.chars().count() * 8,
        "not English prose: {text:?}"
    );
    let end = out.end();
    assert_eq!(end.stop_reason, StopReason::MaxTokens);
    assert_eq!(end.tokens_out, 80);
    assert!(end.tokens_in > 10 && end.duration_ms > 0);
}

#[tokio::test]
async fn same_seed_gives_identical_output_and_another_seed_differs() {
    let w = Worker::ready(&[]).await;
    let sampled =
        |seed: u64| story_request(40, json!({"temperature": 1.0, "top_p": 0.95, "seed": seed}));
    let first = w.infer(sampled(7)).await.text();
    let again = w.infer(sampled(7)).await.text();
    let other = w.infer(sampled(8)).await.text();
    assert_eq!(first, again);
    assert_ne!(first, other, "seed had no effect");
}

#[tokio::test]
async fn raw_prompt_is_completed() {
    let w = Worker::ready(&[]).await;
    let out = w
        .infer(json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}))
        .await;
    assert!(out.text().contains("Paris"), "{:?}", out.text());
}

/// `--kernels` picks the instruction set (the portable kernels run on every CPU), and the
/// worker reports the one it runs.
#[tokio::test]
async fn the_portable_kernels_can_be_asked_for_and_are_reported() {
    let w = Worker::ready(&["--kernels", "portable"]).await;
    let ready = w.ready_state().await;
    assert_eq!(ready["model"]["compute"]["kernels"], "portable", "{ready}");
    let out = w
        .infer(json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}))
        .await;
    assert!(out.text().contains("Paris"), "{:?}", out.text());
}

#[tokio::test]
async fn stop_sequence_ends_the_answer_before_it() {
    let w = Worker::ready(&[]).await;
    let full = w.infer(story_request(40, json!({}))).await.text();
    let word = full
        .split_whitespace()
        .nth(5)
        .expect("enough words")
        .to_owned();
    let cut = full.find(&word).unwrap();
    let stopped = w.infer(story_request(40, json!({"stop": [word]}))).await;
    assert_eq!(stopped.text(), full[..cut]);
    assert_eq!(stopped.end().stop_reason, StopReason::Stop);
}

#[tokio::test]
async fn max_tokens_bounds_the_answer() {
    let w = Worker::ready(&[]).await;
    let out = w.infer(story_request(5, json!({}))).await;
    assert_eq!(out.end().tokens_out, 5);
    assert_eq!(out.end().stop_reason, StopReason::MaxTokens);
    let tokens = out
        .events
        .iter()
        .filter(|e| matches!(e, InferenceEvent::Token(_)))
        .count();
    assert!((1..=5).contains(&tokens));
}

#[tokio::test]
async fn end_of_sequence_stops_a_short_answer() {
    let w = Worker::ready(&[]).await;
    let out = w
        .infer(json!({
            "messages": [{"role": "user", "content": "Reply with one word: what colour is the sky?"}],
            "max_tokens": 200,
            "temperature": 0
        }))
        .await;
    assert_eq!(out.end().stop_reason, StopReason::Eos, "{:?}", out.text());
    assert!(out.end().tokens_out < 200);
    assert!(
        !out.text().contains("<|im_end|>"),
        "control tokens are not text"
    );
}

/// Gemma 3 270M ships without a chat template: chat messages get Gemma's usual turns, and
/// the client is told so.
#[tokio::test]
async fn a_file_without_a_chat_template_gets_its_familys_and_says_so() {
    let w = Worker::start_with(&rbee_testkit::gemma3_path(), &[]).await;
    w.wait_for_state("idle").await;
    let out = w
        .infer(json!({
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 4,
            "temperature": 0
        }))
        .await;
    let notes: Vec<&str> = (out.events.iter())
        .filter_map(|e| match e {
            InferenceEvent::Narration(n) if n.action == "chat_template" => Some(n.human.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 1, "{:?}", out.events);
    assert!(
        notes[0].contains("no chat template") && notes[0].contains("Gemma"),
        "{notes:?}"
    );
    // A raw prompt uses no template, and hears nothing about one.
    let raw = w
        .infer(json!({"prompt": "Red, green and", "max_tokens": 2, "temperature": 0}))
        .await;
    assert!(
        !raw.events
            .iter()
            .any(|e| matches!(e, InferenceEvent::Narration(n) if n.action == "chat_template"))
    );
}

#[tokio::test]
async fn narration_tells_start_prompt_size_and_speed() {
    let w = Worker::ready(&[]).await;
    let out = w.infer(story_request(4, json!({}))).await;
    let narrations: Vec<_> = out
        .events
        .iter()
        .filter_map(|e| match e {
            InferenceEvent::Narration(n) => Some(n),
            _ => None,
        })
        .collect();
    let actions: Vec<&str> = narrations.iter().map(|n| n.action.as_str()).collect();
    assert_eq!(
        actions,
        ["inference_start", "tokenize", "inference_complete"]
    );
    assert!(narrations.iter().all(|n| n.actor == "llm-worker-rbee"));
    let prompt = out.end().tokens_in.to_string();
    assert!(
        narrations[1].human.contains(&prompt),
        "{}",
        narrations[1].human
    );
    assert!(
        narrations[2].human.contains("tok/s"),
        "{}",
        narrations[2].human
    );
    assert!(matches!(out.events.last(), Some(InferenceEvent::End(_))));
}

/// Kana and CJK characters are three bytes; SmolLM2's byte-level vocabulary spells many of
/// them with more than one token. Each must still arrive whole, in one event.
#[tokio::test]
async fn multibyte_characters_are_never_split_across_events() {
    let w = Worker::ready(&[]).await;
    let out = w
        .infer(json!({
            "messages": [{"role": "user", "content": "Write the word cat in Japanese, Chinese and Korean."}],
            "max_tokens": 40,
            "temperature": 0
        }))
        .await;
    let pieces: Vec<&str> = out
        .events
        .iter()
        .filter_map(|e| match e {
            InferenceEvent::Token(t) => Some(t.t.as_str()),
            _ => None,
        })
        .collect();
    let text = out.text();
    assert!(
        text.chars().any(|c| c.len_utf8() == 3 && !c.is_ascii()),
        "no three-byte character: {text:?}"
    );
    // The answer may end inside a character when `max_tokens` cuts it; before that, no
    // piece may hold half of one.
    let (last, before) = pieces.split_last().expect("tokens");
    assert!(
        !before.concat().contains('\u{FFFD}'),
        "a character was split: {text:?}"
    );
    assert!(
        !last.contains('\u{FFFD}') || out.end().stop_reason == StopReason::MaxTokens,
        "{text:?}"
    );
    assert!(
        pieces.len() < out.end().tokens_out,
        "expected some tokens to be held back until their character was complete"
    );
}

#[tokio::test]
async fn without_max_tokens_the_answer_runs_past_the_old_256_token_cap() {
    let w = Worker::ready(&[]).await;
    // Counting goes on and on; the stop string ends it well after 256 tokens.
    let numbers: Vec<String> = (1..=20).map(|n| n.to_string()).collect();
    let out = w
        .infer(json!({
            "prompt": format!("{},", numbers.join(", ")),
            "temperature": 0.0,
            "stop": [" 140,"],
        }))
        .await;
    let end = out.end();
    assert_eq!(end.stop_reason, StopReason::Stop, "{:?}", out.text());
    assert!(
        end.tokens_out > 256,
        "{} tokens: {:?}",
        end.tokens_out,
        out.text()
    );
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_refused_naming_both_numbers() {
    let w = Worker::ready(&[]).await;
    let resp = w
        .post("/v1/inference")
        .json(&json!({"prompt": "cat ".repeat(9000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    let details = &body["error"]["details"];
    assert_eq!(details["context_length"], 8192, "{body}");
    assert!(details["prompt_tokens"].as_u64().unwrap() > 8192, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("8192") && message.contains(&details["prompt_tokens"].to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn logit_bias_and_penalties_change_the_greedy_answer() {
    let w = Worker::ready(&[]).await;
    let capital = |extra: serde_json::Value| {
        let mut body =
            json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let plain = w.infer(capital(json!({}))).await.text();
    assert!(plain.contains(" Paris"), "{plain:?}");
    let file = ModelFile::open(&model_path()).unwrap();
    let paris = file.tokenizer().encode(" Paris");
    let bias: serde_json::Map<String, serde_json::Value> = (paris.iter())
        .map(|id| (id.to_string(), json!(-100)))
        .collect();
    let banned = w.infer(capital(json!({"logit_bias": bias}))).await.text();
    assert!(!banned.contains(" Paris"), "{banned:?}");

    let story = w.infer(story_request(48, json!({}))).await.text();
    let penalised = (w
        .infer(story_request(48, json!({"frequency_penalty": 2.0})))
        .await)
        .text();
    let present = (w
        .infer(story_request(48, json!({"presence_penalty": 2.0})))
        .await)
        .text();
    assert_ne!(story, penalised);
    assert_ne!(story, present);
    assert_ne!(penalised, present);
}

#[tokio::test]
async fn out_of_range_penalties_and_biases_are_refused_naming_them() {
    let w = Worker::ready(&[]).await;
    for (extra, named) in [
        (json!({"frequency_penalty": 3.0}), "frequency_penalty"),
        (json!({"presence_penalty": -2.5}), "presence_penalty"),
        (json!({"logit_bias": {"5": 101}}), "logit_bias"),
        (json!({"logit_bias": {"99999999": 1}}), "99999999"),
        (json!({"logprobs": 21}), "logprobs"),
    ] {
        let mut body = json!({"prompt": "Hi", "max_tokens": 2});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let resp = w.post("/v1/inference").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let answer: serde_json::Value = resp.json().await.unwrap();
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message}");
    }
}

#[tokio::test]
async fn logprobs_come_with_every_generated_token_and_its_likeliest_alternatives() {
    let w = Worker::ready(&[]).await;
    let out = w
        .infer(json!({
            "messages": [{"role": "user", "content": "Write the word cat in Japanese, Chinese and Korean."}],
            "max_tokens": 40,
            "temperature": 0,
            "logprobs": 4
        }))
        .await;
    let tokens: Vec<&rbee_api::worker::TokenLogprob> = (out.events.iter())
        .filter_map(|e| match e {
            InferenceEvent::Token(t) => Some(&t.lp),
            _ => None,
        })
        .flatten()
        .collect();
    // Tokens held back inside a character come with the event that completes it.
    assert_eq!(tokens.len(), out.end().tokens_out);
    for t in &tokens {
        assert_eq!(t.top.len(), 4);
        assert_eq!(t.top[0], t.chosen, "greedy picks the likeliest");
        assert!(t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        assert!(
            t.chosen.logprob <= 0.0 && t.top[3].logprob > -100.0,
            "{t:?}"
        );
        let p: f32 = t.top.iter().map(|p| p.logprob.exp()).sum();
        assert!(p <= 1.0 + 1e-4, "{t:?}");
    }
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.chosen.bytes.clone()).collect();
    assert_eq!(String::from_utf8_lossy(&bytes), out.text());
    let plain = w
        .infer(json!({
            "messages": [{"role": "user", "content": "Write the word cat in Japanese, Chinese and Korean."}],
            "max_tokens": 40,
            "temperature": 0
        }))
        .await;
    assert_eq!(plain.text(), out.text(), "reporting changes nothing");
    assert!(plain.events.iter().all(|e| match e {
        InferenceEvent::Token(t) => t.lp.is_empty(),
        _ => true,
    }));
}

#[tokio::test]
async fn a_smaller_context_length_bounds_prompt_and_answer() {
    let w = Worker::ready(&[]).await;
    let prompt = w.infer(story_request(1, json!({}))).await.end().tokens_in;
    let bounded = w
        .infer(json!({
            "messages": [{"role": "user", "content": "Write a short story about a cat."}],
            "temperature": 0,
            "context_length": prompt + 5
        }))
        .await;
    assert_eq!(bounded.end().tokens_out, 5);
    assert_eq!(bounded.end().stop_reason, StopReason::MaxTokens);
    let body = json!({
        "messages": [{"role": "user", "content": "Write a short story about a cat."}],
        "context_length": prompt - 1
    });
    let resp = w.post("/v1/inference").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let answer: serde_json::Value = resp.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("`context_length`"), "{message}");
}

/// A chat template given with a request, or to the worker with `--chat-template`, replaces
/// the model's: a template that writes the message as it is makes the chat the raw prompt.
#[tokio::test]
async fn a_chat_template_from_the_request_or_the_worker_replaces_the_models() {
    const VERBATIM: &str = "{% for m in messages %}{{ m.content }}{% endfor %}";
    let prompt = "The capital of France is";
    let greedy = |extra: serde_json::Value| {
        let mut body = json!({"max_tokens": 8, "temperature": 0});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let chat = json!({"messages": [{"role": "user", "content": prompt}]});
    let w = Worker::ready(&[]).await;
    let raw = w.infer(greedy(json!({"prompt": prompt}))).await;
    let mut overridden = chat.clone();
    overridden["chat_template"] = json!(VERBATIM);
    let templated = w.infer(greedy(overridden)).await;
    let own = w.infer(greedy(chat.clone())).await;
    assert_eq!(templated.end().tokens_in, raw.end().tokens_in);
    assert_eq!(templated.text(), raw.text());
    assert!(
        own.end().tokens_in > raw.end().tokens_in,
        "the model's own template adds its turn markers"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("verbatim.jinja");
    std::fs::write(&file, VERBATIM).unwrap();
    let w = Worker::ready(&["--chat-template", file.to_str().unwrap()]).await;
    let from_flag = w.infer(greedy(chat)).await;
    assert_eq!(from_flag.end().tokens_in, raw.end().tokens_in);
    assert_eq!(from_flag.text(), raw.text());
}

/// `--context-length` caps every request's context below the model's, and says so.
#[tokio::test]
async fn a_worker_given_a_smaller_context_holds_requests_to_it() {
    let w = Worker::ready(&["--context-length", "64"]).await;
    assert_eq!(w.ready_state().await["model"]["context_length"], 64);
    let fits = w
        .infer(json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}))
        .await;
    assert_eq!(fits.end().tokens_out, 8);
    let resp = w
        .post("/v1/inference")
        .json(&json!({"prompt": "The capital of France is", "max_tokens": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("64 tokens"),
        "{body}"
    );
}
