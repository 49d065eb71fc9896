//! The change feed: every batch the hub stores is handed, after its fsync, to the
//! subscribers of its dataset, whatever brought it in (HTTP, MQTT, a replay, a scene's own
//! output). This is the one way scenes receive data.
//!
//! A batch's **position** is its ingest stamp (`_ingested_at`, µs), which the hub makes
//! strictly increasing across all datasets, so a dataset's positions follow the order its
//! batches were stored in, and sealing (which reorders rows by event day) cannot lose a
//! place. A subscriber names its datasets and, per dataset, the position it has applied;
//! it is first handed what was stored after that (the catch-up), then live batches in
//! order. Delivery is at least once: a subscriber commits positions once what a batch
//! yields is stored, and after a crash is handed again what it had not committed, so what
//! it stores must be idempotent. Committed positions are kept in `feed/<subscriber>.json`.
//!
//! The seam for a replicated log (NATS JetStream): a subject per dataset, a durable
//! consumer per subscriber, acknowledgements for commits, the stream sequence for the
//! position. Nothing outside this module knows positions are times.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use citybrain_core::DatasetName;
use serde::{Deserialize, Serialize};

use crate::HubError;

/// A place in a dataset's history: the position of the last batch applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub i64);

/// A subscriber's place in each dataset it reads.
pub type Positions = BTreeMap<DatasetName, Position>;

/// One stored batch as the feed hands it out: rows of one dataset stored together
/// (a catch-up may join several stored batches into one change).
#[derive(Debug, Clone)]
pub struct Change {
    pub dataset: DatasetName,
    /// Applying this change brings the subscriber's place in `dataset` here.
    pub position: Position,
    /// The rows, in the dataset's stored schema (with `_ingested_at`).
    pub batches: Vec<RecordBatch>,
    /// Handed out by the catch-up rather than live.
    pub replayed: bool,
    /// In a cluster, the node that stored it when that is another one (its id in the
    /// shared log); `position` is then a place in that node's history, not this one's.
    pub origin: Option<Arc<str>>,
}

