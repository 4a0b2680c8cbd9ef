//! Integration tests: the real `rbee-hive` binary, spawning the real `llm-worker-rbee` on
//! the real SmolLM2 model, downloading from a local Hugging Face look-alike.

#![allow(clippy::unwrap_used)]

mod support;

mod auth_and_validation;
mod catalog_and_restart;
mod config_file;
mod detection_and_preflight;
mod downloads;
mod lifecycle;
mod metrics;
mod supervision;
