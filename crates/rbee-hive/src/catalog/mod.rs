//! The model catalog: which models this node has, where, and how big.
//!
//! Behind a small trait so the SQLite file (`models.db`: one row per model, keyed by the
//! reference's text) and an in-memory twin used by unit tests answer the same shared test
//! suite.

mod memory;
mod sqlite;

pub use memory::MemoryCatalog;
use rbee_api::ModelRef;
use rbee_api::hive::ModelEntry;
pub use sqlite::SqliteCatalog;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("model catalog")]
    Storage(#[from] rbee_store::StoreError),
}

pub trait ModelCatalog: Send + Sync {
    /// The entry for a reference, if catalogued.
    fn find(&self, reference: &ModelRef) -> Result<Option<ModelEntry>, CatalogError>;
    /// Inserts or replaces the entry with the same reference.
    fn upsert(&self, entry: &ModelEntry) -> Result<(), CatalogError>;
    /// Removes an entry; whether it existed.
    fn remove(&self, reference: &ModelRef) -> Result<bool, CatalogError>;
    /// Every entry, ordered by the reference's text.
    fn list(&self) -> Result<Vec<ModelEntry>, CatalogError>;
}

#[cfg(test)]
mod tests {
    //! One suite, run against both implementations.

    use rbee_api::hive::{ModelEntry, Provider};

    use super::*;

    fn entry(reference: &str, size: u64) -> ModelEntry {
        ModelEntry {
            id: format!("id-{reference}"),
            provider: Provider::Hf,
            reference: reference.parse().unwrap(),
            local_path: format!("/models/{size}.gguf"),
            size_bytes: size,
            sha256: Some("ab".repeat(32)),
            quantization: Some("Q4_K_M".into()),
            downloaded_at_unix: 1_700_000_000,
            settings: Default::default(),
        }
    }

    fn r(text: &str) -> ModelRef {
        text.parse().unwrap()
    }

    fn suite(catalog: &dyn ModelCatalog) {
        assert_eq!(catalog.find(&r("hf:a/b")).unwrap(), None);
        assert!(catalog.list().unwrap().is_empty());

        catalog.upsert(&entry("hf:z/z", 2)).unwrap();
        catalog.upsert(&entry("hf:a/b", 1)).unwrap();
        assert_eq!(
            catalog.find(&r("hf:a/b")).unwrap(),
            Some(entry("hf:a/b", 1))
        );
        let refs: Vec<String> = catalog
            .list()
            .unwrap()
            .into_iter()
            .map(|e| e.reference.to_string())
            .collect();
        assert_eq!(refs, ["hf:a/b", "hf:z/z"]);

        catalog.upsert(&entry("hf:a/b", 7)).unwrap();
        assert_eq!(catalog.find(&r("hf:a/b")).unwrap().unwrap().size_bytes, 7);
        let mut templated = entry("hf:a/b", 7);
        templated.settings.chat_template = Some("{{ messages[0].content }}".into());
        templated.settings.context_length = Some(512);
        catalog.upsert(&templated).unwrap();
        assert_eq!(catalog.find(&r("hf:a/b")).unwrap(), Some(templated));
        assert_eq!(catalog.list().unwrap().len(), 2);

        let mut file = entry("file:/m/x.gguf", 3);
        file.provider = Provider::File;
        file.sha256 = None;
        file.quantization = None;
        catalog.upsert(&file).unwrap();
        assert_eq!(catalog.find(&r("file:/m/x.gguf")).unwrap(), Some(file));
        let listed: Vec<String> = (catalog.list().unwrap().into_iter())
            .map(|e| e.reference.to_string())
            .collect();
        assert_eq!(listed, ["file:/m/x.gguf", "hf:a/b", "hf:z/z"]);

        assert!(catalog.remove(&r("hf:z/z")).unwrap());
        assert!(!catalog.remove(&r("hf:z/z")).unwrap());
        assert_eq!(catalog.list().unwrap().len(), 2);
    }

    #[test]
    fn memory_catalog_passes_the_shared_suite() {
        suite(&MemoryCatalog::default());
    }

    #[test]
    fn sqlite_catalog_passes_the_shared_suite() {
        let dir = tempfile::tempdir().unwrap();
        suite(&SqliteCatalog::open(&dir.path().join("models.db")).unwrap());
    }

    #[test]
    fn a_catalog_from_before_model_settings_gains_the_columns_and_keeps_its_models() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.db");
        let old = rbee_store::rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE models (id TEXT PRIMARY KEY, provider TEXT NOT NULL, \
             reference TEXT NOT NULL UNIQUE, local_path TEXT NOT NULL, size_bytes INTEGER NOT NULL, \
             sha256 TEXT, quantization TEXT, downloaded_at_unix INTEGER NOT NULL);
             INSERT INTO models VALUES ('id-hf:a/b', 'hf', 'hf:a/b', '/models/1.gguf', 1, NULL, NULL, 5);",
        )
        .unwrap();
        drop(old);
        let catalog = SqliteCatalog::open(&path).unwrap();
        let found = catalog.find(&r("hf:a/b")).unwrap().unwrap();
        assert_eq!((found.size_bytes, found.settings), (1, Default::default()));
    }

    #[test]
    fn sqlite_catalog_creates_missing_folders_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/models.db");
        SqliteCatalog::open(&path)
            .unwrap()
            .upsert(&entry("hf:a/b", 5))
            .unwrap();
        assert!(path.is_file());
        let reopened = SqliteCatalog::open(&path).unwrap();
        assert_eq!(
            reopened.find(&r("hf:a/b")).unwrap(),
            Some(entry("hf:a/b", 5))
        );
    }

    #[test]
    fn sqlite_catalog_on_an_unusable_path_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = SqliteCatalog::open(&blocker.join("models.db")).unwrap_err();
        let message = rbee_http::error::with_causes(&err);
        assert!(message.contains("models.db"), "{message}");
    }
}
