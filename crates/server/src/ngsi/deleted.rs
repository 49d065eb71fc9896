//! Deleted entities (`DELETE /entities/{id}`, `entityOperations/delete`). A hub never
//! rewrites stored records, so a deletion is a tombstone: the dataset, the id and the
//! instant on the hub's ingest clock, kept in `DATA/ngsi/deleted.json` (written whole,
//! fsynced, renamed). NGSI-LD reads skip the rows of that id ingested up to the tombstone,
//! so the entity is gone for NGSI-LD and its id may be created again as a new entity; SQL
//! still reads every row, the entity's history, as the audit trail records who deleted it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use citybrain_core::Timestamp;

use citybrain_ngsi::convert::lit;

const FILE: &str = "ngsi/deleted.json";

/// dataset → entity id → deleted at (µs of the hub's ingest clock).
type Map = BTreeMap<String, BTreeMap<String, i64>>;

#[derive(Debug)]
pub struct Tombstones {
    path: PathBuf,
    map: Mutex<Map>,
}

impl Tombstones {
    /// The tombstones kept in `data_dir`; an unreadable file is set aside (logged) so the
    /// server still starts, and the entities it named come back.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(FILE);
        let map = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                let aside = path.with_extension(format!("unreadable-{}", crate::now().0));
                tracing::error!(message = "NGSI-LD tombstones did not read; the file is set aside.", path = %path.display(), %error);
                let _ = std::fs::rename(&path, &aside);
                Map::new()
            }),
            Err(_) => Map::new(),
        };
        Self {
            path,
            map: Mutex::new(map),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `ids` of `dataset` were deleted at `at`, durably, before answering.
    pub fn delete(&self, dataset: &str, ids: &[String], at: Timestamp) -> std::io::Result<()> {
        use std::io::Write;
        let mut map = self.lock();
        let mut next = map.clone();
        let entry = next.entry(dataset.to_string()).or_default();
        for id in ids {
            entry.insert(id.clone(), at.0);
        }
        let dir = self.path.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".deleted.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&next).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()?;
        *map = next;
        Ok(())
    }

    /// `dataset`'s deleted ids and when each was deleted (µs of the hub's ingest clock).
    pub fn of(&self, dataset: &str) -> BTreeMap<String, i64> {
        self.lock().get(dataset).cloned().unwrap_or_default()
    }

    /// What an NGSI-LD read of `dataset` selects from: the dataset, without the rows its
    /// tombstones cover (`id_field` names the entity).
    pub fn source(&self, dataset: &str, id_field: &str) -> String {
        let map = self.lock();
        let Some(ids) = map.get(dataset).filter(|m| !m.is_empty()) else {
            return dataset.to_string();
        };
        let covered: Vec<String> = ids
            .iter()
            .map(|(id, at)| {
                format!(
                    "({id_field} = {} AND _ingested_at <= TIMESTAMP '{}')",
                    lit(id),
                    Timestamp(*at)
                )
            })
            .collect();
        format!(
            "(SELECT * FROM {dataset} WHERE NOT ({})) AS _ngsi_live",
            covered.join(" OR ")
        )
    }
}
