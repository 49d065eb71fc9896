//! The append-only record log: framed batches, checksummed, fsynced before an ingest call
//! is acknowledged.
//!
//! Frame layout, little endian: a magic, payload length (u32), CRC-32 of the payload
//! (u32), payload. `b"CBL1"`: one Arrow IPC stream holding one record batch. `b"CBP1"`: the
//! ingest time (i64 microseconds) and a Parquet body accepted whole, kept as it came: it is
//! already compact (a fifth of the same batch in IPC), so the log writes less and encodes
//! nothing; reading it back decodes it with the dataset's definition, as ingest did. A
//! crash can leave a torn last frame; [`read_log`] detects it by length or checksum and
//! stops there, and the caller truncates the file, so a half-written batch is never read
//! back.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

const MAGIC: &[u8; 4] = b"CBL1";
const MAGIC_PARQUET: &[u8; 4] = b"CBP1";
const MAGIC_PARQUET_KEYED: &[u8; 4] = b"CBP2";
const HEADER: usize = 12;
/// Schema metadata of an IPC frame: the call's idempotency key and what it stored.
const KEY_METADATA: &str = "citybrain.call_key";
const CALL_METADATA: &str = "citybrain.call";

/// An ingest call's idempotency key and what the call stored (a small JSON summary), kept
/// in the same frame as its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallKey {
    pub key: String,
    pub call: String,
}

/// Encodes one batch as a complete frame (outside any lock: this is the CPU part).
pub fn encode_frame(batch: &RecordBatch) -> io::Result<Vec<u8>> {
    encode_frame_keyed(batch, None)
}

/// [`encode_frame`], with the call's key in the frame's schema metadata.
pub fn encode_frame_keyed(batch: &RecordBatch, key: Option<&CallKey>) -> io::Result<Vec<u8>> {
    let keyed;
    let batch = match key {
        None => batch,
        Some(key) => {
            let mut metadata = batch.schema().metadata().clone();
            metadata.insert(KEY_METADATA.to_string(), key.key.clone());
            metadata.insert(CALL_METADATA.to_string(), key.call.clone());
            let schema =
                std::sync::Arc::new(batch.schema().as_ref().clone().with_metadata(metadata));
            keyed = batch
                .clone()
                .with_schema(schema)
                .map_err(io::Error::other)?;
            &keyed
        }
    };
    // Sized for the whole batch up front: growing by doubling would copy it several times
    // and touch fresh pages at each step (a 10-million-row batch is ~500 MB).
    let mut frame = Vec::with_capacity(HEADER + batch.get_array_memory_size() + 4096);
    frame.resize(HEADER, 0);
    {
        let mut writer =
            StreamWriter::try_new(&mut frame, &batch.schema()).map_err(io::Error::other)?;
        writer.write(batch).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
    }
    let payload_len = frame.len() - HEADER;
    let len = u32::try_from(payload_len).map_err(|_| {
        io::Error::other("a batch over 4 GiB cannot be logged; send smaller batches")
    })?;
    let crc = crc32fast::hash(&frame[HEADER..]);
    frame[0..4].copy_from_slice(MAGIC);
    frame[4..8].copy_from_slice(&len.to_le_bytes());
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// The header and ingest time of a Parquet frame (and its call's key, if it has one); the
/// body follows as it is.
pub fn parquet_frame_head(
    body: &[u8],
    ingested_at_us: i64,
    key: Option<&CallKey>,
) -> io::Result<Vec<u8>> {
    let mut fields = ingested_at_us.to_le_bytes().to_vec();
    if let Some(key) = key {
        for text in [&key.key, &key.call] {
            let len = u32::try_from(text.len())
                .map_err(|_| io::Error::other("a call key is too long"))?;
            fields.extend_from_slice(&len.to_le_bytes());
            fields.extend_from_slice(text.as_bytes());
        }
    }
    let len = u32::try_from(body.len() + fields.len()).map_err(|_| {
        io::Error::other("a Parquet body over 4 GiB cannot be logged; send smaller files")
    })?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&fields);
    crc.update(body);
    let mut head = Vec::with_capacity(HEADER + fields.len());
    head.extend_from_slice(if key.is_some() {
        MAGIC_PARQUET_KEYED
    } else {
        MAGIC_PARQUET
    });
    head.extend_from_slice(&len.to_le_bytes());
    head.extend_from_slice(&crc.finalize().to_le_bytes());
    head.extend_from_slice(&fields);
    Ok(head)
}

