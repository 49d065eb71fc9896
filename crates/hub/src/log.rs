//! The append-only record log: framed Arrow IPC batches, checksummed, fsynced before an
//! ingest call is acknowledged.
//!
//! Frame layout, little endian: `b"CBL1"`, payload length (u32), CRC-32 of the payload
//! (u32), payload (one Arrow IPC stream holding one record batch). A crash can leave a
//! torn last frame; [`read_log`] detects it by length or checksum and stops there, and
//! the caller truncates the file, so a half-written batch is never read back.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

const MAGIC: &[u8; 4] = b"CBL1";
const HEADER: usize = 12;

/// Encodes one batch as a complete frame (outside any lock: this is the CPU part).
pub fn encode_frame(batch: &RecordBatch) -> io::Result<Vec<u8>> {
    let mut frame = vec![0u8; HEADER];
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
        self.file.write_all(frame)?;
        self.file.sync_data()?;
        self.len += frame.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What reading a log found.
#[derive(Debug)]
pub struct LogContents {
    pub batches: Vec<RecordBatch>,
    /// Bytes of whole, valid frames; anything after is a torn or corrupt tail.
    pub valid_len: u64,
    pub file_len: u64,
}

/// Reads every whole frame of a log, stopping at the first torn or corrupt one.
pub fn read_log(path: &Path) -> io::Result<LogContents> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut batches = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        if &bytes[at..at + 4] != MAGIC {
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
        let reader = StreamReader::try_new(payload, None).map_err(io::Error::other)?;
        for batch in reader {
            batches.push(batch.map_err(io::Error::other)?);
        }
        at += HEADER + len;
    }
    Ok(LogContents {
        batches,
        valid_len: at as u64,
        file_len: bytes.len() as u64,
    })
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
        // Cut the file at every byte of the second frame: only the first batch survives.
        for cut in first_len as usize..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let contents = read_log(&path).unwrap();
            assert_eq!(contents.batches.len(), 1, "cut at {cut}");
            assert_eq!(contents.valid_len, first_len);
        }
        // A flipped bit in the last frame is caught by the checksum.
        let mut corrupt = full.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &corrupt).unwrap();
        assert_eq!(read_log(&path).unwrap().batches.len(), 1);
        std::fs::write(&path, &full).unwrap();
        assert_eq!(read_log(&path).unwrap().batches.len(), 2);
    }
}
