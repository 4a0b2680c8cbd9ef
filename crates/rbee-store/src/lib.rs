//! One SQLite file a daemon keeps its records in: the hive's model catalog (`models.db`) and
//! the queen's node registry (`beehives.db`). The file and its folders are created when
//! missing, the schema is applied, and every use holds the connection's lock, so the
//! daemons' tasks never interleave statements. What the rows mean stays with each daemon.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use rusqlite;
use rusqlite::Connection;

/// A failure of the file at `path`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot create its folder")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot make it private (mode 0600)")]
    Private {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

#[derive(Debug)]
pub struct SqliteFile {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteFile {
    /// Opens the file at `path` (creating it and its folders when missing) and applies
    /// `schema` (statements that must be safe to repeat, such as `CREATE TABLE IF NOT EXISTS`).
    pub fn open(path: &Path, schema: &str) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: path.to_owned(),
                source,
            })?;
        }
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(sqlite)?;
        // Registries hold keys: readable by this user only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Private {
                path: path.to_owned(),
                source,
            },
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|()| conn.execute_batch(schema))
            .map_err(sqlite)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// Adds each of `columns` (name, SQL definition) that `table` lacks: a file written by an
    /// older rbee gains the columns added since, keeping its rows.
    pub fn add_missing_columns(
        &self,
        table: &str,
        columns: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            for (column, definition) in columns {
                let present: bool = c.query_row(
                    "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                    rusqlite::params![table, column],
                    |row| row.get(0),
                )?;
                if !present {
                    c.execute_batch(&format!(
                        "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                    ))?;
                }
            }
            Ok(())
        })
    }

    /// Runs `f` on the connection, alone.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }
}

/// A text column that did not parse into its type (`column` is its index in the row).
pub fn unreadable(
    column: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_created_with_its_folders_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/t.db");
        let schema = "CREATE TABLE IF NOT EXISTS t (v TEXT);";
        let file = SqliteFile::open(&path, schema).unwrap();
        file.with(|c| c.execute("INSERT INTO t VALUES ('x')", []))
            .unwrap();
        drop(file);
        let again = SqliteFile::open(&path, schema).unwrap();
        let v: String = again
            .with(|c| c.query_row("SELECT v FROM t", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(v, "x");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "it may hold keys");
    }

    #[test]
    fn an_unusable_path_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = SqliteFile::open(&blocker.join("t.db"), "").unwrap_err();
        assert!(err.to_string().contains("t.db"), "{err}");
    }
}
