//! Parquet bodies: columns are matched to fields by name, cast where the cast cannot lose
//! information, and checked row by row (required values, point ranges).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Float64Type, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::decode::{
    DecodeError, Decoded, IngestLimits, MAX_RAW_BYTES, Problem, Rejected, data_schema, row_width,
};
use crate::parquet_check::{check_chunks, check_levels, check_metadata, check_page_headers};
use crate::schema::{DatasetDef, FieldType};

/// Whether a Parquet column of type `from` may fill a field of type `to` without loss.
fn castable(from: &DataType, to: FieldType) -> bool {
    use DataType::*;
    match to {
        FieldType::String => matches!(from, Utf8 | LargeUtf8 | Utf8View),
        FieldType::Int | FieldType::Money => {
            matches!(from, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32)
        }
        FieldType::Float => matches!(from, Float16 | Float32 | Float64 | Int8 | Int16 | Int32),
        FieldType::Bool => matches!(from, Boolean),
        // A Parquet timestamp without a zone is UTC by the format's own convention
        // (isAdjustedToUTC is how writers mark instants); any unit is converted to micros.
        FieldType::Timestamp => matches!(from, Timestamp(..)),
        FieldType::Date => matches!(from, Date32 | Date64),
        FieldType::Geo => match from {
            Struct(fields) => {
                fields.len() == 2
                    && fields.iter().any(|f| f.name() == "lon")
                    && fields.iter().any(|f| f.name() == "lat")
            }
            _ => false,
        },
    }
}

/// A column cast to a field's type, with the rows whose value could not be cast (null in
/// `column` though valid in the input) and why.
struct Cast {
    column: ArrayRef,
    failures: Vec<(usize, String)>,
}

fn safe() -> CastOptions<'static> {
    // Safe: a value that does not fit becomes null, and is then reported with its row,
    // instead of failing the whole body.
    CastOptions {
        safe: true,
        ..Default::default()
    }
}

/// The rows valid in `input` but null in `output`: values the cast could not convert.
fn lost_in_cast(input: &ArrayRef, output: &ArrayRef, what: &str) -> Vec<(usize, String)> {
    if output.null_count() == input.null_count() {
        return Vec::new();
    }
    let formatter = ArrayFormatter::try_new(input.as_ref(), &FormatOptions::default()).ok();
    (0..input.len())
        .filter(|&row| input.is_valid(row) && output.is_null(row))
        .map(|row| {
            let value = formatter
                .as_ref()
                .map_or_else(String::new, |f| f.value(row).to_string());
            (row, format!("'{value}' does not fit {what}"))
        })
        .collect()
}

