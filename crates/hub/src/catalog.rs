//! The catalog of datasets, kept in SQLite (`DATA/catalog.sqlite`) or, in a cluster, in
//! the PostgreSQL database the nodes share (`citybrain_metadb`).
//!
//! Either gives transactions and crash safety for the small, precious metadata; the bulk
//! records live in the logs and segments. Definitions are stored as JSON so the catalog
//! schema does not change each time a dataset gains a property.

use citybrain_core::{DatasetName, Timestamp};
use citybrain_metadb::{Db, DbError, Place, Row, Schema, params};

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
    db: Db,
}

fn sql_err(context: &'static str) -> impl FnOnce(DbError) -> HubError {
    move |source| HubError::Catalog { context, source }
}

/// The catalog's tables, and the seal book's (`cluster::SealBook`), which lives beside it.
pub(crate) const SCHEMA: Schema = Schema {
    component: "catalog",
    sqlite: "CREATE TABLE IF NOT EXISTS datasets (
                 name TEXT PRIMARY KEY,
                 definition TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL,
                 version INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS seal_heads (
                 dataset TEXT PRIMARY KEY,
                 last INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS seals (
                 dataset TEXT NOT NULL,
                 owner TEXT NOT NULL,
                 generation INTEGER NOT NULL,
                 number INTEGER NOT NULL,
                 through INTEGER NOT NULL,
                 segments TEXT NOT NULL,
                 keys TEXT NOT NULL DEFAULT '[]',
                 PRIMARY KEY (dataset, owner, generation)
             );
             CREATE TABLE IF NOT EXISTS leases (
                 name TEXT PRIMARY KEY,
                 node TEXT NOT NULL,
                 address TEXT NOT NULL,
                 until_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS feed_positions (
                 subscriber TEXT NOT NULL,
                 origin TEXT NOT NULL,
                 dataset TEXT NOT NULL,
                 position INTEGER NOT NULL,
                 PRIMARY KEY (subscriber, origin, dataset)
             );",
    postgres: &[
        include_str!("../migrations/postgres/0001_catalog.sql"),
        include_str!("../migrations/postgres/0002_seals.sql"),
        include_str!("../migrations/postgres/0003_seal_keys.sql"),
        include_str!("../migrations/postgres/0004_leases.sql"),
        include_str!("../migrations/postgres/0005_feed_positions.sql"),
    ],
};

fn entry_from_row(row: &Row) -> Result<CatalogEntry, String> {
    let name = row.text(0).map_err(|e| e.to_string())?;
    let definition = row.text(1).map_err(|e| e.to_string())?;
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
        created_at: Timestamp(row.int(2).map_err(|e| e.to_string())?),
        updated_at: Timestamp(row.int(3).map_err(|e| e.to_string())?),
        version: row.int(4).map_err(|e| e.to_string())?,
    })
}

const COLUMNS: &str = "name, definition, created_at, updated_at, version";

impl Catalog {
    pub fn open(place: &Place) -> Result<Self, HubError> {
        let db = Db::open(place, &SCHEMA).map_err(sql_err("opening the catalog"))?;
        Ok(Self { db })
    }

    /// Every readable definition, and the rows that could not be read: one bad row (say, a
    /// definition an older version accepted and this one refuses) must not keep the others
    /// from opening.
    pub fn list(&self) -> Result<(Vec<CatalogEntry>, Vec<SkippedDefinition>), HubError> {
        let rows = self
            .db
            .query(
                &format!("SELECT {COLUMNS} FROM datasets ORDER BY name"),
                &[],
            )
            .map_err(sql_err("listing datasets"))?;
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        for row in &rows {
            match entry_from_row(row) {
                Ok(entry) => entries.push(entry),
                Err(reason) => skipped.push(SkippedDefinition {
                    name: row
                        .text(0)
                        .unwrap_or_else(|_| String::from("(unreadable name)")),
                    reason,
                }),
            }
        }
        Ok((entries, skipped))
    }

    pub fn get(&self, name: &DatasetName) -> Result<Option<CatalogEntry>, HubError> {
        self.db
            .query_opt(
                &format!("SELECT {COLUMNS} FROM datasets WHERE name = ?1"),
                params![name.as_str()],
            )
            .map_err(sql_err("reading a dataset"))?
            .map(|row| {
                entry_from_row(&row)
                    .map_err(|e| HubError::Internal(format!("catalog definition unreadable: {e}")))
            })
            .transpose()
    }

    /// Runs `change` as one transaction.
    fn change(
        &mut self,
        what: &'static str,
        change: impl FnOnce(&Db) -> Result<(), HubError>,
    ) -> Result<(), HubError> {
        self.db.begin().map_err(sql_err("starting a transaction"))?;
        let done = change(&self.db).and_then(|()| self.db.commit().map_err(sql_err(what)));
        if done.is_err() {
            // The change is undone; its error is the one to report.
            let _ = self.db.rollback();
        }
        done
    }

    /// Inserts new definitions in one transaction (a dataset and its dead-letter dataset).
    pub fn insert(&mut self, defs: &[&DatasetDef], now: Timestamp) -> Result<(), HubError> {
        self.change("committing a new dataset", |db| {
            for def in defs {
                let json = serde_json::to_string(def).expect("definitions serialise");
                db.execute(
                    "INSERT INTO datasets (name, definition, created_at, updated_at, version)
                     VALUES (?1, ?2, ?3, ?3, 1)",
                    params![def.name.as_str(), json, now.0],
                )
                .map_err(sql_err("inserting a dataset"))?;
            }
            citybrain_core::failpoint::step("catalog.commit").map_err(|source| HubError::Io {
                context: "committing a new dataset".into(),
                source,
            })
        })
    }

    /// Removes definitions in one transaction (a dataset and its dead-letter dataset).
    pub fn delete(&mut self, names: &[&DatasetName]) -> Result<(), HubError> {
        self.change("committing a deletion", |db| {
            for name in names {
                db.execute(
                    "DELETE FROM datasets WHERE name = ?1",
                    params![name.as_str()],
                )
                .map_err(sql_err("deleting a dataset"))?;
            }
            Ok(())
        })
    }

    pub fn update(&mut self, def: &DatasetDef, now: Timestamp) -> Result<(), HubError> {
        let json = serde_json::to_string(def).expect("definitions serialise");
        self.db
            .execute(
                "UPDATE datasets SET definition = ?2, updated_at = ?3, version = version + 1
                 WHERE name = ?1",
                params![def.name.as_str(), json, now.0],
            )
            .map_err(sql_err("updating a dataset"))?;
        Ok(())
    }
}
