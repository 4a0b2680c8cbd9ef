//! Integration tests of the `rbee` CLI against real queen, hive and worker processes.

#![allow(clippy::unwrap_used)]

mod support;

mod chat_in_a_terminal;
mod ephemeral_and_persistent;
mod failures_users_see;
mod install_and_config;
mod models_ps_and_scripting;
mod workers_logs_and_doctor;