fn cast_column(column: &ArrayRef, to: FieldType) -> Result<Cast, String> {
    let target = to.arrow_type();
    if column.data_type() == &target {
        return Ok(Cast {
            column: column.clone(),
            failures: Vec::new(),
        });
    }
    if let (FieldType::Timestamp, DataType::Timestamp(unit, _)) = (to, column.data_type()) {
        // The values count from the epoch in UTC whether or not the column names a zone
        // (a zone-less Parquet timestamp is UTC by the format's convention): change the unit
        // with overflow checks, then label the result UTC. (A cast from zone-less to a named
        // zone would instead read the values as that zone's wall clock.)
        let naive = DataType::Timestamp(*unit, None);
        let column = if column.data_type() == &naive {
            column.clone()
        } else {
            arrow::array::make_array(
                column
                    .to_data()
                    .into_builder()
                    .data_type(naive)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        };
        let micros = cast_with_options(
            &column,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            &safe(),
        )
        .map_err(|e| e.to_string())?;
        let failures = lost_in_cast(&column, &micros, "a timestamp in microseconds (64 bits)");
        return Ok(Cast {
            column: Arc::new(
                micros
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .clone()
                    .with_timezone("UTC"),
            ),
            failures,
        });
    }
    if let FieldType::Geo = to {
        let s = column.as_struct();
        let mut failures = Vec::new();
        let mut part = |name: &str| -> Result<ArrayRef, String> {
            let c = s.column_by_name(name).ok_or("missing member")?;
            let cast =
                cast_with_options(c, &DataType::Float64, &safe()).map_err(|e| e.to_string())?;
            for (row, reason) in lost_in_cast(c, &cast, "a number") {
                if s.is_valid(row) {
                    failures.push((row, format!("{name}: {reason}")));
                }
            }
            // A point with a member missing is not a point.
            for row in (0..s.len()).filter(|&r| s.is_valid(r) && c.is_null(r)) {
                failures.push((row, format!("the point has no {name}")));
            }
            Ok(cast)
        };
        let (lon, lat) = (part("lon")?, part("lat")?);
        failures.sort_by_key(|(row, _)| *row);
        // The members are not nullable: a point missing one is null here (and its row
        // refused above), never a valid point with a null inside.
        let nulls = NullBuffer::union(
            NullBuffer::union(s.nulls(), lon.logical_nulls().as_ref()).as_ref(),
            lat.logical_nulls().as_ref(),
        );
        return Ok(Cast {
            column: Arc::new(arrow::array::StructArray::new(
                crate::schema::geo_fields(),
                vec![lon, lat],
                nulls,
            )),
            failures,
        });
    }
    let cast = cast_with_options(column, &target, &safe()).map_err(|e| e.to_string())?;
    let failures = lost_in_cast(column, &cast, &format!("a {} field", to.name()));
    Ok(Cast {
        column: cast,
        failures,
    })
}

/// The most rows decoded into one batch (string offsets are 32-bit, so a far larger batch
/// could overflow them); batches are a row group each below that.
const ONE_BATCH_ROWS: usize = 4 << 20;

/// A Parquet body's records, a batch per row group: joining them into one batch would need
/// their memory twice over, fresh pages the kernel zeroes first.
pub struct DecodedParts {
    pub batches: Vec<RecordBatch>,
    pub rejected: Vec<Rejected>,
}

/// Why a body is decoded, which decides the checks.
#[derive(Debug, Clone, Copy)]
pub enum Reading {
    /// A body offered for ingest: every check, within the limits.
    Ingest(IngestLimits),
    /// A body read back from a log, accepted whole when it was ingested: decoded as then,
    /// without the limits or the checks added since (refusing its records now would lose
    /// records that were acknowledged).
    Replay,
}

/// Decodes a whole Parquet file held in memory.
pub fn decode_parquet(
    def: &DatasetDef,
    body: &[u8],
    limits: &IngestLimits,
) -> Result<Decoded, DecodeError> {
    let parts = decode_parquet_parts(
        def,
        bytes::Bytes::copy_from_slice(body),
        Reading::Ingest(*limits),
    )?;
    let batch = arrow::compute::concat_batches(&data_schema(def), &parts.batches)
        .map_err(|e| DecodeError::Parquet(e.to_string()))?;
    Ok(Decoded {
        batch,
        rejected: parts.rejected,
    })
}

/// Decodes a Parquet body held in memory, a batch per row group.
pub fn decode_parquet_parts(
    def: &DatasetDef,
    bytes: bytes::Bytes,
    reading: Reading,
) -> Result<DecodedParts, DecodeError> {
    check_metadata(&bytes)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .map_err(|e| DecodeError::Parquet(e.to_string()))?;
    check_chunks(builder.metadata(), bytes.len())?;
    check_page_headers(builder.metadata(), &bytes)?;
    check_levels(&bytes)?;
    let total_rows: u64 = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
        .sum();
    if let Reading::Ingest(limits) = &reading {
        // Refused from the footer, before anything is decoded: a small body can hold many
        // rows (a constant column takes a few bytes for any number of them).
        limits.check_rows(total_rows)?;
        limits.check_bytes(total_rows.saturating_mul(row_width(def) as u64))?;
        let stated: u64 = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| u64::try_from(g.total_byte_size()).unwrap_or(0))
            .sum();
        limits.check_bytes(stated)?;
    }
    // A batch per row group, joined once at the end: growing one batch across row groups
    // reallocates (and the kernel zeroes) its buffers again and again.
    let group_rows = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let batch_rows = group_rows.clamp(1, ONE_BATCH_ROWS);
    let builder = builder.with_batch_size(batch_rows);
    let file_schema = builder.schema().clone();
    let mut header_problems = Vec::new();
    for (i, field) in file_schema.fields().iter().enumerate() {
        let first = file_schema
            .fields()
            .iter()
            .position(|f| f.name() == field.name())
            .unwrap_or(i);
        if first != i && matches!(reading, Reading::Ingest(_)) {
            header_problems.push(format!(
                "column '{}' appears more than once (columns {} and {})",
                field.name(),
                first + 1,
                i + 1
            ));
            continue;
        }
        match def.field(field.name()) {
            None => header_problems.push(format!(
                "column '{}' is not a field of the dataset",
                field.name()
            )),
            Some(f) if !castable(field.data_type(), f.field_type) => header_problems.push(format!(
                "column '{}' has Parquet type {} which cannot hold {} values",
                field.name(),
                field.data_type(),
                f.field_type.name()
            )),
            Some(_) => {}
        }
    }
    for field in def.fields.iter().filter(|f| !f.nullable) {
        if file_schema.field_with_name(&field.name).is_err() {
            header_problems.push(format!("required field '{}' has no column", field.name));
        }
    }
    if !header_problems.is_empty() {
        return Err(DecodeError::Parquet(header_problems.join("; ")));
    }
    let reader = builder
        .build()
        .map_err(|e| DecodeError::Parquet(e.to_string()))?;
    let schema = data_schema(def);
    let mut good = Vec::new();
    let mut rejected = Vec::new();
    let mut row_base = 0u64;
    let mut decoded_bytes = 0u64;
    for batch in reader {
        let batch = batch.map_err(|error| {
            unreadable_rows(
                &bytes,
                &file_schema,
                batch_rows,
                row_base,
                total_rows,
                error,
            )
        })?;
        let n = batch.num_rows();
        let mut columns = Vec::with_capacity(def.fields.len());
        let mut row_problems: Vec<Vec<Problem>> = Vec::new();
        let mut add_problem = |row: usize, field: &str, reason: String| {
            if row_problems.is_empty() {
                row_problems.resize_with(n, Vec::new);
            }
            row_problems[row].push(Problem {
                line: row_base + row as u64 + 1,
                field: Some(field.to_string()),
                reason,
            });
        };
        for field in &def.fields {
            let column = match batch.column_by_name(&field.name) {
                Some(input) => {
                    let cast = cast_column(input, field.field_type).map_err(|e| {
                        DecodeError::Parquet(format!(
                            "rows {}-{}, field '{}': {e}",
                            row_base + 1,
                            row_base + n as u64,
                            field.name
                        ))
                    })?;
                    for (row, reason) in cast.failures {
                        add_problem(row, &field.name, reason);
                    }
                    if !field.nullable {
                        for row in (0..n).filter(|&r| input.is_null(r)) {
                            add_problem(
                                row,
                                &field.name,
                                "the field is required but null".to_string(),
                            );
                        }
                    }
                    cast.column
                }
                None => arrow::array::new_null_array(&field.field_type.arrow_type(), n),
            };
            if field.field_type == FieldType::Geo {
                let s = column.as_struct();
                let lon = s.column(0).as_primitive::<Float64Type>();
                let lat = s.column(1).as_primitive::<Float64Type>();
                for row in (0..n).filter(|r| s.is_valid(*r)) {
                    if let Err(reason) =
                        citybrain_core::GeoPoint::new(lon.value(row), lat.value(row))
                    {
                        add_problem(row, &field.name, reason.to_string());
                    }
                }
            }
            if field.field_type == FieldType::Float && matches!(reading, Reading::Ingest(_)) {
                // As in CSV (and JSON, which has no NaN): NaN and infinities are refused in
                // every format, since one makes every SUM or AVG over it NaN or infinite.
                let values = column.as_primitive::<Float64Type>();
                for row in (0..n).filter(|&r| values.is_valid(r) && !values.value(r).is_finite()) {
                    add_problem(
                        row,
                        &field.name,
                        format!("'{}' is not a finite number", values.value(row)),
                    );
                }
            }
            columns.push(column);
        }
        if row_problems.is_empty() {
            let decoded = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| DecodeError::Parquet(e.to_string()))?;
            decoded_bytes += decoded.get_array_memory_size() as u64;
            good.push(decoded);
        } else {
            // The refused rows go before the batch is built: a required field may be null
            // (or a value that did not fit, nulled by the cast) only in them.
            let keep = BooleanArray::from_iter(row_problems.iter().map(|p| Some(p.is_empty())));
            let columns = columns
                .iter()
                .map(|c| arrow::compute::filter(c, &keep))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DecodeError::Parquet(e.to_string()))?;
            let kept = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| DecodeError::Parquet(e.to_string()))?;
            decoded_bytes += kept.get_array_memory_size() as u64;
            good.push(kept);
            // The refused record as received: the file's own columns and values.
            let formatters: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).ok())
                .collect();
            for (row, problems) in row_problems.into_iter().enumerate() {
                if problems.is_empty() {
                    continue;
                }
                let mut raw = String::new();
                for (i, f) in batch.schema().fields().iter().enumerate() {
                    if raw.len() > MAX_RAW_BYTES {
                        break;
                    }
                    if let Some(fmt) = &formatters[i] {
                        raw.push_str(&format!("{}={} ", f.name(), fmt.value(row)));
                    }
                }
                raw.truncate(raw.floor_char_boundary(MAX_RAW_BYTES));
                let record = Rejected {
                    line: row_base + row as u64 + 1,
                    problems,
                    raw,
                };
                decoded_bytes += record.memory_size() as u64;
                rejected.push(record);
            }
        }
        if let Reading::Ingest(limits) = &reading {
            limits.check_bytes(decoded_bytes)?;
        }
        row_base += n as u64;
    }
    Ok(DecodedParts {
        batches: good,
        rejected,
    })
}

