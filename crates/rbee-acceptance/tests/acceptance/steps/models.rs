//! The Hub double's faults and records, and the nodes' model catalogs on disk.

use cucumber::{given, then};
use rbee_testkit::fake_hub::Fault;

use crate::world::Rbee;

fn q4_len(world: &Rbee) -> u64 {
    world.model_len("smollm2-135m-instruct-q4_1.gguf")
}

#[given(regex = r"^the hub resets the first download at (\d+) %$")]
async fn reset_once(world: &mut Rbee, percent: u64) {
    let byte = q4_len(world) * percent / 100;
    world.hub.set_fault(Fault::ResetAt { byte, times: 1 });
}

#[given("the hub breaks every download")]
async fn break_all(world: &mut Rbee) {
    world.hub.set_fault(Fault::ResetEvery { after: 0 });
}

#[given("the hub corrupts every download")]
async fn corrupt(world: &mut Rbee) {
    world.hub.set_fault(Fault::Corrupt);
}

#[given(regex = r"^the hub sends (\d+) MB/s$")]
async fn slow(world: &mut Rbee, mb: u64) {
    world.hub.set_fault(Fault::Slow {
        bytes_per_sec: mb * 1_000_000,
    });
}

fn gets_of(world: &Rbee, file: &str) -> Vec<rbee_testkit::fake_hub::Request> {
    world
        .hub
        .downloads()
        .into_iter()
        .filter(|r| r.path.ends_with(&format!("/{file}")))
        .collect()
}

#[then(regex = r#"^the hub sent "(.+)" (\d+) times?$"#)]
async fn sent_times(world: &mut Rbee, file: String, times: usize) {
    let gets = gets_of(world, &file);
    assert_eq!(gets.len(), times, "{gets:?}");
}

#[then(regex = r#"^the hub was asked to resume "(.+)" from (\d+) %$"#)]
async fn resumed(world: &mut Rbee, file: String, percent: u64) {
    let from = world.model_len(&file) * percent / 100;
    let gets = gets_of(world, &file);
    assert!(
        gets.len() == 2
            && gets[0].range.is_none()
            && gets[1].range.as_deref() == Some(&format!("bytes={from}-")),
        "{gets:?}"
    );
}

/// The references in a node's catalog, read from its SQLite file as an admin would.
fn catalog(world: &Rbee, node: &str) -> Vec<String> {
    let db = world.cluster.host(node).data_dir().join("models.db");
    if !db.is_file() {
        return Vec::new();
    }
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT reference, size_bytes FROM models")
        .unwrap();
    stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })
    .unwrap()
    .map(|r| {
        let (reference, size) = r.unwrap();
        assert!(size > 0, "{reference} has {size} bytes");
        reference
    })
    .collect()
}

#[then(regex = r#"^the catalog of "(\w+)" holds "(.+)"$"#)]
async fn catalog_holds(world: &mut Rbee, node: String, reference: String) {
    let refs = catalog(world, &node);
    assert!(refs.contains(&reference), "catalog of {node}: {refs:?}");
}

#[then(regex = r#"^the catalog of "(\w+)" is empty$"#)]
async fn catalog_empty(world: &mut Rbee, node: String) {
    let refs = catalog(world, &node);
    assert!(refs.is_empty(), "catalog of {node}: {refs:?}");
}

#[then(regex = r#"^no model file is left on "(\w+)"$"#)]
async fn no_model_file(world: &mut Rbee, node: String) {
    fn gguf_files(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                gguf_files(&path, found);
            } else if path.to_string_lossy().contains(".gguf") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    gguf_files(&world.cluster.host(&node).data_dir(), &mut found);
    assert!(found.is_empty(), "left on {node}: {found:?}");
}
