//! One dataset's durable storage: a log of unsealed batches plus sealed Parquet segments.
//!
//! Layout under the dataset's directory:
//! ```text
//! log/000000000007.log              the active log (generation 7), appended and fsynced
//! segments/date=2026-11-22/000000000006-0.parquet    sealed segments, by event day
//! sealed/000000000006.json          manifest: which generations a seal covered, which files
//! ```
//! A seal is committed by its manifest: segment files without one are leftovers of a seal
//! that crashed and are deleted on open; logs that a manifest covers are deleted too. So
//! every acknowledged record is in exactly one place at any moment a crash can happen.
//!
//! `appender` is where the active generation's frames go (a file or the shared log);
//! `rows` is what stored batches are made of and read back as.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use citybrain_core::{Date, Timestamp};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::HubError;
use crate::log::{self, LogWriter, SharedLog};
use crate::schema::DatasetDef;

mod appender;
mod rows;
mod tail;

use tail::Tail;

use appender::Log;
use rows::{batch_max_stamp, read_dir_sorted, segment_max_stamp, split_by_day};
pub(crate) use rows::{conform, parquet_rows_after, replay};

/// A sealed Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Path relative to the dataset directory.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    generations: Vec<u64>,
    segments: Vec<Segment>,
    /// With a shared log: the sequence the sealed frames ran through (what the seal lets
    /// the log purge, and what other nodes' views drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    through: Option<u64>,
    /// The keyed calls whose records the seal covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<SealedKey>,
}

/// What a query sees: sealed segments plus the in-memory copy of the unsealed tail.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub schema: SchemaRef,
    pub dir: PathBuf,
    /// This node's sealed segments (paths relative to `dir`).
    pub segments: Vec<Segment>,
    /// In a cluster, the segments other nodes sealed (`cluster`), as local paths.
    pub foreign: Vec<crate::cluster::ForeignSegment>,
    /// The unsealed batches: this node's, then in a cluster the other nodes'.
    pub tail: Vec<RecordBatch>,
}

impl Snapshot {
    pub fn rows(&self) -> u64 {
        self.segments.iter().map(|s| s.rows).sum::<u64>()
            + self.foreign.iter().map(|s| s.rows).sum::<u64>()
            + self.tail.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    }

    /// Where every sealed segment is read from, this node's (paths) and the others'
    /// (paths or object store URLs).
    pub fn segment_locations(&self) -> Vec<String> {
        self.segments
            .iter()
            .map(|s| self.dir.join(&s.path).to_string_lossy().into_owned())
            .chain(self.foreign.iter().map(|s| s.location.clone()))
            .collect()
    }
}

#[derive(Debug)]
struct State {
    schema: SchemaRef,
    active_generation: u64,
    log: Log,
    /// Unsealed batches with the log generation that holds them.
    tail: Tail,
    segments: Vec<Segment>,
    sealing: bool,
    /// The newest ingest stamp stored (the feed's position of the dataset's last batch).
    max_stamp: Option<i64>,
    /// Ingest calls with an idempotency key, by key: what each stored, for a day.
    keys: HashMap<String, CallRecord>,
}

/// A keyed ingest call the store holds the records of.
#[derive(Debug, Clone)]
struct CallRecord {
    /// The log generation of its frame; None once sealed.
    generation: Option<u64>,
    /// Its ingest stamp (µs).
    stamp: i64,
    /// What it stored (the caller's summary, JSON).
    call: String,
}

/// A keyed call a seal covered, kept in the seal's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedKey {
    pub key: String,
    pub call: String,
    pub stamp: i64,
}

/// How long a key is remembered after its call: a client retries within this.
pub const KEY_RETENTION_US: i64 = 24 * 3600 * 1_000_000;

/// A dataset's storage. Appends are serialised; reads take a snapshot and never block on I/O.
#[derive(Debug)]
pub struct DatasetStore {
    dir: PathBuf,
    name: String,
    /// In a cluster: where seals are published before their frames are purged.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    event_time: Option<usize>,
    state: Mutex<State>,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HubError {
    let context = context.into();
    move |source| HubError::Io { context, source }
}

fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join("log").join(format!("{generation:012}.log"))
}

fn parse_generation(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.split('-').next()?.parse().ok()
}

