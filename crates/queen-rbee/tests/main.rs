//! Integration tests of queen-rbee with a real sshd on loopback, real hives and workers.

#![allow(clippy::unwrap_used)]

mod support;

mod browser;
mod dashboard;
mod fuzz_every_route;
mod install_over_ssh;
mod local_tasks;
mod metrics;
mod ollama_api;
mod openai_api;
mod remote_nodes;
mod setup_nodes;
