//! Sealed segments as Delta Lake tables, so Spark, Trino, Flink, DuckDB or pandas read a
//! city's data at scale without citybrain (issue 25, item 4; ADR 2026-12-03-open-tables).
//!
//! A table is a directory `ROOT/<dataset>/` holding hard links to the dataset's sealed
//! Parquet segments (`date=2026-11-22/000000000006-0.parquet`, as under `segments/`) and a
//! Delta log, `_delta_log/00000000000000000000.json` onwards, one commit per sync that adds
//! the segments sealed since the last. The segments are immutable and never removed while
//! the dataset exists, so the table is append-only (`delta.appendOnly`) and a commit never
//! removes a file. Links, not the dataset directory itself, so that an outside engine's
//! VACUUM or OPTIMIZE over the table can never touch the hub's logs or manifests; a copy
//! where the root is on another file system.
//!
//! Crash safety: a commit is written to a temporary file, synced, then linked to its
//! version's name (which fails if the version exists) and the directory synced, so a
//! reader sees a version whole or not at all. Files linked by a sync that crashed before
//! its commit are simply linked again (or found there) by the next one: a file no commit
//! names is invisible to readers.
//!
//! Readers bypass masking and grants: only datasets readable by every department with no
//! personal field are exported, unless the owner's definition says `open_table = true`
//! (or `false` to keep an eligible one in) — see [`exportable`].

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, Field, Schema};
use serde_json::{Value, json};

use crate::HubError;
use crate::schema::{Classification, DatasetDef, SharingClass};
use crate::store::Snapshot;

/// Whether a dataset's data may leave the hub's governance as an open table.
pub fn exportable(def: &DatasetDef) -> bool {
    if def.name.is_rejected() {
        return false;
    }
    def.open_table.unwrap_or_else(|| {
        def.sharing == SharingClass::Unconditional
            && def
                .fields
                .iter()
                .all(|f| f.class != Classification::Personal)
    })
}

/// The table directory of a dataset under the open tables' root.
pub fn table_dir(root: &Path, dataset: &str) -> PathBuf {
    root.join(dataset)
}

/// What a table's Delta log already says.
#[derive(Debug, Default)]
struct LogState {
    next_version: u64,
    files: HashSet<String>,
    schema_string: Option<String>,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HubError {
    let context = context.into();
    move |source| HubError::Io { context, source }
}

fn read_log(log_dir: &Path) -> Result<LogState, HubError> {
    let mut state = LogState::default();
    let entries = match fs::read_dir(log_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(state),
        Err(e) => return Err(io_err(format!("reading {}", log_dir.display()))(e)),
    };
    let mut versions: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(io_err(format!("reading {}", log_dir.display())))?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if stem.len() == 20
            && let Ok(version) = stem.parse::<u64>()
        {
            versions.push((version, path));
        }
    }
    versions.sort();
    for (version, path) in versions {
        let text =
            fs::read_to_string(&path).map_err(io_err(format!("reading {}", path.display())))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).map_err(|e| {
                HubError::Internal(format!(
                    "Delta commit {} is unreadable: {e}",
                    path.display()
                ))
            })?;
            if let Some(path) = action["add"]["path"].as_str() {
                state.files.insert(path.to_string());
            }
            if let Some(path) = action["remove"]["path"].as_str() {
                state.files.remove(path);
            }
            if let Some(schema) = action["metaData"]["schemaString"].as_str() {
                state.schema_string = Some(schema.to_string());
            }
        }
        state.next_version = version + 1;
    }
    Ok(state)
}

/// A Delta type for an Arrow type of the hub's schemas, or None if Delta has none.
fn delta_type(data_type: &DataType) -> Option<Value> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => json!("string"),
        DataType::Int64 => json!("long"),
        DataType::Int32 => json!("integer"),
        DataType::Float64 => json!("double"),
        DataType::Boolean => json!("boolean"),
        DataType::Date32 => json!("date"),
        // Parquet stores these adjusted to UTC: Delta's `timestamp`.
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(_)) => {
            json!("timestamp")
        }
        DataType::Struct(fields) => struct_type(fields.iter().map(|f| f.as_ref()))?,
        _ => return None,
    })
}

