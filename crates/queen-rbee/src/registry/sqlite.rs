//! The registry as a SQLite file (`beehives.db`, table `beehives`).

use std::path::Path;

use rbee_api::NodeName;
use rbee_api::queen::{NodeConfig, NodeState, NodeStatus};
use rbee_store::rusqlite::{self, Connection, OptionalExtension, params};
use rbee_store::{SqliteFile, unreadable};

use super::{BeehiveRegistry, NodeRecord, RegistryError};

/// `hive_port`'s default is [`DEFAULT_HIVE_PORT`] (checked by a test below).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS beehives (
    node_name           TEXT PRIMARY KEY,
    ssh_host            TEXT NOT NULL,
    ssh_port            INTEGER NOT NULL DEFAULT 22,
    ssh_user            TEXT NOT NULL,
    ssh_key_path        TEXT,
    git_repo_url        TEXT,
    git_branch          TEXT NOT NULL DEFAULT 'main',
    install_path        TEXT NOT NULL,
    last_connected_unix INTEGER,
    last_error          TEXT,
    status              TEXT NOT NULL DEFAULT 'unknown'
                        CHECK (status IN ('unknown', 'reachable', 'unreachable')),
    backends            TEXT NOT NULL DEFAULT '[]',
    devices             TEXT NOT NULL DEFAULT '{}',
    hive_port           INTEGER NOT NULL DEFAULT 9200,
    hive_api_key        TEXT NOT NULL,
    hive_settings       TEXT NOT NULL DEFAULT '{}'
);";

/// Columns added since the first schema, for registries made before them.
const ADDED: &[(&str, &str)] = &[("hive_settings", "TEXT NOT NULL DEFAULT '{}'")];

const COLUMNS: &str = "node_name, ssh_host, ssh_port, ssh_user, ssh_key_path, git_repo_url, \
     git_branch, install_path, last_connected_unix, last_error, status, backends, devices, \
     hive_port, hive_api_key, hive_settings";

#[derive(Debug)]
pub struct SqliteRegistry {
    file: SqliteFile,
}

impl SqliteRegistry {
    /// Opens (creating the file and its folders when missing) the registry at `path`.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let file = SqliteFile::open(path, SCHEMA)?;
        file.add_missing_columns("beehives", ADDED)?;
        Ok(Self { file })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, RegistryError> {
        Ok(self.file.with(f)?)
    }
}

fn status_of(text: &str) -> NodeStatus {
    match text {
        "reachable" => NodeStatus::Reachable,
        "unreachable" => NodeStatus::Unreachable,
        _ => NodeStatus::Unknown,
    }
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRecord> {
    let backends: String = row.get(11)?;
    let devices: String = row.get(12)?;
    let settings: String = row.get(15)?;
    let name: String = row.get(0)?;
    Ok(NodeRecord {
        config: NodeConfig {
            node_name: name.parse().map_err(|e| unreadable(0, e))?,
            ssh_host: row.get(1)?,
            ssh_port: row.get(2)?,
            ssh_user: row.get(3)?,
            ssh_key_path: row.get(4)?,
            git_repo_url: row.get(5)?,
            git_branch: row.get(6)?,
            install_path: row.get(7)?,
            hive_port: row.get(13)?,
            hive_settings: serde_json::from_str(&settings).map_err(|e| unreadable(15, e))?,
        },
        state: NodeState {
            last_connected_unix: row.get::<_, Option<i64>>(8)?.map(|v| v.max(0) as u64),
            last_error: row.get(9)?,
            status: status_of(&row.get::<_, String>(10)?),
            backends: serde_json::from_str(&backends).map_err(|e| unreadable(11, e))?,
            devices: serde_json::from_str(&devices).map_err(|e| unreadable(12, e))?,
        },
        hive_api_key: row.get(14)?,
    })
}

impl BeehiveRegistry for SqliteRegistry {
    fn get(&self, node_name: &NodeName) -> Result<Option<NodeRecord>, RegistryError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM beehives WHERE node_name = ?1"),
                params![node_name.as_str()],
                row_to_record,
            )
            .optional()
        })
    }

    fn upsert(&self, r: &NodeRecord) -> Result<(), RegistryError> {
        let (b, s) = (&r.config, &r.state);
        let backends = serde_json::to_string(&s.backends).unwrap_or_else(|_| "[]".into());
        let devices = serde_json::to_string(&s.devices).unwrap_or_else(|_| "{}".into());
        let settings = serde_json::to_string(&b.hive_settings).unwrap_or_else(|_| "{}".into());
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT OR REPLACE INTO beehives ({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ),
                params![
                    b.node_name.as_str(),
                    b.ssh_host,
                    b.ssh_port,
                    b.ssh_user,
                    b.ssh_key_path,
                    b.git_repo_url,
                    b.git_branch,
                    b.install_path,
                    s.last_connected_unix.map(|v| v as i64),
                    s.last_error,
                    s.status.as_str(),
                    backends,
                    devices,
                    b.hive_port,
                    r.hive_api_key,
                    settings
                ],
            )
            .map(|_| ())
        })
    }

    fn remove(&self, node_name: &NodeName) -> Result<bool, RegistryError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM beehives WHERE node_name = ?1",
                params![node_name.as_str()],
            )
        })
        .map(|n| n > 0)
    }

    fn list(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM beehives ORDER BY node_name"
            ))?;
            let rows = stmt.query_map([], row_to_record)?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use rbee_api::queen::DEFAULT_HIVE_PORT;

    use super::*;

    #[test]
    fn a_registry_from_before_hive_settings_gains_the_column_and_keeps_its_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beehives.db");
        {
            let c = Connection::open(&path).unwrap();
            let old = SCHEMA.replace(",\n    hive_settings       TEXT NOT NULL DEFAULT '{}'", "");
            assert_ne!(old, SCHEMA);
            c.execute_batch(&old).unwrap();
            c.execute(
                "INSERT INTO beehives (node_name, ssh_host, ssh_user, install_path, hive_api_key) \
                 VALUES ('old', 'old.lan', 'me', '/opt/rbee', 'k')",
                [],
            )
            .unwrap();
        }
        let registry = SqliteRegistry::open(&path).unwrap();
        let old = registry.get(&"old".parse().unwrap()).unwrap().unwrap();
        assert!(old.config.hive_settings.is_default());
        let mut changed = old.clone();
        changed.config.hive_settings.worker_slots = Some(2);
        registry.upsert(&changed).unwrap();
        let reopened = SqliteRegistry::open(&path).unwrap();
        let back = reopened.get(&"old".parse().unwrap()).unwrap().unwrap();
        assert_eq!(back.config.hive_settings.worker_slots, Some(2));
    }

    #[test]
    fn the_schema_defaults_the_hive_port_to_the_api_default() {
        assert!(SCHEMA.contains(&format!(
            "hive_port           INTEGER NOT NULL DEFAULT {DEFAULT_HIVE_PORT}"
        )));
    }
}
