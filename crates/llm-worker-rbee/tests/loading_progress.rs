//! Loading progress: one event per layer, in order, ending with `ready`.

use serde_json::Value;

use crate::support::{Worker, model_path};

#[tokio::test]
async fn per_layer_progress_arrives_in_order_and_ends_with_ready() {
    let w = Worker::start_with(&model_path(), &[]).await;
    let frames = w.get_sse("/v1/loading/progress").await;
    let (last, layers) = frames.split_last().expect("events");
    assert_eq!(last.event, "ready");
    assert_eq!(
        serde_json::from_str::<Value>(&last.data).unwrap()["stage"],
        "ready"
    );

    let events: Vec<Value> = layers
        .iter()
        .map(|f| {
            assert_eq!(f.event, "loading_to_vram");
            serde_json::from_str(&f.data).unwrap()
        })
        .collect();
    let loaded: Vec<u64> = events
        .iter()
        .map(|e| e["layers_loaded"].as_u64().unwrap())
        .collect();
    assert_eq!(
        loaded,
        (1..=30).collect::<Vec<u64>>(),
        "one event per layer, in order"
    );
    assert!(events.iter().all(|e| e["layers_total"] == 30));
    let mb: Vec<u64> = events
        .iter()
        .map(|e| e["vram_mb"].as_u64().unwrap())
        .collect();
    assert!(mb.windows(2).all(|p| p[0] <= p[1]), "{mb:?}");
    assert!(
        mb[29] >= 60,
        "SmolLM2 Q4_1 holds ~90 MB of weights, got {}",
        mb[29]
    );

    let ready = w.ready_state().await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["state"], "idle");
}

#[tokio::test]
async fn ready_reports_the_gguf_metadata() {
    let w = Worker::ready(&[]).await;
    let model = &w.ready_state().await["model"];
    assert_eq!(model["architecture"], "llama");
    assert_eq!(model["layers"], 30);
    assert_eq!(model["context_length"], 8192);
    assert_eq!(model["vocab_size"], 49152);
    assert_eq!(model["embedding_length"], 576);
    assert_eq!(model["bos_token_id"], 1);
    assert_eq!(model["eos_token_id"], 2);
    assert_eq!(model["quantization"], "Q4_1");
    assert_eq!(model["tokenizer"], "gpt2");
    assert!(
        model["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>")
    );
}
