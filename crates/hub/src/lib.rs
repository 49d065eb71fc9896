//! The data hub: the catalog of datasets, validated durable ingest, and storage that
//! queries read from.
//!
//! Key decision: an ingest call is acknowledged only after its records are in the
//! dataset's append-only log and fsynced; sealing into Parquet happens later, in the
//! background, and is committed by a manifest, so no crash loses or duplicates a record.
//! The hub knows nothing about HTTP or SQL: the server crate calls [`Hub::ingest`], and
//! the SQL crate reads [`store::Snapshot`]s. It never reads the clock: callers pass `now`.

pub mod catalog;
pub mod cluster;
pub mod cluster_feed;
pub mod decode;
mod error;
pub mod feed;
mod ingest;
mod ipc_check;
pub mod log;
pub mod mapping;
pub mod open_table;
mod parquet_check;
mod parquet_in;
pub mod profile;
pub mod schema;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use citybrain_core::{DatasetName, Timestamp};
use serde::Serialize;

pub use catalog::SkippedDefinition;
pub use cluster_feed::Origins;
pub use decode::{DecodeError, Format, IngestLimits, Problem};
pub use error::{HubError, MAX_LISTED_PROBLEMS};
pub use feed::{Change, Position, Positions, Recv, Subscription};
pub(crate) use ingest::with_ingested_at_of;
pub use ingest::{IngestCall, IngestReport, MAX_KEY_LEN, OnError, RejectionReport, check_key};
pub use schema::{
    Classification, DatasetDef, FieldDef, FieldType, MaskKind, NgsiLdDef, SchemaProblem,
    SharingClass, geo_points,
};
use store::{DatasetStore, Snapshot};

/// Settings of the embedded hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Seal a dataset's tail into Parquet once it holds this many rows.
    pub seal_rows: usize,
    /// The city's zone: feed mappings read local times in it unless they name their own.
    pub zone: citybrain_core::TimeZone,
    /// Keep every exportable dataset's sealed segments as a Delta Lake table under this
    /// directory (`open_table`); None: no open tables.
    pub open_tables: Option<PathBuf>,
    /// Keep the unsealed log in this shared log (NATS JetStream) instead of files here.
    pub shared_log: Option<Arc<dyn log::SharedLog>>,
    /// Keep the catalog in this PostgreSQL database instead of `DATA/catalog.sqlite`.
    pub catalog: Option<citybrain_metadb::Postgres>,
    /// With a shared log and the catalog in PostgreSQL: publish sealed segments here and
    /// read the other nodes' records, so every node sees the whole cluster's (`cluster`).
    pub segments: Option<Arc<dyn cluster::SegmentStore>>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            seal_rows: 1_000_000,
            zone: citybrain_core::CityProfile::hangzhou().time_zone,
            open_tables: None,
            shared_log: None,
            catalog: None,
            segments: None,
        }
    }
}

/// What the catalog and storage know of a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    #[serde(flatten)]
    pub def: DatasetDef,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub rows: u64,
    pub unsealed_rows: u64,
    pub segments: usize,
    pub segment_bytes: u64,
    /// Bytes on disk, unsealed logs and sealed segments together.
    pub stored_bytes: u64,
    /// When the newest stored batch was acknowledged (its ingest stamp; survives restarts).
    pub last_ingest: Option<String>,
}

pub(crate) struct Entry {
    def: DatasetDef,
    store: Arc<DatasetStore>,
    /// Held from stamping a batch until it is stored and published, so a dataset's
    /// batches are stored, and handed to the feed, in stamp order.
    order: Arc<Mutex<()>>,
    /// In a cluster, what the other nodes hold of this dataset.
    foreign: Arc<Mutex<cluster::Foreign>>,
}

