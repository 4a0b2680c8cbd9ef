//! In-memory catalog for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rbee_api::ModelRef;
use rbee_api::hive::ModelEntry;

use super::{CatalogError, ModelCatalog};

/// Entries keyed by the reference's text, so they list in the order SQLite's do.
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
    fn find(&self, reference: &ModelRef) -> Result<Option<ModelEntry>, CatalogError> {
        Ok(self.entries().get(&reference.canonical()).cloned())
    }

    fn upsert(&self, entry: &ModelEntry) -> Result<(), CatalogError> {
        self.entries()
            .insert(entry.reference.canonical(), entry.clone());
        Ok(())
    }

    fn remove(&self, reference: &ModelRef) -> Result<bool, CatalogError> {
        Ok(self.entries().remove(&reference.canonical()).is_some())
    }

    fn list(&self) -> Result<Vec<ModelEntry>, CatalogError> {
        Ok(self.entries().values().cloned().collect())
    }
}