impl Change {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Rows per catch-up change at most (a stored batch is never split).
const CATCH_UP_ROWS: usize = 65_536;

struct Subscriber {
    id: u64,
    datasets: BTreeSet<DatasetName>,
    tx: mpsc::Sender<Change>,
    queued: Arc<AtomicUsize>,
}

/// The subscribers and their committed positions.
pub(crate) struct Feed {
    dir: PathBuf,
    subscribers: RwLock<Vec<Subscriber>>,
    next_id: AtomicU64,
    /// Serialises commits per file (a subscriber commits from one thread; this guards
    /// against two subscribers sharing a name).
    commits: Mutex<()>,
}

impl Feed {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.join("feed"),
            subscribers: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(1),
            commits: Mutex::new(()),
        }
    }

    /// Hands a stored batch to the dataset's subscribers. Called with the dataset's
    /// ingest order held, so each subscriber sees a dataset's batches in stored order.
    pub(crate) fn publish(
        &self,
        dataset: &DatasetName,
        position: Position,
        batches: &[RecordBatch],
    ) {
        let subscribers = self.subscribers.read().expect("feed lock");
        for sub in subscribers.iter().filter(|s| s.datasets.contains(dataset)) {
            sub.queued.fetch_add(1, Ordering::Relaxed);
            let _ = sub.tx.send(Change {
                dataset: dataset.clone(),
                position,
                batches: batches.to_vec(),
                replayed: false,
                origin: None,
            });
        }
    }

    pub(crate) fn register(
        &self,
        datasets: BTreeSet<DatasetName>,
    ) -> (u64, mpsc::Receiver<Change>, Arc<AtomicUsize>) {
        let (tx, rx) = mpsc::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queued = Arc::new(AtomicUsize::new(0));
        self.subscribers
            .write()
            .expect("feed lock")
            .push(Subscriber {
                id,
                datasets,
                tx,
                queued: queued.clone(),
            });
        (id, rx, queued)
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.subscribers
            .write()
            .expect("feed lock")
            .retain(|s| s.id != id);
    }

    /// Ends every subscription: their `recv` returns `None` once drained.
    pub(crate) fn close(&self) {
        self.subscribers.write().expect("feed lock").clear();
    }

    fn path(&self, subscriber: &str) -> Result<PathBuf, HubError> {
        let valid = !subscriber.is_empty()
            && subscriber.len() <= 64
            && subscriber
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(HubError::Internal(format!(
                "subscriber name '{subscriber}' must be 1-64 of a-z, 0-9, _ and -"
            )));
        }
        Ok(self.dir.join(format!("{subscriber}.json")))
    }

    /// The positions `subscriber` last committed (empty if it never did).
    pub(crate) fn committed(&self, subscriber: &str) -> Result<Positions, HubError> {
        let path = self.path(subscriber)?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                HubError::Internal(format!(
                    "committed positions {} are unreadable: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Positions::new()),
            Err(source) => Err(HubError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Durably records `positions` as applied by `subscriber` (replacing what it
    /// committed before): written aside, fsynced, renamed into place.
    pub(crate) fn commit(&self, subscriber: &str, positions: &Positions) -> Result<(), HubError> {
        let path = self.path(subscriber)?;
        let _guard = self.commits.lock().expect("commit lock");
        let io = |context: &str| {
            let context = format!("{context} {}", path.display());
            move |source| HubError::Io { context, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("creating the directory of"))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(positions).expect("positions serialise");
        std::fs::write(&tmp, text).map_err(io("writing"))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io("syncing"))?;
        citybrain_core::failpoint::step("feed.commit").map_err(io("committing"))?;
        std::fs::rename(&tmp, &path).map_err(io("committing"))?;
        crate::log::sync_dir(&self.dir).map_err(io("syncing the directory of"))?;
        Ok(())
    }
}

/// A subscriber's view of the feed: the catch-up, then live changes, in order, each once
/// (live changes the catch-up already covered are skipped). Dropping it unsubscribes.
pub struct Subscription {
    feed: Arc<Feed>,
    id: u64,
    catch_up: VecDeque<Change>,
    live: mpsc::Receiver<Change>,
    queued: Arc<AtomicUsize>,
    /// The position handed out last, per dataset.
    delivered: Positions,
    /// In a cluster, the other nodes' rows (`cluster_feed`).
    foreign: Option<crate::cluster_feed::ForeignFeed>,
}

/// What [`Subscription::recv_until`] found.
#[derive(Debug)]
pub enum Recv {
    Change(Change),
    /// Nothing by the deadline.
    Idle,
    /// The hub closed the feed and everything was handed out.
    Closed,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("catch_up", &self.catch_up.len())
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        feed: Arc<Feed>,
        id: u64,
        live: mpsc::Receiver<Change>,
        queued: Arc<AtomicUsize>,
        catch_up: Vec<Change>,
        from: &Positions,
    ) -> Self {
        Self {
            feed,
            id,
            catch_up: catch_up.into(),
            live,
            queued,
            delivered: from.clone(),
            foreign: None,
        }
    }

    /// Adds the other nodes' rows (a cluster's): their catch-up joins this node's, merged
    /// by stamp, and later rows are polled while waiting for live ones.
    pub(crate) fn with_foreign(
        mut self,
        mut foreign: crate::cluster_feed::ForeignFeed,
    ) -> Result<Self, HubError> {
        foreign.poll(true)?;
        let mut all: Vec<Change> = self.catch_up.drain(..).collect();
        all.extend(foreign.ready.drain(..));
        self.catch_up = interleave(all, true)?.into();
        self.foreign = Some(foreign);
        Ok(self)
    }

    /// Changes handed over but not yet taken (catch-up and live).
    pub fn pending(&self) -> usize {
        self.catch_up.len()
            + self.queued.load(Ordering::Relaxed)
            + self.foreign.as_ref().map_or(0, |f| f.ready.len())
    }

    /// Changes left in the catch-up.
    pub fn catching_up(&self) -> usize {
        self.catch_up.len()
    }

    /// The next change, waiting for one; `None` once the hub closes.
    pub fn recv(&mut self) -> Option<Change> {
        loop {
            let far = Instant::now() + std::time::Duration::from_secs(3600);
            match self.recv_until(far) {
                Recv::Change(change) => return Some(change),
                Recv::Idle => continue,
                Recv::Closed => return None,
            }
        }
    }

    /// The next change if one is ready.
    pub fn try_recv(&mut self) -> Option<Change> {
        match self.recv_until(Instant::now()) {
            Recv::Change(change) => Some(change),
            Recv::Idle | Recv::Closed => None,
        }
    }

    /// The next change, waiting for one until `deadline`. In a cluster the other nodes'
    /// rows are asked for meanwhile, every [`crate::cluster_feed::POLL`].
    pub fn recv_until(&mut self, deadline: Instant) -> Recv {
        if let Some(change) = self.catch_up.pop_front() {
            return Recv::Change(self.deliver(change));
        }
        loop {
            let now = Instant::now();
            let wait_to = match &mut self.foreign {
                None => deadline,
                Some(foreign) => {
                    if let Some(change) = foreign.ready.pop_front() {
                        return Recv::Change(change);
                    }
                    if foreign.next_poll <= now {
                        if let Err(error) = foreign.poll(false) {
                            tracing::warn!(message = "Other nodes' records could not be read for the change feed; asking again.", %error);
                            foreign.next_poll = now + std::time::Duration::from_secs(1);
                        }
                        continue;
                    }
                    deadline.min(foreign.next_poll)
                }
            };
            let got = match wait_to.checked_duration_since(now) {
                Some(wait) if !wait.is_zero() => self.live.recv_timeout(wait),
                _ => self.live.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => mpsc::RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => mpsc::RecvTimeoutError::Disconnected,
                }),
            };
            match got {
                Ok(change) => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    if self.fresh(&change) {
                        return Recv::Change(self.deliver(change));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Recv::Closed,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        return Recv::Idle;
                    }
                }
            }
        }
    }

    fn fresh(&self, change: &Change) -> bool {
        self.delivered
            .get(&change.dataset)
            .is_none_or(|p| change.position > *p)
    }

    fn deliver(&mut self, change: Change) -> Change {
        // Another node's positions are its own history's; its cursor keeps them.
        if change.origin.is_none() {
            self.delivered
                .insert(change.dataset.clone(), change.position);
        }
        change
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.unregister(self.id);
    }
}