/// The error for a batch the Parquet reader could not decode, naming its rows and, when one
/// column alone fails to decode there, the field.
fn unreadable_rows(
    bytes: &bytes::Bytes,
    file_schema: &arrow::datatypes::SchemaRef,
    batch_rows: usize,
    row_base: u64,
    total_rows: u64,
    error: arrow::error::ArrowError,
) -> DecodeError {
    let last = (row_base + batch_rows as u64).min(total_rows.max(row_base + 1));
    let rows = format!("rows {}-{last}", row_base + 1);
    // Only on this error path: decode each column alone up to the failing batch.
    let failing = (0..file_schema.fields().len()).find(|&root| {
        let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()) else {
            return false;
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), [root]);
        let Ok(reader) = builder
            .with_batch_size(batch_rows)
            .with_projection(mask)
            .build()
        else {
            return true;
        };
        let mut read = 0u64;
        for batch in reader {
            match batch {
                Ok(b) => read += b.num_rows() as u64,
                Err(_) => return true,
            }
            if read > row_base {
                return false;
            }
        }
        false
    });
    match failing {
        Some(root) => DecodeError::Parquet(format!(
            "{rows}, field '{}': {error}",
            file_schema.field(root).name()
        )),
        None => DecodeError::Parquet(format!("{rows}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body logged before NaN was refused (or before any later check) is read back as it
    /// was accepted: its acknowledged records must not be lost at the next start.
    #[test]
    fn a_logged_body_is_decoded_as_it_was_accepted() {
        let def = DatasetDef::from_file_text(
            "d.toml",
            "name = \"sec.numbers\"\nowner = \"sec\"\n[[fields]]\nname = \"n\"\ntype = \"float\"\n",
        )
        .unwrap();
        let values: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![1.0, f64::NAN]));
        let batch = RecordBatch::try_from_iter([("n", values)]).unwrap();
        let mut body = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut body, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let body = bytes::Bytes::from(body);
        let tight = IngestLimits {
            max_rows: 1,
            max_bytes: 1,
        };
        assert!(matches!(
            decode_parquet_parts(&def, body.clone(), Reading::Ingest(tight)),
            Err(DecodeError::TooManyRows { limit: 1, found: 2 })
        ));
        let ingest =
            decode_parquet_parts(&def, body.clone(), Reading::Ingest(IngestLimits::default()))
                .unwrap();
        assert_eq!(ingest.rejected.len(), 1);
        let replay = decode_parquet_parts(&def, body, Reading::Replay).unwrap();
        assert!(replay.rejected.is_empty());
        assert_eq!(
            replay
                .batches
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>(),
            2
        );
    }
}
