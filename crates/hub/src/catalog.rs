//! The catalog of datasets, kept in SQLite (`DATA/catalog.sqlite`).
//!
//! SQLite gives transactions and crash safety for the small, precious metadata; the bulk
//! records live in the logs and segments. Definitions are stored as JSON so the catalog
//! schema does not change each time a dataset gains a property.

use std::path::Path;

use citybrain_core::{DatasetName, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::HubError;
use crate::schema::DatasetDef;

/// A catalog row.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub def: DatasetDef,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Increases by one at every accepted schema change.
    pub version: i64,
}

/// A catalog row that could not be opened, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedDefinition {
    /// The row's name as stored (not necessarily a valid dataset name).
    pub name: String,
    pub reason: String,
}

impl std::fmt::Display for SkippedDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dataset '{}': {}", self.name, self.reason)
    }
}

#[derive(Debug)]
pub struct Catalog {
    conn: Connection,
}

fn sql_err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> HubError {
    move |source| HubError::Catalog { context, source }
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Self, HubError> {
        let conn = Connection::open(path).map_err(sql_err("opening the catalog"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS datasets (
                 name TEXT PRIMARY KEY,
                 definition TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL,
                 version INTEGER NOT NULL
             );",
        )
        .map_err(sql_err("creating the catalog tables"))?;
        Ok(Self { conn })
    }

    /// Every readable definition, and the rows that could not be read: one bad row (say, a
    /// definition an older version accepted and this one refuses) must not keep the others
    /// from opening.
    pub fn list(&self) -> Result<(Vec<CatalogEntry>, Vec<SkippedDefinition>), HubError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, definition, created_at, updated_at, version FROM datasets ORDER BY name",
            )
            .map_err(sql_err("listing datasets"))?;
        let mut rows = stmt.query([]).map_err(sql_err("listing datasets"))?;
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err("listing datasets"))? {
            let name = row
                .get::<_, String>(0)
                .unwrap_or_else(|_| String::from("(unreadable name)"));
            let read = || -> Result<CatalogEntry, String> {
                let definition: String = row.get(1).map_err(|e| e.to_string())?;
                let def: DatasetDef = serde_json::from_str(&definition)
                    .map_err(|e| format!("the definition is unreadable: {e}"))?;
                if def.name.as_str() != name {
                    return Err(format!(
                        "the definition names another dataset, '{}'",
                        def.name
                    ));
                }
                Ok(CatalogEntry {
                    def,
                    created_at: Timestamp(row.get(2).map_err(|e| e.to_string())?),
                    updated_at: Timestamp(row.get(3).map_err(|e| e.to_string())?),
                    version: row.get(4).map_err(|e| e.to_string())?,
                })
            };
            match read() {
                Ok(entry) => entries.push(entry),
                Err(reason) => skipped.push(SkippedDefinition { name, reason }),
            }
        }
        Ok((entries, skipped))
    }

    pub fn get(&self, name: &DatasetName) -> Result<Option<CatalogEntry>, HubError> {
        self.conn
            .query_row(
                "SELECT definition, created_at, updated_at, version FROM datasets WHERE name = ?1",
                params![name.as_str()],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(sql_err("reading a dataset"))?
            .map(|(definition, created, updated, version)| {
                let def = serde_json::from_str(&definition).map_err(|e| {
                    HubError::Internal(format!("catalog definition unreadable: {e}"))
                })?;
                Ok(CatalogEntry {
                    def,
                    created_at: Timestamp(created),
                    updated_at: Timestamp(updated),
                    version,
                })
            })
            .transpose()
    }

    /// Inserts new definitions in one transaction (a dataset and its dead-letter dataset).
    pub fn insert(&mut self, defs: &[&DatasetDef], now: Timestamp) -> Result<(), HubError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql_err("starting a transaction"))?;
        for def in defs {
            let json = serde_json::to_string(def).expect("definitions serialise");
            tx.execute(
                "INSERT INTO datasets (name, definition, created_at, updated_at, version)
                 VALUES (?1, ?2, ?3, ?3, 1)",
                params![def.name.as_str(), json, now.0],
            )
            .map_err(sql_err("inserting a dataset"))?;
        }
        if let Err(source) = citybrain_core::failpoint::step("catalog.commit") {
            return Err(HubError::Io {
                context: "committing a new dataset".into(),
                source,
            });
        }
        tx.commit().map_err(sql_err("committing a new dataset"))
    }

    /// Removes definitions in one transaction (a dataset and its dead-letter dataset).
    pub fn delete(&mut self, names: &[&DatasetName]) -> Result<(), HubError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql_err("starting a transaction"))?;
        for name in names {
            tx.execute(
                "DELETE FROM datasets WHERE name = ?1",
                params![name.as_str()],
            )
            .map_err(sql_err("deleting a dataset"))?;
        }
        tx.commit().map_err(sql_err("committing a deletion"))
    }

    pub fn update(&mut self, def: &DatasetDef, now: Timestamp) -> Result<(), HubError> {
        let json = serde_json::to_string(def).expect("definitions serialise");
        self.conn
            .execute(
                "UPDATE datasets SET definition = ?2, updated_at = ?3, version = version + 1
                 WHERE name = ?1",
                params![def.name.as_str(), json, now.0],
            )
            .map_err(sql_err("updating a dataset"))?;
        Ok(())
    }
}