/// An open log file being appended to.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    len: u64,
}

impl LogWriter {
    /// Creates a new, empty log file and makes its directory entry durable.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(Self { file, len: 0 })
    }

    /// Appends a frame and waits until it is on disk.
    pub fn append_durable(&mut self, frame: &[u8]) -> io::Result<()> {
        citybrain_core::failpoint::write("log.append", &mut self.file, frame)?;
        self.file.write_all(frame)?;
        citybrain_core::failpoint::step("log.fsync")?;
        self.file.sync_data()?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Appends a frame given in parts (a head and a body) and waits until it is on disk.
    pub fn append_parts_durable(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        for (i, part) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                // A torn write here leaves the head and half the body.
                citybrain_core::failpoint::write("log.append", &mut self.file, part)?;
            }
            self.file.write_all(part)?;
        }
        citybrain_core::failpoint::step("log.fsync")?;
        self.file.sync_data()?;
        self.len += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One frame's content.
#[derive(Debug)]
pub enum Entry {
    /// A batch (its schema without the frame's metadata), and its call's key if it had one.
    Batch(RecordBatch, Option<CallKey>),
    /// A Parquet body accepted whole, when, and its call's key if it had one.
    Parquet {
        ingested_at_us: i64,
        body: bytes::Bytes,
        key: Option<CallKey>,
    },
}

impl Entry {
    pub fn key(&self) -> Option<&CallKey> {
        match self {
            Entry::Batch(_, key) | Entry::Parquet { key, .. } => key.as_ref(),
        }
    }
}

/// Reads a length-prefixed text of a keyed Parquet frame at `at`, moving past it.
fn read_text(payload: &[u8], at: &mut usize) -> Option<String> {
    let len = u32::from_le_bytes(payload.get(*at..*at + 4)?.try_into().ok()?) as usize;
    let text = payload.get(*at + 4..(*at + 4).checked_add(len)?)?;
    *at += 4 + len;
    String::from_utf8(text.to_vec()).ok()
}

/// What reading a log found.
#[derive(Debug)]
pub struct LogContents {
    pub entries: Vec<Entry>,
    /// Bytes of whole, valid frames; anything after is a torn or corrupt tail.
    pub valid_len: u64,
    pub file_len: u64,
}

/// Reads every whole frame of a log, stopping at the first torn or corrupt one.
pub fn read_log(path: &Path) -> io::Result<LogContents> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    parse_frames(bytes::Bytes::from(bytes))
}

