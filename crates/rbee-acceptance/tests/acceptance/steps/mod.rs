//! Step definitions, by what they touch.

pub mod commands;
mod install;
mod models;
mod nodes;
mod ollama;
mod workers;
