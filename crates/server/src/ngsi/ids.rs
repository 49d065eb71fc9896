//! The ids of each NGSI-LD dataset's live entities, held in memory so that a create asks
//! "does it exist?" without a SQL data call (that lookup was most of a create's time and
//! grew with the dataset: docs/benchmarks.md "NGSI-LD entity creates"), and so that two
//! creates of one id at once cannot both succeed (each reserves the id first).
//!
//! Key decision: exact, not a cache. On a dataset's first create, a change-feed
//! subscription from the dataset's head is taken *before* one SQL read (as the system) of
//! the distinct ids NGSI-LD sees, so every batch stored afterwards, whatever brought it in
//! (HTTP records, MQTT, NGSI-LD), reaches the set. The feed hands a batch to subscribers
//! before its ingest call returns, so draining the subscription before each check sees
//! every write that finished before the create began; a thread also drains it every
//! second, so batches do not pile up between creates. Deleted ids leave the set, and rows
//! stored before their tombstone are not counted again.
//!
//! Where it is not used: on a node reading a cluster's records (`Hub::reads_other_nodes`)
//! other nodes' writes never reach this node's feed, so a create there asks SQL, as before.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use citybrain_hub::{Change, DatasetDef, NgsiLdDef, Positions, Subscription};
use tokio::sync::OnceCell;

use super::Problem;
use crate::AppState;

/// What a create may do with an id.
pub(super) enum Reserve {
    /// Held by a live entity or by a create in flight.
    Taken,
    /// Held for this create until the guard is dropped (kept if [`Reserved::stored`]).
    Reserved(Reserved),
    /// No index here: ask SQL.
    Unindexed,
}

/// An id reserved by a create in flight.
pub(super) struct Reserved {
    known: Arc<Known>,
    id: String,
    stored: bool,
}

impl Reserved {
    /// The entity is stored: the id stays taken.
    pub(super) fn stored(mut self) {
        self.stored = true;
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut inner = self.known.lock();
        inner.pending.remove(&self.id);
        if self.stored {
            inner.ids.insert(std::mem::take(&mut self.id));
        }
    }
}

struct Inner {
    ids: HashSet<String>,
    pending: HashSet<String>,
    feed: Subscription,
}

/// One dataset's ids and the subscription that keeps them current.
pub(super) struct Known {
    dataset: String,
    id_field: String,
    tombstones: Arc<super::deleted::Tombstones>,
    inner: Mutex<Inner>,
}

impl Known {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.drain(&mut inner);
        inner
    }

    /// Adds the ids of every batch stored since the last drain.
    fn drain(&self, inner: &mut Inner) {
        let mut deleted: Option<BTreeMap<String, i64>> = None;
        while let Some(change) = inner.feed.try_recv() {
            let deleted = deleted.get_or_insert_with(|| self.tombstones.of(&self.dataset));
            add_ids(&mut inner.ids, &change, &self.id_field, deleted);
        }
    }

    /// The id is gone (an NGSI-LD delete): a create may take it again.
    pub(super) fn forget(&self, ids: &[String]) {
        let mut inner = self.lock();
        for id in ids {
            inner.ids.remove(id);
        }
    }
}

fn add_ids(
    ids: &mut HashSet<String>,
    change: &Change,
    field: &str,
    deleted: &BTreeMap<String, i64>,
) {
    for batch in &change.batches {
        let (Some(column), Some(stamps)) = (
            batch.column_by_name(field),
            batch.column_by_name("_ingested_at"),
        ) else {
            continue;
        };
        let (Some(column), Some(stamps)) = (
            column.as_string_opt::<i32>(),
            stamps.as_primitive_opt::<TimestampMicrosecondType>(),
        ) else {
            continue;
        };
        for row in 0..column.len() {
            if column.is_null(row) {
                continue;
            }
            let id = column.value(row);
            // A row stored at or before its id's tombstone is the deleted entity's history.
            if deleted.get(id).is_some_and(|at| stamps.value(row) <= *at) {
                continue;
            }
            if !ids.contains(id) {
                ids.insert(id.to_string());
            }
        }
    }
}

