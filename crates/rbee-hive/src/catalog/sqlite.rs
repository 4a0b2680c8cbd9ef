//! The catalog as a SQLite file (`models.db`, table `models`).

use std::path::Path;

use rbee_api::ModelRef;
use rbee_api::hive::{ModelEntry, ModelSettings};
use rbee_store::rusqlite::{self, Connection, OptionalExtension, params};
use rbee_store::{SqliteFile, unreadable};

use super::{CatalogError, ModelCatalog};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS models (
    id                 TEXT PRIMARY KEY,
    provider           TEXT NOT NULL CHECK (provider IN ('hf', 'file')),
    reference          TEXT NOT NULL UNIQUE,
    local_path         TEXT NOT NULL,
    size_bytes         INTEGER NOT NULL,
    sha256             TEXT,
    quantization       TEXT,
    downloaded_at_unix INTEGER NOT NULL,
    chat_template      TEXT,
    context_length     INTEGER
);";

/// Columns added after the first release, for catalogs written before them.
const ADDED: &[(&str, &str)] = &[("chat_template", "TEXT"), ("context_length", "INTEGER")];

#[derive(Debug)]
pub struct SqliteCatalog {
    file: SqliteFile,
}

impl SqliteCatalog {
    /// Opens (creating the file and its folders when missing) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let file = SqliteFile::open(path, SCHEMA)?;
        file.add_missing_columns("models", ADDED)?;
        Ok(Self { file })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, CatalogError> {
        Ok(self.file.with(f)?)
    }
}

fn row_to_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<ModelEntry> {
    let text: String = row.get(2)?;
    let reference: ModelRef = text.parse().map_err(|e| unreadable(2, e))?;
    Ok(ModelEntry {
        id: row.get(0)?,
        provider: reference.provider(),
        reference,
        local_path: row.get(3)?,
        size_bytes: row.get::<_, i64>(4)?.max(0) as u64,
        sha256: row.get(5)?,
        quantization: row.get(6)?,
        downloaded_at_unix: row.get::<_, i64>(7)?.max(0) as u64,
        settings: ModelSettings {
            chat_template: row.get(8)?,
            context_length: (row.get::<_, Option<i64>>(9)?)
                .map(|n| u32::try_from(n.max(1)).unwrap_or(u32::MAX)),
        },
    })
}

const COLUMNS: &str = "id, provider, reference, local_path, size_bytes, sha256, quantization, \
     downloaded_at_unix, chat_template, context_length";

impl ModelCatalog for SqliteCatalog {
    fn find(&self, reference: &ModelRef) -> Result<Option<ModelEntry>, CatalogError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM models WHERE reference = ?1"),
                params![reference.canonical()],
                row_to_entry,
            )
            .optional()
        })
    }

    fn upsert(&self, e: &ModelEntry) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO models ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT(reference) DO UPDATE SET
                       id = excluded.id, provider = excluded.provider,
                       local_path = excluded.local_path, size_bytes = excluded.size_bytes,
                       sha256 = excluded.sha256, quantization = excluded.quantization,
                       downloaded_at_unix = excluded.downloaded_at_unix,
                       chat_template = excluded.chat_template,
                       context_length = excluded.context_length"
                ),
                params![
                    e.id,
                    e.reference.provider().as_str(),
                    e.reference.canonical(),
                    e.local_path,
                    e.size_bytes as i64,
                    e.sha256,
                    e.quantization,
                    e.downloaded_at_unix as i64,
                    e.settings.chat_template,
                    e.settings.context_length.map(i64::from)
                ],
            )
            .map(|_| ())
        })
    }

    fn remove(&self, reference: &ModelRef) -> Result<bool, CatalogError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM models WHERE reference = ?1",
                params![reference.canonical()],
            )
        })
        .map(|n| n > 0)
    }

    fn list(&self) -> Result<Vec<ModelEntry>, CatalogError> {
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {COLUMNS} FROM models ORDER BY reference"))?;
            let rows = stmt.query_map([], row_to_entry)?;
            rows.collect()
        })
    }
}
