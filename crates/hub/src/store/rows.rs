//! What a dataset's stored batches are made of and read back as: the batches of log
//! entries (with the keyed calls among them), their ingest stamps, the schema they are
//! brought to, the split of a seal by event day, and a directory's entries in order.

use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use citybrain_core::time::MICROS_PER_DAY;

use super::{Segment, io_err};
use crate::HubError;
use crate::log;
use crate::schema::DatasetDef;

/// What a log's entries hold: the stored batches, and the keyed calls among them with
/// their ingest stamps.
pub(crate) struct Replayed {
    pub batches: Vec<RecordBatch>,
    pub keys: Vec<(log::CallKey, i64)>,
}

/// The stored batches of a log's entries (`source` names the log for messages).
pub(crate) fn replay(
    def: &DatasetDef,
    schema: &SchemaRef,
    entries: Vec<log::Entry>,
    source: &str,
) -> Result<Replayed, HubError> {
    let mut out = Vec::new();
    let mut keys = Vec::new();
    for entry in entries {
        let batches = match entry {
            log::Entry::Batch(batch, key) => {
                if let Some(key) = key {
                    keys.push((key, batch_max_stamp(&batch).unwrap_or(i64::MIN)));
                }
                vec![batch]
            }
            log::Entry::Parquet {
                ingested_at_us,
                body,
                key,
            } => {
                if let Some(key) = key {
                    keys.push((key, ingested_at_us));
                }
                // Accepted whole at ingest; decoded the same way again, a batch per row
                // group as at ingest.
                let decoded = crate::parquet_in::decode_parquet_parts(
                    def,
                    body,
                    crate::parquet_in::Reading::Replay,
                )
                .map_err(|e| {
                    HubError::Internal(format!(
                        "a logged Parquet body in {source} no longer decodes: {e}"
                    ))
                })?;
                if !decoded.rejected.is_empty() {
                    tracing::warn!(
                        message = "Records of a logged Parquet body no longer fit the definition; they stay in the log only.",
                        log = source,
                        records = decoded.rejected.len()
                    );
                }
                decoded
                    .batches
                    .into_iter()
                    .filter(|b| b.num_rows() > 0)
                    .map(|b| crate::with_ingested_at_of(schema, b, ingested_at_us))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        for batch in batches {
            out.push(conform(schema, batch)?);
        }
    }
    Ok(Replayed { batches: out, keys })
}

/// The newest `_ingested_at` in a stored batch (its last column).
pub(super) fn batch_max_stamp(batch: &RecordBatch) -> Option<i64> {
    let column = batch.columns().last()?;
    arrow::compute::max(column.as_primitive_opt::<TimestampMicrosecondType>()?)
}

/// The newest `_ingested_at` of a row group, from its statistics (the last column).
/// The batches of a Parquet segment (`what` names it for messages), skipping the row
/// groups whose ingest stamps are all at or below `after`.
pub(crate) fn parquet_rows_after<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
    after: Option<i64>,
    what: &str,
) -> Result<Vec<RecordBatch>, HubError> {
    let unreadable = |e: &dyn std::fmt::Display| HubError::Internal(format!("reading {what}: {e}"));
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(reader)
        .map_err(|e| unreadable(&e))?;
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, group)| {
            let newest = group_max_stamp(group);
            after.is_none() || newest.is_none_or(|newest| Some(newest) > after)
        })
        .map(|(i, _)| i)
        .collect();
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let reader = builder
        .with_row_groups(groups)
        .build()
        .map_err(|e| unreadable(&e))?;
    reader
        .map(|batch| batch.map_err(|e| unreadable(&e)))
        .collect()
}

pub(super) fn group_max_stamp(group: &parquet::file::metadata::RowGroupMetaData) -> Option<i64> {
    let column = group.columns().last()?;
    match column.statistics()? {
        parquet::file::statistics::Statistics::Int64(stats) => stats.max_opt().copied(),
        _ => None,
    }
}

/// The newest `_ingested_at` of a sealed segment, from its footer; `None` if unreadable
/// (the segment is then read whole by a catch-up, which is only slower).
pub(super) fn segment_max_stamp(dir: &Path, segment: &Segment) -> Option<i64> {
    let file = fs::File::open(dir.join(&segment.path)).ok()?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).ok()?;
    use parquet::file::reader::FileReader;
    reader
        .metadata()
        .row_groups()
        .iter()
        .filter_map(group_max_stamp)
        .max()
}

pub(super) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, HubError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(format!("listing {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Brings a logged batch to the current schema: fields added since are null.
pub(crate) fn conform(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, HubError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| HubError::Internal(format!("logged batch does not fit the schema: {e}")))
}

/// Splits a batch by the UTC day of its event time (or keeps it whole without one).
pub(super) fn split_by_day(
    batch: &RecordBatch,
    event_time: Option<usize>,
) -> Vec<(Option<i32>, RecordBatch)> {
    let Some(column) = event_time else {
        return vec![(None, batch.clone())];
    };
    let times: &TimestampMicrosecondArray = batch
        .column(column)
        .as_primitive::<TimestampMicrosecondType>();
    let days: Vec<i32> = times
        .values()
        .iter()
        .map(|t| t.div_euclid(MICROS_PER_DAY) as i32)
        .collect();
    let first = days.first().copied();
    if days.iter().all(|d| Some(*d) == first) {
        return vec![(first, batch.clone())];
    }
    let mut distinct = days.clone();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|day| {
            let mask = arrow::array::BooleanArray::from_iter(days.iter().map(|d| Some(*d == day)));
            (Some(day), crate::decode::filter_rows(batch, &mask))
        })
        .collect()
}
