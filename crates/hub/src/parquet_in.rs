//! Parquet bodies: columns are matched to fields by name, cast where the cast cannot lose
//! information, and checked row by row (required values, point ranges).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Float64Type, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::decode::{
    DecodeError, Decoded, MAX_RAW_BYTES, Problem, Rejected, data_schema, filter_rows,
};
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

fn cast_column(column: &ArrayRef, to: FieldType) -> Result<ArrayRef, String> {
    let target = to.arrow_type();
    if column.data_type() == &target {
        return Ok(column.clone());
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
            &CastOptions {
                safe: false,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        return Ok(Arc::new(
            micros
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .clone()
                .with_timezone("UTC"),
        ));
    }
    if let FieldType::Geo = to {
        let s = column.as_struct();
        let part = |name: &str| -> Result<ArrayRef, String> {
            let c = s.column_by_name(name).ok_or("missing member")?;
            cast_with_options(
                c,
                &DataType::Float64,
                &CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())
        };
        return Ok(Arc::new(arrow::array::StructArray::new(
            crate::schema::geo_fields(),
            vec![part("lon")?, part("lat")?],
            s.nulls().cloned(),
        )));
    }
    cast_with_options(
        column,
        &target,
        &CastOptions {
            safe: false,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())
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

/// Decodes a whole Parquet file held in memory.
pub fn decode_parquet(def: &DatasetDef, body: &[u8]) -> Result<Decoded, DecodeError> {
    decode_parquet_bytes(def, bytes::Bytes::copy_from_slice(body))
}

/// The same over bytes already owned (a log read back), as one batch.
pub fn decode_parquet_bytes(def: &DatasetDef, bytes: bytes::Bytes) -> Result<Decoded, DecodeError> {
    let parts = decode_parquet_parts(def, bytes)?;
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
) -> Result<DecodedParts, DecodeError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| DecodeError::Parquet(e.to_string()))?;
    // A batch per row group, joined once at the end: growing one batch across row groups
    // reallocates (and the kernel zeroes) its buffers again and again.
    let group_rows = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let builder = builder.with_batch_size(group_rows.clamp(1, ONE_BATCH_ROWS));
    let file_schema = builder.schema().clone();
    let mut header_problems = Vec::new();
    for field in file_schema.fields() {
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
    for batch in reader {
        let batch = batch.map_err(|e| DecodeError::Parquet(e.to_string()))?;
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
                Some(c) => cast_column(c, field.field_type)
                    .map_err(|e| DecodeError::Parquet(format!("column '{}': {e}", field.name)))?,
                None => arrow::array::new_null_array(&field.field_type.arrow_type(), n),
            };
            if !field.nullable && column.null_count() > 0 {
                for row in (0..n).filter(|r| column.is_null(*r)) {
                    add_problem(
                        row,
                        &field.name,
                        "the field is required but null".to_string(),
                    );
                }
            }
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
            if let DataType::Timestamp(TimeUnit::Microsecond, _) = column.data_type() {
                // Units were converted with overflow checks above; nothing more to check.
            }
            columns.push(column);
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| DecodeError::Parquet(e.to_string()))?;
        if row_problems.is_empty() {
            good.push(batch);
        } else {
            let keep = BooleanArray::from_iter(row_problems.iter().map(|p| Some(p.is_empty())));
            good.push(filter_rows(&batch, &keep));
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
                for (i, f) in def.fields.iter().enumerate() {
                    if let Some(fmt) = &formatters[i] {
                        raw.push_str(&format!("{}={} ", f.name, fmt.value(row)));
                    }
                }
                raw.truncate(raw.floor_char_boundary(MAX_RAW_BYTES));
                rejected.push(Rejected {
                    line: row_base + row as u64 + 1,
                    problems,
                    raw,
                });
            }
        }
        row_base += n as u64;
    }
    Ok(DecodedParts {
        batches: good,
        rejected,
    })
}
