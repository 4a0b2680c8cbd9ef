//! In-memory catalog for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rbee_api::hive::ModelEntry;

use super::{CatalogError, ModelCatalog};

#[derive(Debug, Default)]
pub struct MemoryCatalog {
    entries: Mutex<BTreeMap<String, ModelEntry>>,
}

impl MemoryCatalog {
    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ModelEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ModelCatalog for MemoryCatalog {
    fn find(&self, reference: &str) -> Result<Option<ModelEntry>, CatalogError> {
        Ok(self.entries().get(reference).cloned())
    }

    fn upsert(&self, entry: &ModelEntry) -> Result<(), CatalogError> {
        self.entries()
            .insert(entry.reference.clone(), entry.clone());
        Ok(())
    }

    fn remove(&self, reference: &str) -> Result<bool, CatalogError> {
        Ok(self.entries().remove(reference).is_some())
    }

    fn list(&self) -> Result<Vec<ModelEntry>, CatalogError> {
        Ok(self.entries().values().cloned().collect())
    }
}