fn struct_type<'a>(fields: impl Iterator<Item = &'a Field>) -> Option<Value> {
    let fields = fields
        .map(|f| {
            Some(json!({
                "name": f.name(),
                "type": delta_type(f.data_type())?,
                "nullable": f.is_nullable(),
                "metadata": {},
            }))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(json!({"type": "struct", "fields": fields}))
}

/// The Delta schema string of a stored schema.
pub fn schema_string(schema: &Schema) -> Result<String, HubError> {
    let value = struct_type(schema.fields().iter().map(|f| f.as_ref())).ok_or_else(|| {
        HubError::Internal("the dataset has a column type Delta Lake cannot hold".into())
    })?;
    Ok(value.to_string())
}

/// A table id that stays the same for a dataset: Delta wants a UUID per table, and a
/// city's table of a dataset is one table however often it is re-derived.
fn table_id(dataset: &str) -> String {
    let hash = |seed: u64| {
        dataset.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x6c62_272e_07bb_0142));
    format!(
        "{:08x}-{:04x}-8{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn mtime_ms(path: &Path) -> i64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// Links (or copies) a segment into the table, leaving one already there.
fn place(from: &Path, to: &Path) -> Result<(), HubError> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        // Another file system (EXDEV) or one without links: a copy, synced.
        Err(_) => {
            let tmp = to.with_extension("parquet.tmp");
            fs::copy(from, &tmp).map_err(io_err(format!("copying {}", from.display())))?;
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_err(format!("syncing {}", tmp.display())))?;
            fs::rename(&tmp, to).map_err(io_err(format!("placing {}", to.display())))
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// The version committed, or None when the table was already current.
    pub version: Option<u64>,
    pub files_added: usize,
}

/// Brings the table of a dataset up to its snapshot's sealed segments: one commit with
/// every segment not yet in the table (and the schema, when it changed). Idempotent.
pub fn sync(table: &Path, dataset: &DatasetDef, snapshot: &Snapshot) -> Result<Synced, HubError> {
    let log_dir = table.join("_delta_log");
    let state = read_log(&log_dir)?;
    let schema = schema_string(&snapshot.schema)?;
    let mut adds = Vec::new();
    let mut newest = 0;
    for segment in &snapshot.segments {
        let relative = segment
            .path
            .strip_prefix("segments/")
            .unwrap_or(&segment.path)
            .to_string();
        if state.files.contains(&relative) {
            continue;
        }
        let from = snapshot.dir.join(&segment.path);
        let to = table.join(&relative);
        place(&from, &to)?;
        let modified = mtime_ms(&from);
        newest = newest.max(modified);
        adds.push(json!({"add": {
            "path": relative,
            "partitionValues": {},
            "size": segment.bytes,
            "modificationTime": modified,
            "dataChange": true,
            "stats": json!({"numRecords": segment.rows}).to_string(),
        }}));
    }
    let schema_changed = state.schema_string.as_deref() != Some(schema.as_str());
    if adds.is_empty() && !schema_changed {
        return Ok(Synced {
            version: None,
            files_added: 0,
        });
    }
    for dir in adds
        .iter()
        .filter_map(|a| a["add"]["path"].as_str())
        .filter_map(|p| table.join(p).parent().map(Path::to_path_buf))
        .collect::<std::collections::BTreeSet<_>>()
    {
        crate::log::sync_dir(&dir).map_err(io_err(format!("syncing {}", dir.display())))?;
    }
    // The hub never reads the clock: a commit's time is its newest file's.
    let at = if newest > 0 {
        newest
    } else {
        mtime_ms(&snapshot.dir)
    };
    let version = state.next_version;
    let mut actions = vec![json!({"commitInfo": {
        "timestamp": at,
        "operation": "WRITE",
        "operationParameters": {"mode": "Append"},
        "isBlindAppend": true,
        "engineInfo": concat!("citybrain/", env!("CARGO_PKG_VERSION")),
    }})];
    if version == 0 {
        actions.push(json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}));
    }
    if schema_changed {
        actions.push(json!({"metaData": {
            "id": table_id(dataset.name.as_str()),
            "name": dataset.name.as_str(),
            "description": dataset.description,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema,
            "partitionColumns": [],
            "configuration": BTreeMap::from([("delta.appendOnly", "true")]),
            "createdTime": at,
        }}));
    }
    let files_added = adds.len();
    actions.extend(adds);
    commit(&log_dir, version, &actions)?;
    Ok(Synced {
        version: Some(version),
        files_added,
    })
}

fn commit(log_dir: &Path, version: u64, actions: &[Value]) -> Result<(), HubError> {
    fs::create_dir_all(log_dir).map_err(io_err(format!("creating {}", log_dir.display())))?;
    let name = format!("{version:020}.json");
    let tmp = log_dir.join(format!(".{name}.tmp"));
    let mut text = String::new();
    for action in actions {
        text.push_str(&action.to_string());
        text.push('\n');
    }
    let mut file = fs::File::create(&tmp).map_err(io_err(format!("writing {}", tmp.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    // A link fails if the version exists: a commit never replaces another.
    let linked = fs::hard_link(&tmp, log_dir.join(&name));
    let _ = fs::remove_file(&tmp);
    linked.map_err(io_err(format!(
        "committing {}",
        log_dir.join(&name).display()
    )))?;
    crate::log::sync_dir(log_dir).map_err(io_err(format!("syncing {}", log_dir.display())))
}

/// Removes a table (its dataset was deleted or may no longer leave the hub).
pub fn remove(table: &Path) -> Result<(), HubError> {
    match fs::remove_dir_all(table) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(io_err(format!("removing {}", table.display()))(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ids_are_uuid_shaped_and_stable() {
        let id = table_id("environment.air_quality");
        assert_eq!(id, table_id("environment.air_quality"));
        assert_ne!(id, table_id("environment.noise"));
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "{id}");
    }

    #[test]
    fn every_hub_type_has_a_delta_type() {
        use crate::schema::FieldType;
        for t in [
            FieldType::String,
            FieldType::Int,
            FieldType::Float,
            FieldType::Bool,
            FieldType::Timestamp,
            FieldType::Date,
            FieldType::Money,
            FieldType::Geo,
        ] {
            assert!(delta_type(&t.arrow_type()).is_some(), "{}", t.name());
        }
    }
}
