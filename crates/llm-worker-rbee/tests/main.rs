//! Integration tests: the real `llm-worker-rbee` binary serving the real SmolLM2 model.
//!
//! The model comes from `scripts/fetch-model.sh` (or `RBEE_TEST_MODEL`). Each test starts
//! its own worker on a free port and waits on observable state (log line, SSE events).

#![allow(clippy::unwrap_used)]

mod support;

mod bad_model_file;
mod batching;
mod cpu_path_matches_candle;
mod generation;
mod hive_callbacks;
mod loading_progress;
mod matches_llama_cpp;
mod metrics;
mod quantizations;
mod requests_are_validated;
mod shutdown;
mod slots_and_cancellation;
mod standalone_modes;
mod structured_output;
mod synthetic_models;
mod tokenizer_matches_reference;
mod tool_calls;