/// The hub over one data directory.
pub struct Hub {
    dir: PathBuf,
    config: HubConfig,
    /// In a cluster that shares segments: how this node reads the others.
    cluster: Option<Arc<cluster::Cluster>>,
    catalog: Mutex<catalog::Catalog>,
    datasets: Arc<RwLock<BTreeMap<DatasetName, Arc<Entry>>>>,
    sealers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Serialises the open tables' commits (seals in the background, definitions, start).
    open_tables: Arc<Mutex<()>>,
    skipped: Vec<SkippedDefinition>,
    limits: IngestLimits,
    feed: Arc<feed::Feed>,
    /// The last ingest stamp given out (µs): stamps are strictly increasing across the
    /// hub, so each is a batch's unique place in the feed, even if the wall clock steps back.
    last_stamp: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Opens the hub in `dir`, recovering every dataset's storage.
    pub fn open(dir: &Path, config: HubConfig) -> Result<Self, HubError> {
        std::fs::create_dir_all(dir.join("datasets")).map_err(|source| HubError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let place = match &config.catalog {
            Some(pg) => citybrain_metadb::Place::Postgres(pg.clone()),
            None => citybrain_metadb::Place::Sqlite(dir.join("catalog.sqlite")),
        };
        let catalog = catalog::Catalog::open(&place)?;
        let cluster = match (&config.segments, &config.shared_log, &config.catalog) {
            (None, _, _) => None,
            (Some(segments), Some(log), Some(_)) => Some(Arc::new(cluster::Cluster {
                log: log.clone(),
                segments: segments.clone(),
                book: cluster::SealBook::open(&place)?,
                leases: cluster::Leases::open(&place)?,
                positions: cluster::FeedBook::open(&place)?,
            })),
            (Some(_), _, _) => {
                return Err(HubError::Internal(
                    "shared segments need the shared log and the catalog in PostgreSQL".into(),
                ));
            }
        };
        let mut datasets = BTreeMap::new();
        let mut last_stamp = i64::MIN;
        let (entries, skipped) = catalog.list()?;
        for skip in &skipped {
            tracing::error!(
                message = "A catalog definition is unreadable; the dataset stays closed, the others open.",
                dataset = %skip.name,
                reason = %skip.reason
            );
        }
        for entry in entries {
            let entry = open_entry(dir, &config, cluster.as_ref(), entry.def)?;
            last_stamp = last_stamp.max(entry.store.max_stamp().unwrap_or(i64::MIN));
            datasets.insert(entry.def.name.clone(), Arc::new(entry));
        }
        let hub = Self {
            dir: dir.to_path_buf(),
            config,
            cluster,
            catalog: Mutex::new(catalog),
            datasets: Arc::new(RwLock::new(datasets)),
            sealers: Mutex::new(Vec::new()),
            open_tables: Arc::default(),
            skipped,
            limits: IngestLimits::default(),
            feed: Arc::new(feed::Feed::new(dir)),
            last_stamp: std::sync::atomic::AtomicI64::new(last_stamp),
        };
        hub.refresh_open_tables();
        Ok(hub)
    }

    /// At start: every exportable dataset's open table brought up to its sealed segments
    /// (a crash may have come between a seal and its commit), and tables of datasets
    /// deleted or no longer exportable removed.
    fn refresh_open_tables(&self) {
        let Some(root) = &self.config.open_tables else {
            return;
        };
        let entries = self.entries();
        for entry in &entries {
            refresh_open_table(root, &self.open_tables, &entry.def, &entry.store);
        }
        let Ok(dirs) = std::fs::read_dir(root) else {
            return;
        };
        for dir in dirs.flatten().map(|d| d.path()) {
            let known = dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| entries.iter().any(|e| e.def.name.as_str() == n));
            // Only what is a Delta table: the root may hold other things.
            if !known && dir.join("_delta_log").is_dir() {
                tracing::info!(message = "Removing the open table of a dataset that is gone.", table = %dir.display());
                if let Err(error) = open_table::remove(&dir) {
                    tracing::error!(message = "Could not remove an open table.", %error);
                }
            }
        }
    }

    /// After a definition changed or a seal: the dataset's open table, if tables are kept.
    fn refresh_open_table_of(&self, name: &DatasetName) {
        if let (Some(root), Ok(entry)) = (&self.config.open_tables, self.entry(name)) {
            refresh_open_table(root, &self.open_tables, &entry.def, &entry.store);
        }
    }

