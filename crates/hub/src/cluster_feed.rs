//! The change feed across a cluster (issue 25): a subscriber on one node is also handed
//! what the other nodes stored, so a scene that runs on one node sees the whole city.
//!
//! Another node's records are where a query finds them (`cluster`): its unsealed frames
//! in the shared log and the seals it published. A [`ForeignFeed`] keeps, per dataset, a
//! cursor into both, and per other node the ingest stamp of the last row it handed out:
//! a node's stamps increase strictly in the order it stored its batches, so "after this
//! stamp" is an exact place in that node's history, whichever of the two the rows are
//! read from. Each poll asks the stream first and the seal book second (the order
//! `Foreign::refresh` gives its reasons for), so a frame purged before the follow reached
//! it is found in a seal; a frame a seal covers is taken from the seal, never both.
//!
//! Polled, not pushed: the shared log is asked every [`POLL`] while the subscriber waits
//! for this node's own changes, so another node's rows reach a scene within about that.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use citybrain_core::DatasetName;

use crate::cluster::{Cluster, read_foreign_frame};
use crate::feed::{Change, Position, Positions, in_stamp_order, interleave};
use crate::{Entry, HubError};

/// How often another node's new rows are asked for.
pub const POLL: Duration = Duration::from_millis(200);

/// Numbers the cursors' names to the shared log.
static NEXT_FOLLOWER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Where a subscriber stands in each other node's history: node id → its positions.
pub type Origins = BTreeMap<String, Positions>;

/// One subscription's view of the other nodes' records.
pub(crate) struct ForeignFeed {
    cluster: Arc<Cluster>,
    datasets: Arc<RwLock<BTreeMap<DatasetName, Arc<Entry>>>>,
    cursors: Vec<Cursor>,
    /// Changes polled and not yet handed out.
    pub(crate) ready: VecDeque<Change>,
    pub(crate) next_poll: Instant,
}

/// One dataset's place in the shared log, the seal book and each other node's history.
#[derive(Debug, Clone)]
struct Cursor {
    dataset: DatasetName,
    /// Its name to the shared log (chunks of a frame are gathered per follower).
    follower: String,
    /// The stream sequence to follow from.
    next: u64,
    /// The newest seal number read.
    seen: i64,
    /// Per node, the stream sequence its newest seal read ran through.
    through: HashMap<String, u64>,
    /// Per node, the ingest stamp of the last row handed out.
    delivered: HashMap<String, i64>,
}

impl ForeignFeed {
    pub(crate) fn new(
        cluster: Arc<Cluster>,
        datasets: Arc<RwLock<BTreeMap<DatasetName, Arc<Entry>>>>,
        names: &[DatasetName],
        from: &Origins,
    ) -> Self {
        let cursors = names
            .iter()
            .map(|name| Cursor {
                dataset: name.clone(),
                follower: format!(
                    "feed-{}",
                    NEXT_FOLLOWER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ),
                next: 0,
                seen: 0,
                through: HashMap::new(),
                delivered: from
                    .iter()
                    .filter_map(|(node, positions)| Some((node.clone(), positions.get(name)?.0)))
                    .collect(),
            })
            .collect();
        Self {
            cluster,
            datasets,
            cursors,
            ready: VecDeque::new(),
            next_poll: Instant::now(),
        }
    }

    /// Reads what the other nodes stored since the last poll into `ready`, each node's
    /// rows in its stamp order. A failure (the shared log or the book not answering)
    /// leaves every cursor where it was, to be asked again.
    pub(crate) fn poll(&mut self, replayed: bool) -> Result<usize, HubError> {
        self.next_poll = Instant::now() + POLL;
        let mut changes = Vec::new();
        let mut moved = Vec::with_capacity(self.cursors.len());
        for cursor in &self.cursors {
            let entry = self
                .datasets
                .read()
                .expect("datasets lock")
                .get(&cursor.dataset)
                .cloned();
            // Not here yet (another node may create it; the catalog sync brings it).
            let Some(entry) = entry else {
                moved.push(cursor.clone());
                continue;
            };
            let mut cursor = cursor.clone();
            changes.extend(cursor.poll(&self.cluster, &entry, replayed)?);
            moved.push(cursor);
        }
        let changes = interleave(changes, replayed)?;
        self.cursors = moved;
        let n = changes.len();
        self.ready.extend(changes);
        Ok(n)
    }
}

impl Cursor {
    fn poll(
        &mut self,
        cluster: &Cluster,
        entry: &Entry,
        replayed: bool,
    ) -> Result<Vec<Change>, HubError> {
        let def = &entry.def;
        let schema = entry.store.schema();
        let name = def.name.as_str();
        let me = cluster.log.owner().to_string();
        // The stream first.
        let (frames, next) = cluster
            .log
            .follow(&self.follower, name, self.next)
            .map_err(|source| HubError::LogUnavailable {
                log: cluster.log.describe(),
                context: format!("following other nodes' records of {name}"),
                source,
            })?;
        let mut read = Vec::with_capacity(frames.len());
        for frame in frames {
            read.push(read_foreign_frame(def, &schema, frame)?);
        }
        // The book second: every seal recorded before a frame of it was purged.
        let mut per_node: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
        for seal in cluster.book.after(name, self.seen)? {
            self.seen = self.seen.max(seal.number);
            if seal.owner == me {
                continue;
            }
            let through = self.through.entry(seal.owner.clone()).or_insert(0);
            *through = (*through).max(seal.through);
            let after = self.delivered.get(&seal.owner).copied();
            for segment in &seal.segments {
                let bytes = cluster
                    .segments
                    .read(&segment.key)
                    .map_err(cluster.segment_err(&segment.key))?;
                for batch in crate::store::parquet_rows_after(bytes, after, &segment.key)? {
                    let batch = crate::store::conform(&schema, batch)?;
                    per_node
                        .entry(seal.owner.clone())
                        .or_default()
                        .extend(newer_than(batch, after)?);
                }
            }
        }
        for frame in read {
            if frame.owner == me
                || frame.sequence <= self.through.get(&frame.owner).copied().unwrap_or(0)
            {
                continue;
            }
            let after = self.delivered.get(&frame.owner).copied();
            for batch in frame.batches {
                let batch = crate::store::conform(&schema, batch)?;
                per_node
                    .entry(frame.owner.clone())
                    .or_default()
                    .extend(newer_than(batch, after)?);
            }
        }
        self.next = next;
        let mut changes = Vec::new();
        for (node, batches) in per_node {
            let origin: Arc<str> = node.as_str().into();
            let node_changes = in_stamp_order(&def.name, batches, Some(&origin), replayed)?;
            if let Some(last) = node_changes.last() {
                let Position(stamp) = last.position;
                self.delivered.insert(node, stamp);
            }
            changes.extend(node_changes);
        }
        Ok(changes)
    }
}

/// The rows of `batch` stamped after `after` (all of them when None), if any.
fn newer_than(batch: RecordBatch, after: Option<i64>) -> Result<Option<RecordBatch>, HubError> {
    let Some(after) = after else {
        return Ok((batch.num_rows() > 0).then_some(batch));
    };
    let stamps = batch
        .columns()
        .last()
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| HubError::Internal("a stored batch without ingest stamps".into()))?;
    let keep: arrow::array::BooleanArray = stamps.iter().map(|s| Some(s? > after)).collect();
    let kept = arrow::compute::filter_record_batch(&batch, &keep)
        .map_err(|e| HubError::Internal(format!("filtering by ingest stamp: {e}")))?;
    Ok((kept.num_rows() > 0).then_some(kept))
}
