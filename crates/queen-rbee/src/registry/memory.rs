//! In-memory registry for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{BeehiveRegistry, NodeRecord, RegistryError};

#[derive(Debug, Default)]
pub struct MemoryRegistry {
    nodes: Mutex<BTreeMap<String, NodeRecord>>,
}

impl MemoryRegistry {
    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NodeRecord>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl BeehiveRegistry for MemoryRegistry {
    fn get(&self, node_name: &str) -> Result<Option<NodeRecord>, RegistryError> {
        Ok(self.nodes().get(node_name).cloned())
    }

    fn upsert(&self, record: &NodeRecord) -> Result<(), RegistryError> {
        self.nodes()
            .insert(record.beehive.node_name.clone(), record.clone());
        Ok(())
    }

    fn remove(&self, node_name: &str) -> Result<bool, RegistryError> {
        Ok(self.nodes().remove(node_name).is_some())
    }

    fn list(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        Ok(self.nodes().values().cloned().collect())
    }
}
