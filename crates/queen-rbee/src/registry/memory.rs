//! In-memory registry for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rbee_api::NodeName;

use super::{BeehiveRegistry, NodeRecord, RegistryError};

#[derive(Debug, Default)]
pub struct MemoryRegistry {
    nodes: Mutex<BTreeMap<NodeName, NodeRecord>>,
}

impl MemoryRegistry {
    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeName, NodeRecord>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl BeehiveRegistry for MemoryRegistry {
    fn get(&self, node_name: &NodeName) -> Result<Option<NodeRecord>, RegistryError> {
        Ok(self.nodes().get(node_name).cloned())
    }

    fn upsert(&self, record: &NodeRecord) -> Result<(), RegistryError> {
        self.nodes().insert(record.name().clone(), record.clone());
        Ok(())
    }

    fn remove(&self, node_name: &NodeName) -> Result<bool, RegistryError> {
        Ok(self.nodes().remove(node_name).is_some())
    }

    fn list(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        Ok(self.nodes().values().cloned().collect())
    }
}