    /// The next ingest stamp: `now`, or just after the last one if the clock has not
    /// moved on (or stepped back).
    fn next_stamp(&self, now: Timestamp) -> Timestamp {
        use std::sync::atomic::Ordering;
        let previous = self
            .last_stamp
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.0.max(last.saturating_add(1)))
            })
            .expect("the update always succeeds");
        Timestamp(now.0.max(previous.saturating_add(1)))
    }

    /// Subscribes to the change feed of `datasets` (see [`feed`]): first what was stored
    /// after `from` (everything, for a dataset `from` does not name), then each batch as
    /// it is stored. Datasets that do not exist yet are delivered once created.
    pub fn subscribe(
        &self,
        datasets: &[DatasetName],
        from: &Positions,
    ) -> Result<Subscription, HubError> {
        // Registered before the stored rows are read: a batch stored meanwhile is in both,
        // and the subscription skips the live copy.
        let (id, live, queued) = self.feed.register(datasets.iter().cloned().collect());
        let mut per_dataset = Vec::new();
        for name in datasets {
            let Ok(entry) = self.entry(name) else {
                continue;
            };
            let after = from.get(name).map(|p| p.0);
            per_dataset.push((name.clone(), entry.store.rows_after(after)?));
        }
        let catch_up = match feed::catch_up_changes(per_dataset) {
            Ok(changes) => changes,
            Err(error) => {
                self.feed.unregister(id);
                return Err(error);
            }
        };
        Ok(Subscription::new(
            self.feed.clone(),
            id,
            live,
            queued,
            catch_up,
            from,
        ))
    }

    /// [`Hub::subscribe`], and in a cluster also every other node's rows of `datasets`
    /// after `others` (their positions, per node): the change feed of the whole city, for
    /// a scene that runs on one node at a time (`cluster_feed`). Other nodes' changes
    /// carry their `origin`. Outside a cluster the same as `subscribe`.
    pub fn subscribe_all_nodes(
        &self,
        datasets: &[DatasetName],
        from: &Positions,
        others: &Origins,
    ) -> Result<Subscription, HubError> {
        let subscription = self.subscribe(datasets, from)?;
        match &self.cluster {
            None => Ok(subscription),
            Some(cluster) => subscription.with_foreign(cluster_feed::ForeignFeed::new(
                cluster.clone(),
                self.datasets.clone(),
                datasets,
                others,
            )),
        }
    }

    /// In a cluster, the leases its nodes hold on work done by one of them at a time.
    pub fn leases(&self) -> Option<&cluster::Leases> {
        self.cluster.as_ref().map(|c| &c.leases)
    }

    /// In a cluster, where each scene stands in each node's history (`cluster::FeedBook`).
    pub fn feed_book(&self) -> Option<&cluster::FeedBook> {
        self.cluster.as_ref().map(|c| &c.positions)
    }

    /// This node's id in a cluster (the owner of what it appends to the shared log).
    pub fn node_id(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.log.owner())
    }

    /// The positions `subscriber` last committed (empty if it never did).
    pub fn committed(&self, subscriber: &str) -> Result<Positions, HubError> {
        self.feed.committed(subscriber)
    }

    /// Durably records the positions `subscriber` has applied, so that after a restart it
    /// is handed only what came after them.
    pub fn commit(&self, subscriber: &str, positions: &Positions) -> Result<(), HubError> {
        self.feed.commit(subscriber, positions)
    }

    /// The position of the newest batch stored in `dataset`.
    /// Whether this node reads other nodes' records (a cluster's shared segments and log):
    /// then its change feed does not carry everything its queries see.
    pub fn reads_other_nodes(&self) -> bool {
        self.cluster.is_some()
    }

    pub fn head(&self, dataset: &DatasetName) -> Option<Position> {
        self.entry(dataset).ok()?.store.max_stamp().map(Position)
    }

    /// The catalog rows [`Hub::open`] could not read, with the reasons: their datasets are
    /// closed (not found) until the row is repaired; every other dataset is open. Already
    /// logged at open; a caller may show them too (say, on a health page).
    pub fn skipped_definitions(&self) -> &[SkippedDefinition] {
        &self.skipped
    }

    /// Sets the bounds on what one ingest call may decode (see [`IngestLimits`]).
    pub fn with_ingest_limits(mut self, limits: IngestLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn ingest_limits(&self) -> IngestLimits {
        self.limits
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every dataset's entry as it stands (the lock is not held afterwards).
    fn entries(&self) -> Vec<Arc<Entry>> {
        self.datasets
            .read()
            .expect("datasets lock")
            .values()
            .cloned()
            .collect()
    }

    fn entry(&self, name: &DatasetName) -> Result<Arc<Entry>, HubError> {
        self.datasets
            .read()
            .expect("datasets lock")
            .get(name)
            .cloned()
            .ok_or_else(|| HubError::NotFound(name.clone()))
    }

    /// Creates a dataset and its dead-letter dataset.
    pub fn create_dataset(&self, def: DatasetDef, now: Timestamp) -> Result<DatasetInfo, HubError> {
        if def.name.as_str().contains("__") {
            return Err(HubError::InvalidDefinition(vec![SchemaProblem {
                field: None,
                message: "dataset names may not contain '__': it marks datasets the hub derives"
                    .into(),
            }]));
        }
        let problems = def.check();
        if !problems.is_empty() {
            return Err(HubError::InvalidDefinition(problems));
        }
        let rejected = def.rejected_def();
        let mut catalog = self.catalog.lock().expect("catalog lock");
        let mut datasets = self.datasets.write().expect("datasets lock");
        if datasets.contains_key(&def.name) {
            return Err(HubError::AlreadyExists(def.name));
        }
        // Files left by a deleted dataset of the same name (a crash between the catalog's
        // deletion and the files') must not come back: the catalog decides.
        for d in [&def, &rejected] {
            remove_dir_if_present(&dataset_dir(&self.dir, &d.name))?;
            self.forget_shared(&d.name)?;
        }
        match catalog.insert(&[&def, &rejected], now) {
            // Another node of a cluster created it first (the shared catalog's key).
            Err(HubError::Catalog { source, .. }) if source.is_duplicate() => {
                return Err(HubError::AlreadyExists(def.name));
            }
            other => other?,
        }
        for d in [def.clone(), rejected] {
            datasets.insert(
                d.name.clone(),
                Arc::new(open_entry(
                    &self.dir,
                    &self.config,
                    self.cluster.as_ref(),
                    d,
                )?),
            );
        }
        drop(datasets);
        drop(catalog);
        self.refresh_open_table_of(&def.name);
        self.info(&def.name)
    }

    /// Deletes a dataset, its dead-letter dataset and their files. The catalog's deletion
    /// is the commit point; the files go after it (and any left by a crash are removed
    /// before a dataset of the same name is created again). Queries already running over
    /// it may fail. Returns the rows it held.
    pub fn delete_dataset(&self, name: &DatasetName) -> Result<u64, HubError> {
        if name.is_rejected() {
            return Err(HubError::ReadOnly(name.clone()));
        }
        let mut catalog = self.catalog.lock().expect("catalog lock");
        let mut datasets = self.datasets.write().expect("datasets lock");
        let entry = datasets
            .get(name)
            .cloned()
            .ok_or_else(|| HubError::NotFound(name.clone()))?;
        let rows = entry.store.snapshot().rows();
        let rejected = name.rejected();
        catalog.delete(&[name, &rejected])?;
        datasets.remove(name);
        datasets.remove(&rejected);
        drop(datasets);
        drop(catalog);
        for n in [name, &rejected] {
            self.remove_files(n)?;
        }
        Ok(rows)
    }

    /// What a deleted dataset leaves: its directory, its frames in the shared log and its
    /// open table.
    fn remove_files(&self, name: &DatasetName) -> Result<(), HubError> {
        remove_dir_if_present(&dataset_dir(&self.dir, name))?;
        self.forget_shared(name)?;
        if let Some(cluster) = &self.cluster {
            cluster.forget(name.as_str())?;
        }
        if let Some(root) = &self.config.open_tables {
            let _guard = self.open_tables.lock().expect("open tables lock");
            open_table::remove(&open_table::table_dir(root, name.as_str()))?;
        }
        Ok(())
    }

    /// Brings this node's datasets up to the catalog: what other nodes of a cluster
    /// created, changed or deleted in the shared catalog since this node read it. With
    /// the embedded catalog, which only this node writes, nothing changes. Returns the
    /// datasets opened, changed or closed.
    pub fn sync_catalog(&self) -> Result<Vec<DatasetName>, HubError> {
        let catalog = self.catalog.lock().expect("catalog lock");
        let (entries, _) = catalog.list()?;
        let mut datasets = self.datasets.write().expect("datasets lock");
        let mut changed = Vec::new();
        let listed: std::collections::BTreeSet<DatasetName> =
            entries.iter().map(|e| e.def.name.clone()).collect();
        for entry in entries {
            let name = entry.def.name.clone();
            let next = match datasets.get(&name) {
                None => open_entry(&self.dir, &self.config, self.cluster.as_ref(), entry.def)?,
                // Changed on another node, which checked that stored data stays readable.
                Some(current) if current.def != entry.def => {
                    current.store.set_schema(entry.def.arrow_schema())?;
                    Entry {
                        def: entry.def,
                        store: current.store.clone(),
                        order: current.order.clone(),
                        foreign: current.foreign.clone(),
                    }
                }
                Some(_) => continue,
            };
            datasets.insert(name.clone(), Arc::new(next));
            changed.push(name);
        }
        let gone: Vec<DatasetName> = datasets
            .keys()
            .filter(|name| !listed.contains(*name))
            .cloned()
            .collect();
        for name in &gone {
            datasets.remove(name);
        }
        drop(datasets);
        drop(catalog);
        for name in gone {
            self.remove_files(&name)?;
            changed.push(name);
        }
        for name in &changed {
            if !name.is_rejected() {
                self.refresh_open_table_of(name);
            }
        }
        Ok(changed)
    }

    /// Drops a dataset's frames from the shared log, if there is one.
    fn forget_shared(&self, name: &DatasetName) -> Result<(), HubError> {
        match &self.config.shared_log {
            Some(shared) => {
                shared
                    .forget_all(name.as_str())
                    .map_err(|source| HubError::LogUnavailable {
                        log: shared.describe(),
                        context: format!("dropping {name}"),
                        source,
                    })
            }
            None => Ok(()),
        }
    }

    /// Replaces a dataset's definition if the change keeps stored data readable.
    pub fn update_dataset(&self, def: DatasetDef, now: Timestamp) -> Result<DatasetInfo, HubError> {
        let mut catalog = self.catalog.lock().expect("catalog lock");
        let old = self.entry(&def.name)?;
        if def.name.is_rejected() {
            return Err(HubError::ReadOnly(def.name));
        }
        let problems = def.check_change_from(&old.def);
        if !problems.is_empty() {
            return Err(HubError::BreakingChange(problems));
        }
        catalog.update(&def, now)?;
        old.store.set_schema(def.arrow_schema())?;
        let entry = Arc::new(Entry {
            def: def.clone(),
            store: old.store.clone(),
            order: old.order.clone(),
            foreign: old.foreign.clone(),
        });
        self.datasets
            .write()
            .expect("datasets lock")
            .insert(def.name.clone(), entry);
        drop(catalog);
        self.refresh_open_table_of(&def.name);
        self.info(&def.name)
    }

    pub fn definition(&self, name: &DatasetName) -> Result<DatasetDef, HubError> {
        Ok(self.entry(name)?.def.clone())
    }

    pub fn names(&self) -> Vec<DatasetName> {
        self.datasets
            .read()
            .expect("datasets lock")
            .keys()
            .cloned()
            .collect()
    }

    pub fn info(&self, name: &DatasetName) -> Result<DatasetInfo, HubError> {
        let entry = self.entry(name)?;
        let catalog_entry = self
            .catalog
            .lock()
            .expect("catalog lock")
            .get(name)?
            .ok_or_else(|| HubError::NotFound(name.clone()))?;
        // The whole cluster's records, when nodes share segments.
        let snapshot = self.snapshot(name)?;
        Ok(DatasetInfo {
            def: entry.def.clone(),
            version: catalog_entry.version,
            created_at: catalog_entry.created_at.to_string(),
            updated_at: catalog_entry.updated_at.to_string(),
            rows: snapshot.rows(),
            unsealed_rows: snapshot.tail.iter().map(|b| b.num_rows() as u64).sum(),
            segments: snapshot.segments.len() + snapshot.foreign.len(),
            segment_bytes: snapshot.segments.iter().map(|s| s.bytes).sum::<u64>()
                + snapshot.foreign.iter().map(|s| s.bytes).sum::<u64>(),
            stored_bytes: entry.store.stored_bytes(),
            last_ingest: entry
                .store
                .max_stamp()
                .map(|t| citybrain_core::Timestamp(t).to_string()),
        })
    }

    pub fn list(&self) -> Result<Vec<DatasetInfo>, HubError> {
        self.names().iter().map(|n| self.info(n)).collect()
    }

    /// A consistent view of a dataset for a query. In a cluster that shares segments it
    /// holds every record acknowledged on any node before the call (`cluster`): it asks
    /// the shared log and the seal book first.
    pub fn snapshot(&self, name: &DatasetName) -> Result<Snapshot, HubError> {
        let entry = self.entry(name)?;
        let mut snapshot = entry.store.snapshot();
        if let Some(cluster) = &self.cluster {
            let mut foreign = entry.foreign.lock().expect("foreign lock");
            foreign.refresh(cluster, &entry.def, &snapshot.schema)?;
            snapshot.foreign = foreign.segments().to_vec();
            for batch in foreign.batches() {
                snapshot
                    .tail
                    .push(store::conform(&snapshot.schema, batch.clone())?);
            }
        }
        Ok(snapshot)
    }

    /// Waits for background seals. Every acknowledged record is already durable in a log,
    /// so this only spares the next start some replay.
    pub fn close(&self) {
        self.feed.close();
        let handles = std::mem::take(&mut *self.sealers.lock().expect("sealers lock"));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

/// Brings one dataset's open table up to its sealed segments, or removes it if the dataset
/// may not leave the hub. A failure leaves the dataset itself untouched: it is logged and
/// the next seal (or start) tries again.
fn refresh_open_table(root: &Path, lock: &Mutex<()>, def: &DatasetDef, store: &DatasetStore) {
    let _guard = lock.lock().expect("open tables lock");
    let table = open_table::table_dir(root, def.name.as_str());
    let result = if open_table::exportable(def) {
        open_table::sync(&table, def, &store.snapshot()).map(|synced| {
            if let Some(version) = synced.version {
                tracing::debug!(message = "Open table committed.", dataset = %def.name, version, files = synced.files_added);
            }
        })
    } else {
        open_table::remove(&table)
    };
    if let Err(error) = result {
        tracing::error!(message = "The open table could not be brought up to date; the dataset is unaffected and the next seal tries again.", dataset = %def.name, %error);
    }
}

/// A catalog definition opened over its storage in `dir`.
fn open_entry(
    dir: &Path,
    config: &HubConfig,
    cluster: Option<&Arc<cluster::Cluster>>,
    def: DatasetDef,
) -> Result<Entry, HubError> {
    let store = DatasetStore::open(
        &dataset_dir(dir, &def.name),
        &def,
        config.shared_log.as_ref(),
        cluster,
    )?;
    Ok(Entry {
        def,
        store: Arc::new(store),
        order: Arc::default(),
        foreign: Arc::default(),
    })
}

fn remove_dir_if_present(path: &Path) -> Result<(), HubError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HubError::Io {
            context: format!("removing {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn dataset_dir(dir: &Path, name: &DatasetName) -> PathBuf {
    dir.join("datasets").join(name.as_str())
}