impl DatasetStore {
    /// Opens (or creates) the storage, recovering from any crash: torn log tails are cut,
    /// half-written seals are rolled back, and unsealed logs become the tail again.
    pub fn open(
        dir: &Path,
        def: &DatasetDef,
        shared: Option<&Arc<dyn SharedLog>>,
        cluster: Option<&Arc<crate::cluster::Cluster>>,
    ) -> Result<Self, HubError> {
        let schema = def.arrow_schema();
        for sub in ["log", "segments", "sealed"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(io_err(format!("creating {}", dir.display())))?;
        }
        // Committed seals.
        let mut sealed_generations = std::collections::BTreeSet::new();
        let mut segments = Vec::new();
        let mut manifest_paths: Vec<PathBuf> = read_dir_sorted(&dir.join("sealed"))?;
        manifest_paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
        let mut manifests = Vec::new();
        for path in manifest_paths {
            let text =
                fs::read_to_string(&path).map_err(io_err(format!("reading {}", path.display())))?;
            let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
                HubError::Internal(format!("manifest {} is unreadable: {e}", path.display()))
            })?;
            sealed_generations.extend(manifest.generations.iter().copied());
            segments.extend(manifest.segments.iter().cloned());
            manifests.push(manifest);
        }
        // Segment files no manifest names come from a seal that crashed: its logs still hold
        // the records, so the files are removed.
        let referenced: std::collections::HashSet<&str> =
            segments.iter().map(|s| s.path.as_str()).collect();
        for partition in read_dir_sorted(&dir.join("segments"))? {
            for file in read_dir_sorted(&partition)? {
                let relative = file
                    .strip_prefix(dir)
                    .unwrap_or(&file)
                    .to_string_lossy()
                    .into_owned();
                if !referenced.contains(relative.as_str()) {
                    tracing::warn!(message = "Removing segment of an unfinished seal.", file = %file.display());
                    fs::remove_file(&file)
                        .map_err(io_err(format!("removing {}", file.display())))?;
                }
            }
        }
        // Keyed calls: those of sealed generations from their manifests, the others from
        // the frames that hold their records.
        let mut keys: HashMap<String, CallRecord> = HashMap::new();
        for manifest in &manifests {
            for sealed in &manifest.keys {
                keys.insert(
                    sealed.key.clone(),
                    CallRecord {
                        generation: None,
                        stamp: sealed.stamp,
                        call: sealed.call.clone(),
                    },
                );
            }
        }
        // Logs: sealed ones are deleted, the others are replayed into the tail.
        let mut tail = Vec::new();
        let mut max_generation = sealed_generations.iter().copied().max().unwrap_or(0);
        for path in read_dir_sorted(&dir.join("log"))? {
            let Some(generation) = parse_generation(&path) else {
                continue;
            };
            max_generation = max_generation.max(generation);
            if sealed_generations.contains(&generation) {
                fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
                continue;
            }
            let contents =
                log::read_log(&path).map_err(io_err(format!("reading {}", path.display())))?;
            if contents.valid_len < contents.file_len {
                tracing::warn!(
                    message = "Dropping torn tail of log.",
                    log = %path.display(),
                    bytes = contents.file_len - contents.valid_len
                );
                log::truncate(&path, contents.valid_len)
                    .map_err(io_err(format!("truncating {}", path.display())))?;
            }
            let replayed = replay(def, &schema, contents.entries, &path.display().to_string())?;
            for batch in replayed.batches {
                tail.push((generation, batch));
            }
            for (key, stamp) in replayed.keys {
                keys.insert(
                    key.key,
                    CallRecord {
                        generation: Some(generation),
                        stamp,
                        call: key.call,
                    },
                );
            }
        }
        // Frames of a shared log: those of sealed generations are dropped (a crash came
        // between a seal and its forgetting them), the others become the tail.
        let mut last_sequence = None;
        if let Some(shared) = shared {
            let name = def.name.as_str();
            let unavailable = |source| HubError::LogUnavailable {
                log: shared.describe(),
                context: format!("reading {name}"),
                source,
            };
            let frames = shared.read(name).map_err(unavailable)?;
            let mut sealed_through = None;
            for frame in frames {
                max_generation = max_generation.max(frame.generation);
                last_sequence = Some(frame.sequence);
                if sealed_generations.contains(&frame.generation) {
                    sealed_through = Some(frame.sequence);
                    continue;
                }
                let len = frame.frame.len() as u64;
                let sequence = frame.sequence;
                let contents = log::parse_frames(frame.frame).map_err(io_err(format!(
                    "reading frame {sequence} of {name} from the shared log"
                )))?;
                if contents.valid_len != len {
                    return Err(HubError::Internal(format!(
                        "frame {} of {name} in the shared log is corrupt",
                        frame.sequence
                    )));
                }
                let source = format!("{name} at {} in the shared log", frame.sequence);
                let replayed = replay(def, &schema, contents.entries, &source)?;
                for batch in replayed.batches {
                    tail.push((frame.generation, batch));
                }
                for (key, stamp) in replayed.keys {
                    keys.insert(
                        key.key,
                        CallRecord {
                            generation: Some(frame.generation),
                            stamp,
                            call: key.call,
                        },
                    );
                }
            }
            // In a cluster, every seal is published before its frames go: a crash may
            // have come between the two.
            let published = match cluster {
                Some(cluster) => publish_missing(cluster, name, dir, &manifests),
                None => true,
            };
            if let Some(through) = sealed_through.filter(|_| published)
                && let Err(error) = shared.forget(name, through)
            {
                tracing::warn!(message = "Could not drop sealed frames from the shared log; the next seal does.", dataset = name, %error);
            }
        }
        let active_generation = max_generation + 1;
        let log = match shared {
            None => Log::File(
                LogWriter::create(&log_path(dir, active_generation))
                    .map_err(io_err(format!("creating a log in {}", dir.display())))?,
            ),
            Some(shared) => Log::Shared {
                log: shared.clone(),
                dataset: def.name.as_str().to_string(),
                appended: false,
                last_sequence,
            },
        };
        let event_time = def
            .event_time
            .as_ref()
            .and_then(|name| def.fields.iter().position(|f| &f.name == name));
        let max_stamp = tail
            .iter()
            .filter_map(|(_, b)| batch_max_stamp(b))
            .chain(segments.iter().filter_map(|s| segment_max_stamp(dir, s)))
            .max();
        Ok(Self {
            dir: dir.to_path_buf(),
            name: def.name.as_str().to_string(),
            cluster: cluster.cloned(),
            event_time,
            state: Mutex::new(State {
                schema,
                active_generation,
                log,
                tail: Tail::from(tail),
                segments,
                sealing: false,
                keys: keys
                    .into_iter()
                    .filter(|(_, r)| max_stamp.is_none_or(|m| r.stamp >= m - KEY_RETENTION_US))
                    .collect(),
                max_stamp,
            }),
        })
    }

    /// Appends a batch (already in the stored schema) and returns once it is on disk.
    pub fn append(&self, batch: RecordBatch) -> Result<(), HubError> {
        self.append_keyed(batch, None)
    }

    /// [`DatasetStore::append`] of a keyed call's batch: the key goes in the same frame.
    pub fn append_keyed(
        &self,
        batch: RecordBatch,
        key: Option<&log::CallKey>,
    ) -> Result<(), HubError> {
        // A call that stored no records keeps no key (nothing to store twice).
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let frame = log::encode_frame_keyed(&batch, key).map_err(io_err("encoding a batch"))?;
        let mut state = self.state.lock().expect("store lock");
        let generation = state.active_generation;
        state.log.append(generation, &[&frame])?;
        let stamp = batch_max_stamp(&batch);
        state.max_stamp = state.max_stamp.max(stamp);
        if let Some(key) = key {
            let stamp = stamp.or(state.max_stamp).unwrap_or(0);
            state.keys.insert(
                key.key.clone(),
                CallRecord {
                    generation: Some(generation),
                    stamp,
                    call: key.call.clone(),
                },
            );
        }
        state.tail.push(generation, batch);
        Ok(())
    }

    /// What the call with idempotency key `key` stored, if the store holds it.
    pub fn keyed_call(&self, key: &str) -> Option<String> {
        self.state
            .lock()
            .expect("store lock")
            .keys
            .get(key)
            .map(|r| r.call.clone())
    }

    /// Appends a batch decoded from a Parquet body accepted whole, logging the body as it
    /// came (see [`log`]), and returns once it is on disk.
    pub fn append_parquet(
        &self,
        batches: Vec<RecordBatch>,
        body: &[u8],
        now: Timestamp,
        key: Option<&log::CallKey>,
    ) -> Result<(), HubError> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let head =
            log::parquet_frame_head(body, now.0, key).map_err(io_err("logging a Parquet body"))?;
        let mut state = self.state.lock().expect("store lock");
        let generation = state.active_generation;
        state.log.append(generation, &[&head, body])?;
        if let Some(key) = key {
            state.keys.insert(
                key.key.clone(),
                CallRecord {
                    generation: Some(generation),
                    stamp: now.0,
                    call: key.call.clone(),
                },
            );
        }
        let newest = batches.iter().filter_map(batch_max_stamp).max();
        state.max_stamp = state.max_stamp.max(newest);
        for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
            state.tail.push(generation, batch);
        }
        Ok(())
    }

    /// A consistent view for a query.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state.lock().expect("store lock");
        Snapshot {
            schema: state.schema.clone(),
            dir: self.dir.clone(),
            segments: state.segments.clone(),
            foreign: Vec::new(),
            tail: state.tail.iter().map(|(_, b)| b.clone()).collect(),
        }
    }

    /// The schema batches are stored in (the dataset's fields plus `_ingested_at`).
    pub fn schema(&self) -> SchemaRef {
        self.state.lock().expect("store lock").schema.clone()
    }

    pub fn tail_rows(&self) -> usize {
        let state = self.state.lock().expect("store lock");
        state.tail.rows
    }

    /// Bytes on disk: the logs of the unsealed tail plus the sealed segments.
    pub fn stored_bytes(&self) -> u64 {
        let segments: u64 = self.snapshot().segments.iter().map(|s| s.bytes).sum();
        let logs: u64 = fs::read_dir(self.dir.join("log"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        segments + logs
    }

    /// The newest ingest stamp stored, sealed or not (µs).
    pub fn max_stamp(&self) -> Option<i64> {
        self.state.lock().expect("store lock").max_stamp
    }

    /// Every stored row whose ingest stamp is after `after` (all rows for `None`), in no
    /// particular order: the feed sorts them. Row groups of sealed segments whose
    /// statistics show nothing newer are not read.
    pub fn rows_after(&self, after: Option<i64>) -> Result<Vec<RecordBatch>, HubError> {
        let snapshot = self.snapshot();
        let schema = snapshot.schema.clone();
        let stamp_col = schema.fields().len() - 1;
        let newer = |batch: RecordBatch| -> Result<Option<RecordBatch>, HubError> {
            let batch = conform(&schema, batch)?;
            let Some(after) = after else {
                return Ok(Some(batch));
            };
            let stamps = batch
                .column(stamp_col)
                .as_primitive::<TimestampMicrosecondType>();
            let keep = arrow::compute::kernels::cmp::gt(
                stamps,
                &arrow::array::Scalar::new(
                    TimestampMicrosecondArray::from(vec![after])
                        .with_timezone_opt(stamps.timezone().map(str::to_string)),
                ),
            )
            .map_err(|e| HubError::Internal(format!("comparing ingest stamps: {e}")))?;
            let kept = arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| HubError::Internal(format!("filtering by ingest stamp: {e}")))?;
            Ok((kept.num_rows() > 0).then_some(kept))
        };
        let mut out = Vec::new();
        for segment in &snapshot.segments {
            let path = snapshot.dir.join(&segment.path);
            let file =
                fs::File::open(&path).map_err(io_err(format!("opening {}", path.display())))?;
            for batch in rows::parquet_rows_after(file, after, &path.display().to_string())? {
                out.extend(newer(batch)?);
            }
        }
        for batch in snapshot.tail {
            out.extend(newer(batch)?);
        }
        Ok(out)
    }

    /// Replaces the schema after a compatible change (new nullable fields at the end).
    /// Batches already in the tail are widened with nulls.
    pub fn set_schema(&self, schema: SchemaRef) -> Result<(), HubError> {
        let mut state = self.state.lock().expect("store lock");
        let tail = std::mem::take(&mut state.tail.batches);
        state.tail = Tail::from(
            tail.into_iter()
                .map(|(g, b)| conform(&schema, b).map(|b| (g, b)))
                .collect::<Result<Vec<_>, _>>()?,
        );
        state.schema = schema;
        Ok(())
    }

    /// Seals the whole unsealed tail into Parquet segments. Appends continue meanwhile
    /// (they go to a fresh log), and queries keep seeing the tail until the seal commits.
    /// Returns the number of rows sealed.
    pub fn seal(&self) -> Result<u64, HubError> {
        let (generations, batches, schema, forget, keys) = {
            let mut state = self.state.lock().expect("store lock");
            if state.sealing || state.tail.is_empty() {
                return Ok(0);
            }
            if !state.log.is_empty() {
                let next = state.active_generation + 1;
                state.log = state.log.next(&self.dir, next)?;
                state.active_generation = next;
            }
            // Every frame so far is in the generations this seal covers.
            let forget = state.log.sealed_through();
            let active = state.active_generation;
            state.sealing = true;
            let mut generations: Vec<u64> = state
                .tail
                .iter()
                .map(|(g, _)| *g)
                .filter(|g| *g < active)
                .collect();
            generations.dedup();
            let batches: Vec<RecordBatch> = state
                .tail
                .iter()
                .filter(|(g, _)| *g < active)
                .map(|(_, b)| b.clone())
                .collect();
            let keys: Vec<SealedKey> = state
                .keys
                .iter()
                .filter(|(_, r)| r.generation.is_some_and(|g| generations.contains(&g)))
                .map(|(key, r)| SealedKey {
                    key: key.clone(),
                    call: r.call.clone(),
                    stamp: r.stamp,
                })
                .collect();
            (generations, batches, state.schema.clone(), forget, keys)
        };
        let result = self.write_seal(&generations, &batches, &schema, forget, keys);
        let mut state = self.state.lock().expect("store lock");
        state.sealing = false;
        let segments = result?;
        let sealed_rows = segments.iter().map(|s| s.rows).sum();
        state.tail.forget(&generations);
        state.segments.extend(segments);
        // The sealed calls' keys are the manifest's now; a day after its call a key goes.
        let oldest = state.max_stamp.map_or(i64::MIN, |m| m - KEY_RETENTION_US);
        state.keys.retain(|_, r| r.stamp >= oldest);
        for record in state.keys.values_mut() {
            if record.generation.is_some_and(|g| generations.contains(&g)) {
                record.generation = None;
            }
        }
        Ok(sealed_rows)
    }

    fn write_seal(
        &self,
        generations: &[u64],
        batches: &[RecordBatch],
        schema: &SchemaRef,
        forget: Option<(Arc<dyn SharedLog>, String, u64)>,
        keys: Vec<SealedKey>,
    ) -> Result<Vec<Segment>, HubError> {
        let last = *generations
            .last()
            .expect("a seal covers at least one generation");
        let mut by_day: BTreeMap<Option<i32>, Vec<RecordBatch>> = BTreeMap::new();
        for batch in batches {
            for (day, part) in split_by_day(batch, self.event_time) {
                by_day.entry(day).or_default().push(part);
            }
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(1 << 20))
            .build();
        let mut segments = Vec::new();
        for (k, (day, parts)) in by_day.into_iter().enumerate() {
            let partition = match day {
                Some(day) => format!("date={}", Date(day)),
                None => "all".to_string(),
            };
            let relative = format!("segments/{partition}/{last:012}-{k}.parquet");
            let path = self.dir.join(&relative);
            let partition_dir = path.parent().expect("segment has a directory");
            fs::create_dir_all(partition_dir)
                .map_err(io_err(format!("creating {}", partition_dir.display())))?;
            citybrain_core::failpoint::step("seal.segment")
                .map_err(io_err(format!("creating {}", path.display())))?;
            let file =
                fs::File::create(&path).map_err(io_err(format!("creating {}", path.display())))?;
            let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props.clone()))
                .map_err(|e| HubError::Internal(format!("parquet writer: {e}")))?;
            let mut rows = 0;
            for part in &parts {
                rows += part.num_rows() as u64;
                writer
                    .write(part)
                    .map_err(|e| HubError::Internal(format!("writing {}: {e}", path.display())))?;
            }
            let file = writer
                .into_inner()
                .map_err(|e| HubError::Internal(format!("closing {}: {e}", path.display())))?;
            file.sync_all()
                .map_err(io_err(format!("syncing {}", path.display())))?;
            log::sync_dir(partition_dir).map_err(io_err("syncing a partition"))?;
            let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            segments.push(Segment {
                path: relative,
                rows,
                bytes,
            });
        }
        // The manifest's rename is the commit point of the seal.
        let manifest = Manifest {
            generations: generations.to_vec(),
            segments: segments.clone(),
            through: forget.as_ref().map(|(_, _, through)| *through),
            keys,
        };
        let sealed = self.dir.join("sealed");
        let tmp = sealed.join(format!("{last:012}.json.tmp"));
        let text = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        fs::write(&tmp, text).map_err(io_err("writing a seal manifest"))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing a seal manifest"))?;
        citybrain_core::failpoint::step("seal.manifest").map_err(io_err("committing a seal"))?;
        fs::rename(&tmp, sealed.join(format!("{last:012}.json")))
            .map_err(io_err("committing a seal"))?;
        log::sync_dir(&sealed).map_err(io_err("syncing the seal directory"))?;
        // Other nodes read the seal before its frames leave the stream; if it cannot be
        // published now, the frames stay and the next start publishes it.
        let published = match &self.cluster {
            Some(cluster) => cluster
                .publish(
                    &self.name,
                    last,
                    manifest.through.unwrap_or(0),
                    &self.dir,
                    &segments,
                    &manifest.keys,
                )
                .map_err(|error| {
                    tracing::warn!(message = "A seal could not be published to the cluster; its frames stay in the shared log until it is.", dataset = %self.name, %error);
                })
                .is_ok(),
            None => true,
        };
        if let Some((shared, dataset, through)) = forget.filter(|_| published)
            && let Err(error) = forget_with_retries(shared.as_ref(), &dataset, through)
        {
            // Harmless: the next open skips frames of sealed generations and drops them.
            tracing::warn!(message = "Could not drop sealed frames from the shared log.", %dataset, %error);
        }
        for generation in generations {
            let path = log_path(&self.dir, *generation);
            if let Err(error) = fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                // Harmless: the next open deletes logs a manifest covers. (Generations of
                // a shared log have no file.)
                tracing::warn!(message = "Could not delete a sealed log.", log = %path.display(), %error);
            }
        }
        Ok(segments)
    }
}