/// Every NGSI-LD dataset's index, built on its first create.
#[derive(Default)]
pub struct EntityIds {
    sets: Mutex<HashMap<String, Arc<OnceCell<Arc<Known>>>>>,
}

impl std::fmt::Debug for EntityIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntityIds(..)")
    }
}

impl EntityIds {
    /// Reserves `id` in `def` for a create, if this node keeps an index.
    pub(super) async fn reserve(
        &self,
        state: &AppState,
        def: &DatasetDef,
        ngsi: &NgsiLdDef,
        id: &str,
    ) -> Result<Reserve, Problem> {
        let Some(known) = self.known(state, def, ngsi).await? else {
            return Ok(Reserve::Unindexed);
        };
        let mut inner = known.lock();
        if inner.ids.contains(id) || !inner.pending.insert(id.to_string()) {
            return Ok(Reserve::Taken);
        }
        drop(inner);
        Ok(Reserve::Reserved(Reserved {
            known,
            id: id.to_string(),
            stored: false,
        }))
    }

    /// Ids deleted from `dataset`, if it has an index.
    pub(super) fn forget(&self, dataset: &str, ids: &[String]) {
        let cell = self
            .sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(dataset)
            .cloned();
        if let Some(known) = cell.as_ref().and_then(|c| c.get()) {
            known.forget(ids);
        }
    }

    /// A dataset definition changed or went: its index is built again on the next create.
    pub fn reset(&self, dataset: &str) {
        self.sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(dataset);
    }

    async fn known(
        &self,
        state: &AppState,
        def: &DatasetDef,
        ngsi: &NgsiLdDef,
    ) -> Result<Option<Arc<Known>>, Problem> {
        if state.hub.reads_other_nodes() {
            return Ok(None);
        }
        let cell = self
            .sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(def.name.to_string())
            .or_default()
            .clone();
        let known = cell
            .get_or_try_init(|| build(state, def, ngsi))
            .await?
            .clone();
        Ok(Some(known))
    }
}

/// Subscribes from the dataset's head, then reads the ids NGSI-LD sees (see the module).
async fn build(
    state: &AppState,
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
) -> Result<Arc<Known>, Problem> {
    let hub = state.hub.clone();
    let name = def.name.clone();
    let feed = crate::blocking(move || {
        let from: Positions = hub
            .head(&name)
            .map(|p| (name.clone(), p))
            .into_iter()
            .collect();
        Ok(hub.subscribe(std::slice::from_ref(&name), &from)?)
    })
    .await?;
    let sql = format!(
        "SELECT DISTINCT {} AS id FROM {}",
        ngsi.id,
        super::source(state, def, ngsi)
    );
    let result = state
        .sql
        .query(&sql)
        .await
        .map_err(|e| Problem::internal(format!("reading the ids of {}: {e}", def.name)))?;
    let mut ids = HashSet::new();
    for batch in &result.batches {
        if let Some(column) = batch.column(0).as_string_opt::<i32>() {
            ids.extend(column.iter().flatten().map(str::to_string));
        }
    }
    let known = Arc::new(Known {
        dataset: def.name.to_string(),
        id_field: ngsi.id.clone(),
        tombstones: state.ngsi_deleted.clone(),
        inner: Mutex::new(Inner {
            ids,
            pending: HashSet::new(),
            feed,
        }),
    });
    let weak: Weak<Known> = Arc::downgrade(&known);
    std::thread::Builder::new()
        .name("citybrain-ngsi-ids".into())
        .spawn(move || {
            while let Some(known) = weak.upgrade() {
                drop(known.lock());
                drop(known);
                std::thread::sleep(Duration::from_secs(1));
            }
        })
        .map_err(|e| Problem::internal(format!("starting the id index of {}: {e}", def.name)))?;
    Ok(known)
}
