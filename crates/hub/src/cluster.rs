//! Every node reads the whole cluster's records (issue 25, item 2).
//!
//! In a cluster each node appends to the shared log under subjects of its own and seals
//! only its own frames. For a query on any node to see every record acknowledged on any
//! node before it started, a node's view of a dataset is the union of
//!
//! - its own store (segments and tail, as on one machine);
//! - the segments other nodes sealed: copied into a [`SegmentStore`] every node reads,
//!   and listed in the [`SealBook`] (the metadata database the nodes share), each seal
//!   with the stream sequence its frames ran through;
//! - the frames other nodes appended and did not seal yet, read from the shared log
//!   ([`SharedLog::follow`]), minus those a seal covers.
//!
//! A seal is published (segments copied, then the seal recorded) before its frames are
//! purged from the stream, and a view asks the stream first and the seal book second: a
//! frame purged before the view's follow reached it belongs to a seal recorded before
//! the purge, so the book read afterwards has it. Each record is counted once: frames
//! at or below their owner's newest seal are dropped. A node that dies leaves its
//! unsealed frames in the stream, where the others keep reading them.
//!
//! The hub stays free of network code: the log and the segment store are traits, the
//! book is `citybrain_metadb` (PostgreSQL in a cluster).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use citybrain_metadb::{Db, DbError, Place, params};
use serde::{Deserialize, Serialize};

use crate::HubError;
use crate::log::{self, SharedLog};
use crate::schema::DatasetDef;
use crate::store::{SealedKey, Segment};

/// Where sealed segments go so that every node reads them: a directory the nodes share
/// (a mounted volume), or object storage (`citybrain-objects`, S3).
pub trait SegmentStore: Send + Sync + std::fmt::Debug {
    /// Stores the file at `from` under `key`, durably. Segments never change, so a key
    /// already stored with the same size is left as it is (a seal published again).
    fn put(&self, key: &str, from: &Path) -> io::Result<()>;
    /// Where the query engine reads the segment at `key`: a path on this machine, or a
    /// URL of an object store the engine has registered (`s3://bucket/key`).
    fn location(&self, key: &str) -> io::Result<String>;
    /// Whether the store holds `key`.
    fn exists(&self, key: &str) -> io::Result<bool>;
    /// The segment at `key`, whole (the cluster's change feed reads other nodes' seals).
    fn read(&self, key: &str) -> io::Result<bytes::Bytes>;
    /// Removes every segment whose key starts with `prefix` (a deleted dataset's).
    fn remove_prefix(&self, prefix: &str) -> io::Result<()>;
    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// Refuses a segment key that is not a plain relative path. Keys are made by this module
/// (dataset/owner/segments/...); one that would leave a store's root is a bug, refused
/// all the same by every [`SegmentStore`].
pub fn check_segment_key(key: &str) -> io::Result<()> {
    if key.split('/').any(|part| part.is_empty() || part == "..") {
        return Err(io::Error::other(format!(
            "segment key {key:?} is not a plain path"
        )));
    }
    Ok(())
}

/// Segments in a directory every node mounts at the same or another path.
#[derive(Debug)]
pub struct SegmentDirectory {
    root: PathBuf,
}

impl SegmentDirectory {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_segment_key(key)?;
        Ok(self.root.join(key))
    }
}