/// Publishes the seals of `manifests` the cluster's book does not have yet, and copies
/// again the published segments the segment store lost; whether all are published (a
/// failure is logged, and the sealed frames stay in the shared log).
fn publish_missing(
    cluster: &crate::cluster::Cluster,
    name: &str,
    dir: &Path,
    manifests: &[Manifest],
) -> bool {
    let result = cluster
        .book
        .generations(name, cluster.log.owner())
        .and_then(|known| {
            for manifest in manifests {
                let Some(&last) = manifest.generations.last() else {
                    continue;
                };
                if !known.contains(&last) {
                    cluster.publish(
                        name,
                        last,
                        manifest.through.unwrap_or(0),
                        dir,
                        &manifest.segments,
                        &manifest.keys,
                    )?;
                } else {
                    let restored = cluster.restore(name, dir, &manifest.segments)?;
                    if restored > 0 {
                        tracing::warn!(message = "The segment store had lost segments of this node's; copied them again.", dataset = name, segments = restored);
                    }
                }
            }
            Ok(())
        });
    match result {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(message = "Seals could not be published to the cluster at start; their frames stay in the shared log until they are.", dataset = name, %error);
            false
        }
    }
}

/// A store shared between the hub and the threads that seal it.
pub type SharedStore = Arc<DatasetStore>;

/// Drops a seal's frames from the shared log, trying again twice (after 0.5 s and 1 s)
/// when the log does not answer: otherwise the frames stay until the next seal or start,
/// which on a dataset that goes quiet may be long.
fn forget_with_retries(
    shared: &dyn crate::log::SharedLog,
    dataset: &str,
    through: u64,
) -> std::io::Result<()> {
    let mut last = Ok(());
    for wait_ms in [0u64, 500, 1_000] {
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        last = shared.forget(dataset, through);
        if last.is_ok() {
            break;
        }
    }
    last
}