/// Every whole frame in `bytes`, stopping at the first torn or corrupt one.
pub fn parse_frames(bytes: bytes::Bytes) -> io::Result<LogContents> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let magic = &bytes[at..at + 4];
        if magic != MAGIC && magic != MAGIC_PARQUET && magic != MAGIC_PARQUET_KEYED {
            break;
        }
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        if magic == MAGIC_PARQUET || magic == MAGIC_PARQUET_KEYED {
            let Some(time) = payload.get(..8) else {
                break;
            };
            let mut start = 8;
            let key = if magic == MAGIC_PARQUET_KEYED {
                let (Some(key), Some(call)) = (
                    read_text(payload, &mut start),
                    read_text(payload, &mut start),
                ) else {
                    break;
                };
                Some(CallKey { key, call })
            } else {
                None
            };
            entries.push(Entry::Parquet {
                ingested_at_us: i64::from_le_bytes(time.try_into().expect("8 bytes")),
                body: bytes.slice(at + HEADER + start..at + HEADER + len),
                key,
            });
        } else {
            crate::ipc_check::check_stream(payload).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("frame at byte {at}: {e}"),
                )
            })?;
            let reader = StreamReader::try_new(payload, None).map_err(io::Error::other)?;
            let metadata = reader.schema().metadata().clone();
            let key = match (metadata.get(KEY_METADATA), metadata.get(CALL_METADATA)) {
                (Some(key), Some(call)) => Some(CallKey {
                    key: key.clone(),
                    call: call.clone(),
                }),
                _ => None,
            };
            for batch in reader {
                let batch = batch.map_err(io::Error::other)?;
                let batch = if key.is_some() {
                    // The key is the frame's, not the data's: stored batches carry none.
                    let plain = std::sync::Arc::new(
                        batch
                            .schema()
                            .as_ref()
                            .clone()
                            .with_metadata(Default::default()),
                    );
                    RecordBatch::try_new(plain, batch.columns().to_vec())
                        .map_err(io::Error::other)?
                } else {
                    batch
                };
                entries.push(Entry::Batch(batch, key.clone()));
            }
        }
        at += HEADER + len;
    }
    Ok(LogContents {
        entries,
        valid_len: at as u64,
        file_len: bytes.len() as u64,
    })
}

/// One frame of a [`SharedLog`], as it was appended.
#[derive(Debug, Clone)]
pub struct SharedFrame {
    /// The store's log generation the frame was appended in (seals cover generations).
    pub generation: u64,
    /// Its place in the shared log (increasing, not contiguous).
    pub sequence: u64,
    pub frame: bytes::Bytes,
}

/// One whole frame another node appended to a [`SharedLog`].
#[derive(Debug, Clone)]
pub struct ForeignFrame {
    /// The node whose frame it is (its id, as in the subject).
    pub owner: String,
    /// Its place in the shared log (the last of its chunks).
    pub sequence: u64,
    pub frame: bytes::Bytes,
}

/// A log kept off this machine (NATS JetStream, `citybrain-jetstream`), replicated, so an
/// acknowledged record survives the loss of the node that took it. The store appends the
/// same frames it would write to a file; the hub stays free of network code.
pub trait SharedLog: Send + Sync + std::fmt::Debug {
    /// Appends one frame (given in parts) of `dataset`, returning its sequence once the
    /// log has acknowledged it durably. An error means it may not be stored: the ingest
    /// call fails.
    fn append(&self, dataset: &str, generation: u64, parts: &[&[u8]]) -> io::Result<u64>;
    /// Every whole frame of `dataset` the log holds, in append order.
    fn read(&self, dataset: &str) -> io::Result<Vec<SharedFrame>>;
    /// Drops `dataset`'s frames up to and including `through` (they are sealed).
    fn forget(&self, dataset: &str, through: u64) -> io::Result<()>;
    /// Drops every frame of `dataset` (deleted, or created again under its name).
    fn forget_all(&self, dataset: &str) -> io::Result<()>;
    /// Where the log is, for messages (`nats://127.0.0.1:4222 stream CITYBRAIN`).
    fn describe(&self) -> String;
    /// This node's id in the log (the owner of the frames it appends).
    fn owner(&self) -> &str;
    /// Every whole frame other nodes appended to `dataset` at sequence `from` or later, up
    /// to the newest the log held when asked, and the sequence to ask from next. What a
    /// node acknowledged before this call is in the answer (or was sealed: the caller
    /// learns that from the seals it reads afterwards). Chunks of a frame not yet whole are
    /// kept for the next call of the same `follower` (each reader of the log names itself,
    /// so two readers at different places never take each other's chunks).
    fn follow(
        &self,
        follower: &str,
        dataset: &str,
        from: u64,
    ) -> io::Result<(Vec<ForeignFrame>, u64)>;
}