/// Turns the rows stored after a subscriber's place into changes: each dataset's rows in
/// stamp order, cut only between stamps (so every change's position is a place to commit),
/// and the datasets merged by stamp, as they were stored.
pub(crate) fn catch_up_changes(
    per_dataset: Vec<(DatasetName, Vec<RecordBatch>)>,
) -> Result<Vec<Change>, HubError> {
    let mut changes = Vec::new();
    for (dataset, batches) in per_dataset {
        changes.extend(in_stamp_order(&dataset, batches, None, true)?);
    }
    // Merged by stamp across datasets; each dataset's own order is kept (sort is stable).
    sort_by_first_stamp(&mut changes);
    Ok(changes)
}

/// Merges catch-ups of several nodes as their batches were stored: every change cut into
/// its stored batches (a stamp each), all of them ordered by stamp, and runs of one
/// dataset and node joined again into changes. Ordering whole changes by their first
/// stamp would hand one node's hour before another's.
pub(crate) fn interleave(changes: Vec<Change>, replayed: bool) -> Result<Vec<Change>, HubError> {
    struct Slice {
        stamp: i64,
        dataset: DatasetName,
        origin: Option<Arc<str>>,
        batch: RecordBatch,
    }
    let mut slices = Vec::new();
    for change in changes {
        for batch in change.batches {
            let stamps = batch
                .columns()
                .last()
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
                .ok_or_else(|| HubError::Internal("a stored batch without ingest stamps".into()))?
                .clone();
            let mut start = 0;
            for row in 1..=batch.num_rows() {
                if row == batch.num_rows() || stamps.value(row) != stamps.value(start) {
                    slices.push(Slice {
                        stamp: stamps.value(start),
                        dataset: change.dataset.clone(),
                        origin: change.origin.clone(),
                        batch: batch.slice(start, row - start),
                    });
                    start = row;
                }
            }
        }
    }
    // Stable: slices of one stamp keep their order.
    slices.sort_by_key(|s| s.stamp);
    let mut out: Vec<Change> = Vec::new();
    let mut rows = 0;
    for slice in slices {
        let n = slice.batch.num_rows();
        match out.last_mut() {
            Some(last)
                if last.dataset == slice.dataset
                    && last.origin == slice.origin
                    && rows + n <= CATCH_UP_ROWS =>
            {
                last.batches.push(slice.batch);
                last.position = Position(slice.stamp);
                rows += n;
            }
            _ => {
                rows = n;
                out.push(Change {
                    dataset: slice.dataset,
                    position: Position(slice.stamp),
                    batches: vec![slice.batch],
                    replayed,
                    origin: slice.origin,
                });
            }
        }
    }
    Ok(out)
}

