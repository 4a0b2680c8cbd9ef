//! The hive's workers: an in-memory registry, and the pool that spawns, supervises and stops
//! `llm-worker-rbee` processes.

mod pool;
mod registry;

pub use pool::{PoolConfig, WorkerPool};
pub use registry::Registry;