/// Cuts a torn tail off a log so later appends follow the last whole frame.
pub fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Makes renames and new files in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use std::sync::Arc;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("v", arrow::datatypes::DataType::Int64, false),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    /// Cuts a two-frame log at every byte of its second frame: only the first survives.
    fn only_the_first_frame_survives_any_cut(path: &Path, full: &[u8], first_len: u64) {
        for cut in first_len as usize..full.len() {
            std::fs::write(path, &full[..cut]).unwrap();
            let contents = read_log(path).unwrap();
            assert_eq!(contents.entries.len(), 1, "cut at {cut}");
            assert_eq!(contents.valid_len, first_len);
        }
    }

    #[test]
    fn torn_tail_is_dropped_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = LogWriter::create(&path).unwrap();
        log.append_durable(&encode_frame(&batch(&[1, 2])).unwrap())
            .unwrap();
        let first_len = log.len();
        log.append_durable(&encode_frame(&batch(&[3])).unwrap())
            .unwrap();
        let full = std::fs::read(&path).unwrap();
        only_the_first_frame_survives_any_cut(&path, &full, first_len);
        // A flipped bit in the last frame is caught by the checksum.
        let mut corrupt = full.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &corrupt).unwrap();
        assert_eq!(read_log(&path).unwrap().entries.len(), 1);
        std::fs::write(&path, &full).unwrap();
        assert_eq!(read_log(&path).unwrap().entries.len(), 2);
    }

    #[test]
    fn a_parquet_frame_is_read_back_as_written_and_a_torn_one_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = LogWriter::create(&path).unwrap();
        log.append_durable(&encode_frame(&batch(&[1])).unwrap())
            .unwrap();
        let first_len = log.len();
        let body = b"PAR1 pretend parquet PAR1".to_vec();
        log.append_parts_durable(&[&parquet_frame_head(&body, 42, None).unwrap(), &body])
            .unwrap();
        let contents = read_log(&path).unwrap();
        assert_eq!(contents.entries.len(), 2);
        match &contents.entries[1] {
            Entry::Parquet {
                ingested_at_us,
                body: read,
                key: None,
            } => {
                assert_eq!(*ingested_at_us, 42);
                assert_eq!(read.as_ref(), &body[..]);
            }
            other => panic!("not a Parquet entry: {other:?}"),
        }
        let full = std::fs::read(&path).unwrap();
        only_the_first_frame_survives_any_cut(&path, &full, first_len);
    }

    #[test]
    fn a_call_key_is_read_back_from_the_frame_that_holds_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let key = CallKey {
            key: "batch-7".into(),
            call: r#"{"accepted":2}"#.into(),
        };
        let mut log = LogWriter::create(&path).unwrap();
        log.append_durable(&encode_frame_keyed(&batch(&[1, 2]), Some(&key)).unwrap())
            .unwrap();
        let first_len = log.len();
        let body = b"PAR1 pretend parquet PAR1".to_vec();
        let parquet_key = CallKey {
            key: "file-1".into(),
            call: "{}".into(),
        };
        log.append_parts_durable(&[
            &parquet_frame_head(&body, 42, Some(&parquet_key)).unwrap(),
            &body,
        ])
        .unwrap();
        let contents = read_log(&path).unwrap();
        assert_eq!(contents.entries.len(), 2);
        match &contents.entries[0] {
            Entry::Batch(read, Some(k)) => {
                assert_eq!(k, &key);
                assert!(
                    read.schema().metadata().is_empty(),
                    "the key is not the data's"
                );
                assert_eq!(read.num_rows(), 2);
            }
            other => panic!("not a keyed batch: {other:?}"),
        }
        match &contents.entries[1] {
            Entry::Parquet {
                ingested_at_us: 42,
                body: read,
                key: Some(k),
            } => {
                assert_eq!(k, &parquet_key);
                assert_eq!(read.as_ref(), &body[..]);
            }
            other => panic!("not a keyed Parquet entry: {other:?}"),
        }
        // Torn anywhere in the keyed frame: neither the records nor the key come back.
        let full = std::fs::read(&path).unwrap();
        only_the_first_frame_survives_any_cut(&path, &full, first_len);
    }
}