/// Orders changes by the stamp of their first row (a catch-up's, merged across datasets
/// and nodes; each one's own order is kept, as the sort is stable).
pub(crate) fn sort_by_first_stamp(changes: &mut [Change]) {
    changes.sort_by_key(|c| first_stamp(c).unwrap_or(c.position.0));
}

/// One dataset's rows (of one node) as changes in stamp order, cut only between stamps,
/// so that every change's position is a place to commit.
pub(crate) fn in_stamp_order(
    dataset: &DatasetName,
    batches: Vec<RecordBatch>,
    origin: Option<&Arc<str>>,
    replayed: bool,
) -> Result<Vec<Change>, HubError> {
    let mut changes = Vec::new();
    let Some(first) = batches.first() else {
        return Ok(changes);
    };
    let schema = first.schema();
    let all = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| HubError::Internal(format!("joining the catch-up of {dataset}: {e}")))?;
    let stamp_col = all.num_columns() - 1;
    let order = arrow::compute::sort_to_indices(all.column(stamp_col), None, None)
        .map_err(|e| HubError::Internal(format!("ordering the catch-up of {dataset}: {e}")))?;
    let sorted = arrow::compute::take_record_batch(&all, &order)
        .map_err(|e| HubError::Internal(format!("ordering the catch-up of {dataset}: {e}")))?;
    let stamps = sorted
        .column(stamp_col)
        .as_primitive::<TimestampMicrosecondType>()
        .clone();
    let mut start = 0;
    while start < sorted.num_rows() {
        let mut end = (start + CATCH_UP_ROWS).min(sorted.num_rows());
        // Never cut inside one stamp: its rows were one stored batch.
        while end < sorted.num_rows() && stamps.value(end) == stamps.value(end - 1) {
            end += 1;
        }
        changes.push(Change {
            dataset: dataset.clone(),
            position: Position(stamps.value(end - 1)),
            batches: vec![sorted.slice(start, end - start)],
            replayed,
            origin: origin.cloned(),
        });
        start = end;
    }
    Ok(changes)
}

fn first_stamp(change: &Change) -> Option<i64> {
    let batch = change.batches.first()?;
    let stamps = batch
        .columns()
        .last()?
        .as_primitive_opt::<TimestampMicrosecondType>()?;
    (!stamps.is_empty()).then(|| stamps.value(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn batch(values: &[i64], stamps: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new(
                "_ingested_at",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(TimestampMicrosecondArray::from(stamps.to_vec())),
            ],
        )
        .unwrap()
    }

    fn change(origin: Option<&str>, values: &[i64], stamps: &[i64]) -> Change {
        Change {
            dataset: DatasetName::parse("t.x").unwrap(),
            position: Position(*stamps.last().unwrap()),
            batches: vec![batch(values, stamps)],
            replayed: true,
            origin: origin.map(Into::into),
        }
    }

    fn values(change: &Change) -> Vec<i64> {
        change
            .batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn catch_ups_of_two_nodes_are_merged_batch_by_batch_in_stamp_order() {
        // This node stored batches at 10 and 30 (two rows at 30), node b at 20 and 40.
        let merged = interleave(
            vec![
                change(None, &[1, 3, 4], &[10, 30, 30]),
                change(Some("b"), &[2, 5], &[20, 40]),
            ],
            true,
        )
        .unwrap();
        let seen: Vec<(Option<&str>, Vec<i64>, i64)> = merged
            .iter()
            .map(|c| (c.origin.as_deref(), values(c), c.position.0))
            .collect();
        assert_eq!(
            seen,
            vec![
                (None, vec![1], 10),
                (Some("b"), vec![2], 20),
                (None, vec![3, 4], 30),
                (Some("b"), vec![5], 40),
            ]
        );
    }

    #[test]
    fn runs_of_one_node_stay_one_change() {
        let merged = interleave(
            vec![
                change(None, &[1, 2], &[10, 20]),
                change(Some("b"), &[3], &[30]),
            ],
            false,
        )
        .unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(values(&merged[0]), vec![1, 2]);
        assert_eq!(merged[0].position, Position(20));
        assert!(!merged[1].replayed);
    }
}
