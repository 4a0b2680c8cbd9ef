//! Step definitions, by what they touch.

mod chat;
pub mod commands;
mod install;
mod models;
mod nodes;
mod ollama;
mod workers;