impl SegmentStore for SegmentDirectory {
    fn put(&self, key: &str, from: &Path) -> io::Result<()> {
        let target = self.path(key)?;
        let len = std::fs::metadata(from)?.len();
        if std::fs::metadata(&target).is_ok_and(|m| m.len() == len) {
            return Ok(());
        }
        let dir = target.parent().expect("a key has a directory");
        std::fs::create_dir_all(dir)?;
        let tmp = target.with_extension("parquet.tmp");
        std::fs::copy(from, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        log::sync_dir(dir)
    }

    fn location(&self, key: &str) -> io::Result<String> {
        Ok(self.path(key)?.to_string_lossy().into_owned())
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        Ok(self.path(key)?.is_file())
    }

    fn read(&self, key: &str) -> io::Result<bytes::Bytes> {
        std::fs::read(self.path(key)?).map(bytes::Bytes::from)
    }

    fn remove_prefix(&self, prefix: &str) -> io::Result<()> {
        match std::fs::remove_dir_all(self.path(prefix.trim_end_matches('/'))?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}

/// One segment of a published seal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedSegment {
    /// Its key in the segment store.
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
}

/// A seal as the book records it.
#[derive(Debug, Clone)]
pub struct Seal {
    /// Its place in the dataset's book: later seals have larger numbers.
    pub number: i64,
    pub owner: String,
    /// The owner's store generation the seal is named by (its manifest's last).
    pub generation: u64,
    /// The shared log's sequence the sealed frames ran through (0: none were in it).
    pub through: u64,
    pub segments: Vec<SharedSegment>,
    /// The keyed ingest calls whose records it covers.
    pub keys: Vec<SealedKey>,
}

/// The seals every node published, in the metadata database the nodes share.
#[derive(Debug)]
pub struct SealBook {
    /// One connection; a publication is a transaction, so the lock is held across it.
    db: Mutex<Db>,
}

fn book_err(context: &'static str) -> impl FnOnce(DbError) -> HubError {
    move |source| HubError::Catalog { context, source }
}

impl SealBook {
    pub fn open(place: &Place) -> Result<Self, HubError> {
        let db =
            Db::open(place, &crate::catalog::SCHEMA).map_err(book_err("opening the seal book"))?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a seal once (publishing it again changes nothing). Its number comes from
    /// the dataset's row in `seal_heads`, locked until the commit, so numbers are
    /// committed in order and a reader that saw number n never misses one below it.
    pub fn record(
        &self,
        dataset: &str,
        owner: &str,
        generation: u64,
        through: u64,
        segments: &[SharedSegment],
        keys: &[SealedKey],
    ) -> Result<(), HubError> {
        let db = self.db();
        db.begin().map_err(book_err("starting a seal's record"))?;
        let done = (|| {
            let number = db
                .query_opt(
                    "INSERT INTO seal_heads (dataset, last) VALUES (?1, 1)
                     ON CONFLICT (dataset) DO UPDATE SET last = seal_heads.last + 1
                     RETURNING last",
                    params![dataset],
                )
                .map_err(book_err("numbering a seal"))?
                .ok_or_else(|| HubError::Internal("numbering a seal returned nothing".into()))?
                .int(0)
                .map_err(book_err("numbering a seal"))?;
            let json = serde_json::to_string(segments).expect("segments serialise");
            let keys = serde_json::to_string(keys).expect("keys serialise");
            db.execute(
                "INSERT INTO seals (dataset, owner, generation, number, through, segments, keys)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (dataset, owner, generation) DO NOTHING",
                params![
                    dataset,
                    owner,
                    generation as i64,
                    number,
                    through as i64,
                    json,
                    keys
                ],
            )
            .map_err(book_err("recording a seal"))?;
            db.commit().map_err(book_err("committing a seal's record"))
        })();
        if done.is_err() {
            let _ = db.rollback();
        }
        done
    }

    /// The generations of `owner`'s seals of `dataset` the book has.
    pub fn generations(&self, dataset: &str, owner: &str) -> Result<Vec<u64>, HubError> {
        self.db()
            .query(
                "SELECT generation FROM seals WHERE dataset = ?1 AND owner = ?2",
                params![dataset, owner],
            )
            .map_err(book_err("listing a node's seals"))?
            .iter()
            .map(|row| {
                row.int(0)
                    .map(|g| g as u64)
                    .map_err(book_err("reading a seal"))
            })
            .collect()
    }

    /// The seals of `dataset` numbered after `after`, in order.
    pub fn after(&self, dataset: &str, after: i64) -> Result<Vec<Seal>, HubError> {
        let rows = self
            .db()
            .query(
                "SELECT number, owner, generation, through, segments, keys FROM seals
                 WHERE dataset = ?1 AND number > ?2 ORDER BY number",
                params![dataset, after],
            )
            .map_err(book_err("reading the seal book"))?;
        rows.iter()
            .map(|row| {
                let segments = row.text(4).map_err(book_err("reading a seal"))?;
                Ok(Seal {
                    number: row.int(0).map_err(book_err("reading a seal"))?,
                    owner: row.text(1).map_err(book_err("reading a seal"))?,
                    generation: row.int(2).map_err(book_err("reading a seal"))? as u64,
                    through: row.int(3).map_err(book_err("reading a seal"))? as u64,
                    segments: serde_json::from_str(&segments).map_err(|e| {
                        HubError::Internal(format!("a seal of {dataset} is unreadable: {e}"))
                    })?,
                    keys: serde_json::from_str(&row.text(5).map_err(book_err("reading a seal"))?)
                        .map_err(|e| {
                        HubError::Internal(format!("a seal of {dataset} is unreadable: {e}"))
                    })?,
                })
            })
            .collect()
    }

    /// Forgets a deleted dataset's seals.
    pub fn forget(&self, dataset: &str) -> Result<(), HubError> {
        let db = self.db();
        for sql in [
            "DELETE FROM seals WHERE dataset = ?1",
            "DELETE FROM seal_heads WHERE dataset = ?1",
        ] {
            db.execute(sql, params![dataset])
                .map_err(book_err("forgetting a dataset's seals"))?;
        }
        Ok(())
    }
}

/// Who holds a lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    /// Where the holder serves its API (`http://host:port`), for callers sent to it.
    pub address: String,
    /// Unix milliseconds: past this, any node may take the lease.
    pub until_ms: i64,
}

/// Work that one node of a cluster does at a time (a scene), under a lease in the
/// metadata database the nodes share: its holder renews it well before it lapses, and
/// once it lapses any node may take it. Taking and renewing are one conditional upsert,
/// atomic in the database: no consensus of our own. Times are the nodes' clocks, so a
/// lease's length must exceed their skew by a margin (NTP keeps it to milliseconds).
#[derive(Debug)]
pub struct Leases {
    db: Mutex<Db>,
}

impl Leases {
    pub fn open(place: &Place) -> Result<Self, HubError> {
        let db =
            Db::open(place, &crate::catalog::SCHEMA).map_err(book_err("opening the leases"))?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `name` for `node` until `now_ms + ttl_ms` if it is free, lapsed or already
    /// `node`'s (a renewal); the holder after the call either way.
    pub fn take(
        &self,
        name: &str,
        node: &str,
        address: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Holder, HubError> {
        let db = self.db();
        db.execute(
            "INSERT INTO leases (name, node, address, until_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE
             SET node = excluded.node, address = excluded.address, until_ms = excluded.until_ms
             WHERE leases.node = excluded.node OR leases.until_ms < ?5",
            params![name, node, address, now_ms + ttl_ms, now_ms],
        )
        .map_err(book_err("taking a lease"))?;
        let row = db
            .query_opt(
                "SELECT node, address, until_ms FROM leases WHERE name = ?1",
                params![name],
            )
            .map_err(book_err("reading a lease"))?
            .ok_or_else(|| HubError::Internal(format!("the lease {name} vanished")))?;
        holder(&row)
    }

    /// Gives `name` up if `node` holds it, so another node takes it at once.
    pub fn release(&self, name: &str, node: &str) -> Result<(), HubError> {
        self.db()
            .execute(
                "UPDATE leases SET until_ms = 0 WHERE name = ?1 AND node = ?2",
                params![name, node],
            )
            .map_err(book_err("giving up a lease"))?;
        Ok(())
    }

    /// Who holds `name` (perhaps lapsed), if anyone ever did.
    pub fn holder(&self, name: &str) -> Result<Option<Holder>, HubError> {
        self.db()
            .query_opt(
                "SELECT node, address, until_ms FROM leases WHERE name = ?1",
                params![name],
            )
            .map_err(book_err("reading a lease"))?
            .map(|row| holder(&row))
            .transpose()
    }
}

fn holder(row: &citybrain_metadb::Row) -> Result<Holder, HubError> {
    Ok(Holder {
        node: row.text(0).map_err(book_err("reading a lease"))?,
        address: row.text(1).map_err(book_err("reading a lease"))?,
        until_ms: row.int(2).map_err(book_err("reading a lease"))?,
    })
}

/// Where each subscriber of the cluster's change feed (a scene) stands in each node's
/// history, in the metadata database, so that the node that takes a scene over starts
/// where the last one committed. A commit counts only while the committing node holds
/// the lease named with it: a node that lost its lease cannot move the positions on.
#[derive(Debug)]
pub struct FeedBook {
    db: Mutex<Db>,
}

impl FeedBook {
    pub fn open(place: &Place) -> Result<Self, HubError> {
        let db = Db::open(place, &crate::catalog::SCHEMA)
            .map_err(book_err("opening the feed positions"))?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `positions` (node → dataset → position) as applied by `subscriber`, in one
    /// transaction, if `node` holds the lease `lease`; false (nothing written) if not.
    pub fn commit(
        &self,
        subscriber: &str,
        lease: &str,
        node: &str,
        positions: &crate::Origins,
    ) -> Result<bool, HubError> {
        let db = self.db();
        db.begin().map_err(book_err("starting a feed commit"))?;
        let done = (|| {
            let held = db
                .query_opt(
                    "SELECT 1 FROM leases WHERE name = ?1 AND node = ?2",
                    params![lease, node],
                )
                .map_err(book_err("checking a lease"))?
                .is_some();
            if !held {
                return Ok(false);
            }
            for (origin, datasets) in positions {
                for (dataset, position) in datasets {
                    db.execute(
                        "INSERT INTO feed_positions (subscriber, origin, dataset, position)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (subscriber, origin, dataset)
                         DO UPDATE SET position = excluded.position",
                        params![subscriber, origin.as_str(), dataset.as_str(), position.0],
                    )
                    .map_err(book_err("committing feed positions"))?;
                }
            }
            db.commit()
                .map_err(book_err("committing feed positions"))
                .map(|()| true)
        })();
        if !matches!(done, Ok(true)) {
            let _ = db.rollback();
        }
        done
    }

    /// What `subscriber` last committed, per node and dataset.
    pub fn committed(&self, subscriber: &str) -> Result<crate::Origins, HubError> {
        let rows = self
            .db()
            .query(
                "SELECT origin, dataset, position FROM feed_positions WHERE subscriber = ?1",
                params![subscriber],
            )
            .map_err(book_err("reading feed positions"))?;
        let mut out = crate::Origins::new();
        for row in &rows {
            let origin = row.text(0).map_err(book_err("reading feed positions"))?;
            let dataset = row.text(1).map_err(book_err("reading feed positions"))?;
            let position = row.int(2).map_err(book_err("reading feed positions"))?;
            // A dataset name this version refuses is skipped: its rows are read again.
            if let Ok(dataset) = citybrain_core::DatasetName::parse(&dataset) {
                out.entry(origin)
                    .or_default()
                    .insert(dataset, crate::Position(position));
            }
        }
        Ok(out)
    }
}

/// The pieces a node of a cluster reads the others through.
#[derive(Debug)]
pub struct Cluster {
    pub log: Arc<dyn SharedLog>,
    pub segments: Arc<dyn SegmentStore>,
    pub book: SealBook,
    pub leases: Leases,
    pub positions: FeedBook,
}

impl Cluster {
    fn owner(&self) -> &str {
        self.log.owner()
    }

    /// The error of reading the shared segment at `key`.
    pub(crate) fn segment_err(&self, key: &str) -> impl FnOnce(io::Error) -> HubError {
        let context = format!("reading {key} from {}", self.segments.describe());
        move |source| HubError::Io { context, source }
    }

    /// Copies a committed seal's segments into the segment store and records it, so
    /// other nodes read them once its frames are purged. Called before the purge.
    pub fn publish(
        &self,
        dataset: &str,
        generation: u64,
        through: u64,
        dir: &Path,
        segments: &[Segment],
        keys: &[SealedKey],
    ) -> Result<(), HubError> {
        let mut shared = Vec::with_capacity(segments.len());
        for segment in segments {
            let key = self.key(dataset, segment);
            self.segments
                .put(&key, &dir.join(&segment.path))
                .map_err(|source| HubError::Io {
                    context: format!("copying {key} to {}", self.segments.describe()),
                    source,
                })?;
            shared.push(SharedSegment {
                key,
                rows: segment.rows,
                bytes: segment.bytes,
            });
        }
        self.book
            .record(dataset, self.owner(), generation, through, &shared, keys)
    }

    /// The store's key of one of this node's segments.
    fn key(&self, dataset: &str, segment: &Segment) -> String {
        format!("{dataset}/{}/{}", self.owner(), segment.path)
    }

    /// Copies again those of a published seal's segments the store lost (a bucket
    /// recreated, a volume restored from an older copy): this node keeps its own.
    pub fn restore(
        &self,
        dataset: &str,
        dir: &Path,
        segments: &[Segment],
    ) -> Result<usize, HubError> {
        let mut restored = 0;
        for segment in segments {
            let key = self.key(dataset, segment);
            let copied = (|| -> io::Result<bool> {
                if self.segments.exists(&key)? {
                    return Ok(false);
                }
                self.segments.put(&key, &dir.join(&segment.path))?;
                Ok(true)
            })()
            .map_err(|source| HubError::Io {
                context: format!("restoring {key} in {}", self.segments.describe()),
                source,
            })?;
            restored += usize::from(copied);
        }
        Ok(restored)
    }

    /// Removes a deleted dataset's seals and shared segments (every node's).
    pub fn forget(&self, dataset: &str) -> Result<(), HubError> {
        self.book.forget(dataset)?;
        self.segments
            .remove_prefix(&format!("{dataset}/"))
            .map_err(|source| HubError::Io {
                context: format!(
                    "removing {dataset}'s segments from {}",
                    self.segments.describe()
                ),
                source,
            })
    }
}

/// One of another node's frames, read back.
pub(crate) struct ForeignBatches {
    pub owner: String,
    pub sequence: u64,
    pub batches: Vec<RecordBatch>,
    /// The keyed call it stored, if one did, with its ingest stamp.
    pub keys: Vec<(crate::log::CallKey, i64)>,
}

/// Reads a frame another node appended to the shared log as batches of `def`'s stored
/// schema (checked whole first: a frame from the stream is input like any other).
pub(crate) fn read_foreign_frame(
    def: &DatasetDef,
    schema: &SchemaRef,
    frame: log::ForeignFrame,
) -> Result<ForeignBatches, HubError> {
    let name = def.name.as_str();
    let len = frame.frame.len() as u64;
    let contents = log::parse_frames(frame.frame).map_err(|source| HubError::Io {
        context: format!(
            "reading frame {} of {name} from the shared log",
            frame.sequence
        ),
        source,
    })?;
    if contents.valid_len != len {
        return Err(HubError::Internal(format!(
            "frame {} of {name} in the shared log is corrupt",
            frame.sequence
        )));
    }
    let source = format!(
        "{name} of {} at {} in the shared log",
        frame.owner, frame.sequence
    );
    let replayed = crate::store::replay(def, schema, contents.entries, &source)?;
    Ok(ForeignBatches {
        owner: frame.owner,
        sequence: frame.sequence,
        batches: replayed.batches,
        keys: replayed.keys,
    })
}

/// What one node knows of a dataset's records on the other nodes.
#[derive(Debug, Default)]
pub struct Foreign {
    /// The shared log's sequence to follow from.
    next: u64,
    /// The newest seal number read.
    seen: i64,
    /// Per owner, the sequence its newest seal ran through.
    through: HashMap<String, u64>,
    /// Other nodes' sealed segments, as local paths.
    segments: Vec<ForeignSegment>,
    /// Other nodes' unsealed frames: owner, sequence, batches, and the keyed call's key.
    frames: Vec<(String, u64, Vec<RecordBatch>, Vec<crate::log::CallKey>)>,
    /// Keyed calls other nodes sealed: key → what the call stored.
    sealed_keys: HashMap<String, String>,
}

/// A segment another node sealed, readable here.
#[derive(Debug, Clone)]
pub struct ForeignSegment {
    /// A path or an object store's URL ([`SegmentStore::location`]).
    pub location: String,
    pub rows: u64,
    pub bytes: u64,
}

impl Foreign {
    /// Brings the view up to what the cluster acknowledged by now: the stream first, the
    /// seal book second (the module's doc says why in that order).
    pub fn refresh(
        &mut self,
        cluster: &Cluster,
        def: &DatasetDef,
        schema: &SchemaRef,
    ) -> Result<(), HubError> {
        let name = def.name.as_str();
        let (frames, next) = cluster
            .log
            .follow("queries", name, self.next)
            .map_err(|source| HubError::LogUnavailable {
                log: cluster.log.describe(),
                context: format!("reading other nodes' records of {name}"),
                source,
            })?;
        let mut fresh = Vec::with_capacity(frames.len());
        for frame in frames {
            let read = read_foreign_frame(def, schema, frame)?;
            let keys = read.keys.into_iter().map(|(key, _)| key).collect();
            fresh.push((read.owner, read.sequence, read.batches, keys));
        }
        // Only now: a frame that failed to decode is asked for again next time.
        self.frames.extend(fresh);
        self.next = next;
        for seal in cluster.book.after(name, self.seen)? {
            self.seen = self.seen.max(seal.number);
            if seal.owner == cluster.owner() {
                continue;
            }
            let through = self.through.entry(seal.owner.clone()).or_insert(0);
            *through = (*through).max(seal.through);
            for key in seal.keys {
                self.sealed_keys.insert(key.key, key.call);
            }
            for segment in seal.segments {
                let location = cluster
                    .segments
                    .location(&segment.key)
                    .map_err(cluster.segment_err(&segment.key))?;
                self.segments.push(ForeignSegment {
                    location,
                    rows: segment.rows,
                    bytes: segment.bytes,
                });
            }
        }
        let through = &self.through;
        self.frames
            .retain(|(owner, sequence, _, _)| *sequence > through.get(owner).copied().unwrap_or(0));
        Ok(())
    }

    pub fn segments(&self) -> &[ForeignSegment] {
        &self.segments
    }

    /// The other nodes' unsealed batches.
    pub fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        self.frames.iter().flat_map(|(_, _, batches, _)| batches)
    }

    /// What another node's call with idempotency key `key` stored, if one did.
    pub fn keyed_call(&self, key: &str) -> Option<String> {
        self.frames
            .iter()
            .flat_map(|(_, _, _, keys)| keys)
            .find(|k| k.key == key)
            .map(|k| k.call.clone())
            .or_else(|| self.sealed_keys.get(key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Origins, Position, Positions};
    use citybrain_core::DatasetName;

    #[test]
    fn a_lease_is_held_by_one_node_until_it_lapses_and_fences_its_feed_commits() {
        let dir = tempfile::tempdir().unwrap();
        let place = Place::Sqlite(dir.path().join("catalog.sqlite"));
        let (leases, book) = (
            Leases::open(&place).unwrap(),
            FeedBook::open(&place).unwrap(),
        );
        let a = leases
            .take("scene/x", "a", "http://a", 1_000, 6_000)
            .unwrap();
        assert_eq!((a.node.as_str(), a.until_ms), ("a", 7_000));
        // b cannot take it while it lasts; a renews it.
        assert_eq!(
            leases
                .take("scene/x", "b", "http://b", 5_000, 6_000)
                .unwrap()
                .node,
            "a"
        );
        assert_eq!(
            leases
                .take("scene/x", "a", "http://a", 5_000, 6_000)
                .unwrap()
                .until_ms,
            11_000
        );

        let passages = DatasetName::parse("transport.anpr_passages").unwrap();
        let at = |p: i64| Positions::from([(passages.clone(), Position(p))]);
        let positions = Origins::from([("a".to_string(), at(10)), ("b".to_string(), at(20))]);
        assert!(book.commit("x", "scene/x", "a", &positions).unwrap());
        assert!(
            !book
                .commit(
                    "x",
                    "scene/x",
                    "b",
                    &Origins::from([("a".to_string(), at(99))])
                )
                .unwrap()
        );
        assert_eq!(book.committed("x").unwrap(), positions);

        // Lapsed: b takes it, and a's commits no longer count.
        assert_eq!(
            leases
                .take("scene/x", "b", "http://b", 11_001, 6_000)
                .unwrap()
                .node,
            "b"
        );
        assert!(
            !book
                .commit(
                    "x",
                    "scene/x",
                    "a",
                    &Origins::from([("a".to_string(), at(11))])
                )
                .unwrap()
        );
        assert_eq!(book.committed("x").unwrap(), positions);
        // Given up: a takes it at once.
        leases.release("scene/x", "b").unwrap();
        assert_eq!(
            leases
                .take("scene/x", "a", "http://a", 11_002, 6_000)
                .unwrap()
                .node,
            "a"
        );
    }
}
