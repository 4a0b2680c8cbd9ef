//! One module per `rbee` subcommand.

pub mod chat;
pub mod doctor;
pub mod infer;
pub mod install;
pub mod logs;
pub mod models;
pub mod ps;
pub mod setup;
pub mod workers;
