//! Decoding request bodies (NDJSON, CSV, Parquet) into validated Arrow columns.
//!
//! Every record is checked against the dataset's schema and every problem is kept, with the
//! record's line (or row) number and the field at fault: a publisher fixes a whole batch in
//! one round. Good records go straight into Arrow builders; a bad record is never half-added,
//! because its values are parsed into a scratch row first and committed only when all fit.
//! NDJSON bodies are split at line boundaries and decoded on all cores.
//!
//! The three formats agree on what they accept: a leading UTF-8 byte order mark (as Excel
//! writes it) is skipped in NDJSON as in CSV; a field given twice (a repeated JSON key, a
//! repeated CSV or Parquet column) is refused, never resolved by the last one winning; NaN
//! and infinities are refused in every format (JSON cannot write them, and one would make
//! every SUM or AVG over the column NaN). Each call is bounded by [`IngestLimits`].
//!
//! The three formats share this module's record check (types, nulls, repeated fields,
//! non-finite numbers, feed mappings, the ingest bounds), which is what keeps them agreeing;
//! each format's reading is a file beside it (`ndjson.rs`, `csv.rs`; Parquet's in
//! `parquet_in.rs`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBufferBuilder, BooleanBuilder, Date32Builder,
    Float64Array, Float64Builder, Int64Builder, RecordBatch, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::SchemaRef;
use citybrain_core::{Date, GeoPoint, Timestamp};

use crate::mapping::{Mapper, Slot};
use crate::schema::{DatasetDef, FieldType, geo_fields};

mod csv;
mod ndjson;

/// The structural check every Parquet body passes before it is decoded, public for its
/// benchmark (`examples/parquet_bench.rs`).
#[doc(hidden)]
pub use crate::parquet_check::check_levels as check_parquet_levels;
use csv::decode_csv_mapped;
pub use csv::{decode_csv, decode_csv_within};
use ndjson::ndjson_within;
pub use ndjson::{decode_ndjson, decode_ndjson_within};

/// The formats a batch of records can arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
    Parquet,
}

impl Format {
    /// Picks the format from a `Content-Type` header value.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        match mime.to_ascii_lowercase().as_str() {
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/json-seq"
            | "application/json" => Some(Format::Ndjson),
            "text/csv" | "application/csv" => Some(Format::Csv),
            "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => {
                Some(Format::Parquet)
            }
            _ => None,
        }
    }

    /// Picks the format from a file name's extension.
    pub fn from_path(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") || lower.ends_with(".json") {
            Some(Format::Ndjson)
        } else if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else if lower.ends_with(".parquet") {
            Some(Format::Parquet)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// One problem with one record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    /// 1-based line of the NDJSON body, line of the CSV file (the header is line 1), or
    /// 1-based row of the Parquet file.
    pub line: u64,
    /// The field at fault; `None` when the record as a whole is malformed.
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}, field '{}': {}", self.line, field, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// A record that did not fit the schema, with every reason why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub line: u64,
    pub problems: Vec<Problem>,
    /// The record as received, cut at [`MAX_RAW_BYTES`].
    pub raw: String,
}

/// How much of a refused record is kept for the dead-letter dataset.
pub const MAX_RAW_BYTES: usize = 8 * 1024;

/// The outcome of decoding a body: the good records as columns, and the refused ones.
#[derive(Debug)]
pub struct Decoded {
    /// Good records in the dataset's field order (without `_ingested_at`).
    pub batch: RecordBatch,
    pub rejected: Vec<Rejected>,
}

impl Decoded {
    pub fn total(&self) -> usize {
        self.batch.num_rows() + self.rejected.len()
    }
}

impl Rejected {
    /// About how much memory the record takes while it is held.
    pub(crate) fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.raw.capacity()
            + self
                .problems
                .iter()
                .map(|p| {
                    std::mem::size_of::<Problem>()
                        + p.reason.capacity()
                        + p.field.as_ref().map_or(0, String::capacity)
                })
                .sum::<usize>()
    }
}

/// A body that could not be read at all (not a problem with one record).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the CSV header (line 1) is unusable: {0}")]
    CsvHeader(String),
    #[error("the Parquet body could not be read: {0}")]
    Parquet(String),
    #[error(
        "the body holds {found} records or more, over the limit of {limit} records per ingest \
         call (max_rows); send them in smaller batches"
    )]
    TooManyRows { limit: u64, found: u64 },
    #[error(
        "the body's records take {found} bytes or more once decoded, over the limit of {limit} \
         bytes per ingest call (max_bytes); send them in smaller batches"
    )]
    TooManyBytes { limit: u64, found: u64 },
    #[error("{0}")]
    Mapping(String),
}

/// Bounds on what one ingest call may decode. A body's size says little about its decoded
/// size: a 1.2 MB Parquet file can hold 100 M rows (3.8 GB decoded), and a line `{}` of
/// NDJSON is a whole row of a wide dataset. Rows are counted (from the Parquet footer, or the
/// lines of a text body) before anything is decoded; bytes are estimated from the rows before
/// decoding and measured while decoding (Arrow memory of the good records plus the refused
/// records kept), a Parquet batch at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Records (good and refused) in one body.
    pub max_rows: u64,
    /// Memory the decoded records may take.
    pub max_bytes: u64,
}

impl IngestLimits {
    /// No bounds: for tools decoding their own files.
    pub const UNBOUNDED: IngestLimits = IngestLimits {
        max_rows: u64::MAX,
        max_bytes: u64::MAX,
    };

    pub(crate) fn check_rows(&self, rows: u64) -> Result<(), DecodeError> {
        if rows > self.max_rows {
            return Err(DecodeError::TooManyRows {
                limit: self.max_rows,
                found: rows,
            });
        }
        Ok(())
    }

    pub(crate) fn check_bytes(&self, bytes: u64) -> Result<(), DecodeError> {
        if bytes > self.max_bytes {
            return Err(DecodeError::TooManyBytes {
                limit: self.max_bytes,
                found: bytes,
            });
        }
        Ok(())
    }
}

impl Default for IngestLimits {
    /// 16 Mi records and 2 GiB (the SQL engine's default memory pool): ten million passages
    /// (about 0.6 GB decoded) fit in one call.
    fn default() -> Self {
        Self {
            max_rows: 16 << 20,
            max_bytes: 2 << 30,
        }
    }
}

/// The least memory one decoded row takes, whatever its values (nulls included): the
/// fixed-width part of every column, and a string's offset.
pub(crate) fn row_width(def: &DatasetDef) -> usize {
    def.fields
        .iter()
        .map(|f| match f.field_type {
            FieldType::String | FieldType::Date => 4,
            FieldType::Int | FieldType::Money | FieldType::Float | FieldType::Timestamp => 8,
            FieldType::Bool => 1,
            FieldType::Geo => 16,
        })
        .sum::<usize>()
        + 8 // _ingested_at, added to every stored row
}

/// Decodes a body in `format` against `def`, without bounds (see [`decode_within`]).
pub fn decode(def: &DatasetDef, format: Format, body: &[u8]) -> Result<Decoded, DecodeError> {
    decode_within(def, format, body, &IngestLimits::UNBOUNDED)
}

/// Decodes a body in `format` against `def`, refusing it whole if its records exceed
/// `limits`.
pub fn decode_within(
    def: &DatasetDef,
    format: Format,
    body: &[u8],
    limits: &IngestLimits,
) -> Result<Decoded, DecodeError> {
    decode_mapped_within(def, None, format, body, limits)
}

/// [`decode_within`] through a feed mapping of `def` (NDJSON and CSV).
pub fn decode_mapped_within(
    def: &DatasetDef,
    mapper: Option<&Mapper>,
    format: Format,
    body: &[u8],
    limits: &IngestLimits,
) -> Result<Decoded, DecodeError> {
    let decoded = match (format, mapper) {
        (Format::Ndjson, _) => ndjson_within(def, mapper, body, limits)?,
        (Format::Csv, _) => decode_csv_mapped(def, mapper, body, limits)?,
        (Format::Parquet, None) => return crate::parquet_in::decode_parquet(def, body, limits),
        (Format::Parquet, Some(m)) => {
            return Err(DecodeError::Mapping(format!(
                "mapping '{}' reads NDJSON and CSV; a Parquet file carries the dataset's own columns",
                m.name()
            )));
        }
    };
    let held = decoded.batch.get_array_memory_size()
        + decoded
            .rejected
            .iter()
            .map(Rejected::memory_size)
            .sum::<usize>();
    limits.check_bytes(held as u64)?;
    Ok(decoded)
}

/// A UTF-8 byte order mark, which Excel and Notepad write at the start of a file. It is not
/// part of the first record in any format, so it is skipped (CSV's reader does the same).
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Refuses a text body whose records would exceed `limits`, before decoding. A record takes
/// a line or more, so the lines bound the records: counting newlines is far cheaper than
/// decoding, and `count_records` counts exactly only when that bound is over.
fn check_text_rows(
    def: &DatasetDef,
    body: &[u8],
    limits: &IngestLimits,
    count_records: impl FnOnce() -> u64,
) -> Result<(), DecodeError> {
    let fits = |rows: u64| {
        limits.check_rows(rows)?;
        limits.check_bytes(rows.saturating_mul(row_width(def) as u64))
    };
    let lines = body.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    if fits(lines).is_ok() {
        return Ok(());
    }
    fits(count_records())
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// A value as found in the input, before it is checked against the field's type.
#[derive(Debug, Clone)]
pub(crate) enum Raw<'de> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'de, str>),
    Point(f64, f64),
    /// A time a feed mapping has read already (µs since the epoch).
    Micros(i64),
    Other(&'static str),
}

/// A value checked against its field's type, ready for the column builder.
#[derive(Debug, Clone, Copy, Default)]
enum Value<'a> {
    #[default]
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Micros(i64),
    Days(i32),
    Point(f64, f64),
}

fn describe(raw: &Raw) -> &'static str {
    match raw {
        Raw::Null => "null",
        Raw::Bool(_) => "a boolean",
        Raw::Int(_) => "an integer",
        Raw::Float(_) => "a number with a fraction",
        Raw::Str(_) => "a string",
        Raw::Point(..) => "a point",
        Raw::Micros(_) => "a time",
        Raw::Other(what) => what,
    }
}

/// Converts a JSON value to the field type. `text` says the input is CSV, where every cell
/// is text and must be parsed.
fn convert<'a>(raw: &'a Raw<'a>, ty: FieldType, text: bool) -> Result<Value<'a>, String> {
    let wrong = |want: &str| Err(format!("expected {want}, got {}", describe(raw)));
    match (ty, raw) {
        (_, Raw::Null) => Ok(Value::Null),
        (FieldType::String, Raw::Str(s)) => Ok(Value::Str(s)),
        (FieldType::String, _) => wrong("a string"),
        (FieldType::Int, Raw::Int(i)) => Ok(Value::Int(*i)),
        (FieldType::Int, Raw::Str(s)) if text => s
            .trim()
            .parse()
            .map(Value::Int)
            .map_err(|_| format!("'{s}' is not an integer")),
        (FieldType::Int, _) => wrong("an integer"),
        (FieldType::Money, Raw::Int(i)) => Ok(Value::Int(*i)),
        (FieldType::Money, Raw::Str(s)) if text => s
            .trim()
            .parse()
            .map(Value::Int)
            .map_err(|_| format!("'{s}' is not an amount in integer fen (1 yuan = 100 fen)")),
        (FieldType::Money, _) => wrong("an amount in integer fen (1 yuan = 100 fen)"),
        (FieldType::Float, Raw::Float(f)) => Ok(Value::Float(*f)),
        (FieldType::Float, Raw::Int(i)) => Ok(Value::Float(*i as f64)),
        (FieldType::Float, Raw::Str(s)) if text => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(format!("'{s}' is not a finite number")),
        },
        (FieldType::Float, _) => wrong("a number"),
        (FieldType::Bool, Raw::Bool(b)) => Ok(Value::Bool(*b)),
        (FieldType::Bool, Raw::Str(s)) if text => match s.trim() {
            "true" | "TRUE" | "True" | "1" => Ok(Value::Bool(true)),
            "false" | "FALSE" | "False" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("'{s}' is not a boolean (true/false)")),
        },
        (FieldType::Bool, _) => wrong("a boolean"),
        (FieldType::Timestamp, Raw::Micros(t)) => Ok(Value::Micros(*t)),
        (FieldType::Timestamp, Raw::Str(s)) => Timestamp::parse(s.trim())
            .map(|t| Value::Micros(t.0))
            .map_err(|e| e.to_string()),
        (FieldType::Timestamp, _) => wrong("an RFC 3339 timestamp string"),
        (FieldType::Date, Raw::Str(s)) => Date::parse(s.trim())
            .map(|d| Value::Days(d.0))
            .map_err(|e| e.to_string()),
        (FieldType::Date, _) => wrong("a date string YYYY-MM-DD"),
        (FieldType::Geo, Raw::Point(lon, lat)) => GeoPoint::new(*lon, *lat)
            .map(|p| Value::Point(p.lon, p.lat))
            .map_err(str::to_string),
        (FieldType::Geo, Raw::Str(s)) => GeoPoint::parse_text(s)
            .map(|p| Value::Point(p.lon, p.lat))
            .map_err(str::to_string),
        (FieldType::Geo, _) => wrong("a point {\"lon\": .., \"lat\": ..} or [lon, lat]"),
    }
}

/// Column builders for one batch, in the dataset's field order.
enum Builder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Micros(TimestampMicrosecondBuilder),
    Days(Date32Builder),
    Point {
        lon: Vec<f64>,
        lat: Vec<f64>,
        valid: BooleanBufferBuilder,
    },
}

struct Columns {
    schema: SchemaRef,
    builders: Vec<Builder>,
}

impl Columns {
    fn new(def: &DatasetDef, capacity: usize) -> Self {
        let builders = def
            .fields
            .iter()
            .map(|f| match f.field_type {
                FieldType::String => {
                    Builder::Str(StringBuilder::with_capacity(capacity, capacity * 8))
                }
                FieldType::Int | FieldType::Money => {
                    Builder::Int(Int64Builder::with_capacity(capacity))
                }
                FieldType::Float => Builder::Float(Float64Builder::with_capacity(capacity)),
                FieldType::Bool => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
                FieldType::Timestamp => Builder::Micros(
                    TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
                ),
                FieldType::Date => Builder::Days(Date32Builder::with_capacity(capacity)),
                FieldType::Geo => Builder::Point {
                    lon: Vec::with_capacity(capacity),
                    lat: Vec::with_capacity(capacity),
                    valid: BooleanBufferBuilder::new(capacity),
                },
            })
            .collect();
        Self {
            schema: data_schema(def),
            builders,
        }
    }

    /// Appends one row whose values were all checked already.
    fn push(&mut self, row: &[Value]) {
        for (builder, value) in self.builders.iter_mut().zip(row) {
            match (builder, *value) {
                (Builder::Str(b), Value::Str(s)) => b.append_value(s),
                (Builder::Str(b), _) => b.append_null(),
                (Builder::Int(b), Value::Int(i)) => b.append_value(i),
                (Builder::Int(b), _) => b.append_null(),
                (Builder::Float(b), Value::Float(f)) => b.append_value(f),
                (Builder::Float(b), _) => b.append_null(),
                (Builder::Bool(b), Value::Bool(v)) => b.append_value(v),
                (Builder::Bool(b), _) => b.append_null(),
                (Builder::Micros(b), Value::Micros(t)) => b.append_value(t),
                (Builder::Micros(b), _) => b.append_null(),
                (Builder::Days(b), Value::Days(d)) => b.append_value(d),
                (Builder::Days(b), _) => b.append_null(),
                (Builder::Point { lon, lat, valid }, Value::Point(x, y)) => {
                    lon.push(x);
                    lat.push(y);
                    valid.append(true);
                }
                (Builder::Point { lon, lat, valid }, _) => {
                    lon.push(0.0);
                    lat.push(0.0);
                    valid.append(false);
                }
            }
        }
    }

    fn finish(self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .builders
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Str(mut b) => Arc::new(b.finish()),
                    Builder::Int(mut b) => Arc::new(b.finish()),
                    Builder::Float(mut b) => Arc::new(b.finish()),
                    Builder::Bool(mut b) => Arc::new(b.finish()),
                    Builder::Micros(mut b) => Arc::new(b.finish()),
                    Builder::Days(mut b) => Arc::new(b.finish()),
                    Builder::Point {
                        lon,
                        lat,
                        mut valid,
                    } => {
                        let nulls = NullBuffer::new(valid.finish());
                        let nulls = (nulls.null_count() > 0).then_some(nulls);
                        Arc::new(StructArray::new(
                            geo_fields(),
                            vec![
                                Arc::new(Float64Array::from(lon)) as ArrayRef,
                                Arc::new(Float64Array::from(lat)),
                            ],
                            nulls,
                        ))
                    }
                }
            })
            .collect();
        let options = arrow::array::RecordBatchOptions::new()
            .with_row_count(Some(arrays.first().map_or(0, |a| a.len())));
        RecordBatch::try_new_with_options(self.schema, arrays, &options)
            .expect("columns are built from the schema they are checked against")
    }
}

/// The schema of decoded records: the dataset's fields, without hub-added columns.
pub fn data_schema(def: &DatasetDef) -> SchemaRef {
    let full = def.arrow_schema();
    let fields: Vec<_> = full
        .fields()
        .iter()
        .take(def.fields.len())
        .cloned()
        .collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// Checks one record's raw values against the schema, filling `row` and `problems`.
fn check_row<'a>(
    def: &DatasetDef,
    raws: &'a [Option<Raw<'a>>],
    text: bool,
    line: u64,
    row: &mut [Value<'a>],
    problems: &mut Vec<Problem>,
    failed: Option<&[bool]>,
) {
    for (i, field) in def.fields.iter().enumerate() {
        if failed.is_some_and(|f| f[i]) {
            continue;
        }
        let value = match &raws[i] {
            None => Value::Missing,
            Some(raw) => match convert(raw, field.field_type, text) {
                Ok(v) => v,
                Err(reason) => {
                    problems.push(Problem {
                        line,
                        field: Some(field.name.clone()),
                        reason,
                    });
                    continue;
                }
            },
        };
        if matches!(value, Value::Missing | Value::Null) && !field.nullable {
            problems.push(Problem {
                line,
                field: Some(field.name.clone()),
                reason: "the field is required but missing or null".to_string(),
            });
        }
        row[i] = value;
    }
}

/// Problems with mapped fields named after their source column, so a sender finds them in
/// their own export: "field 'jgsj': for ts, ...".
fn name_sources(mapper: &Mapper, def: &DatasetDef, problems: &mut [Problem]) {
    for p in problems {
        let Some(i) = p
            .field
            .as_ref()
            .and_then(|f| def.fields.iter().position(|d| d.name == *f))
        else {
            continue;
        };
        if let Some(source) = mapper.source_of(i)
            && source != def.fields[i].name
        {
            p.reason = format!("(mapped to '{}') {}", def.fields[i].name, p.reason);
            p.field = Some(source.to_string());
        }
    }
}

fn cut(raw: &[u8]) -> String {
    let end = raw.len().min(MAX_RAW_BYTES);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Keeps the rows of `batch` where `keep` is true.
pub(crate) fn filter_rows(batch: &RecordBatch, keep: &BooleanArray) -> RecordBatch {
    arrow::compute::filter_record_batch(batch, keep).expect("mask has the batch's length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::DatasetDef;

    pub(crate) fn passages_def() -> DatasetDef {
        DatasetDef::from_file_text(
            "p.toml",
            r#"
name = "transport.anpr_passages"
owner = "transport"
event_time = "ts"
[[fields]]
name = "ts"
type = "timestamp"
[[fields]]
name = "checkpoint_id"
type = "int"
[[fields]]
name = "plate"
type = "string"
class = "personal"
[[fields]]
name = "speed_kmh"
type = "float"
nullable = true
[[fields]]
name = "loc"
type = "geo"
nullable = true
"#,
        )
        .unwrap()
    }

    #[test]
    fn ndjson_good_and_bad_records() {
        let body = br#"{"ts":"2026-11-22T08:00:00+08:00","checkpoint_id":7,"plate":"\u6d59A12345","speed_kmh":42,"loc":[120.1,30.2]}
{"ts":"2026-11-22T08:00:00","checkpoint_id":"7","plate":"x"}

{"ts":"2026-11-22T08:00:01Z","checkpoint_id":8,"plate":"A","colour":"red"}
not json
{"ts":"2026-11-22T08:00:02Z","checkpoint_id":9,"plate":"B","loc":{"lon":120.2,"lat":30.3}}
"#;
        let d = decode_ndjson(&passages_def(), body);
        assert_eq!(d.batch.num_rows(), 2);
        let lines: Vec<u64> = d.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 4, 5]);
        let fields: Vec<_> = d.rejected[0]
            .problems
            .iter()
            .map(|p| p.field.clone().unwrap())
            .collect();
        assert_eq!(fields, vec!["ts", "checkpoint_id"]);
        assert_eq!(d.rejected[1].problems[0].field.as_deref(), Some("colour"));
        assert!(d.rejected[2].problems[0].field.is_none());
        let plates = d
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(plates.value(0), "浙A12345");
    }

    /// A float comes back as the same f64 it was written as (serde_json's default parser can
    /// be one unit in the last place off: 1.2193417358398437 read as …435).
    #[test]
    fn ndjson_floats_round_trip_exactly() {
        let values = [
            1.2193417358398437,
            1.1538491130812703,
            0.9908371501498753,
            0.1 + 0.2,
        ];
        let body: String = values
            .iter()
            .map(|v| {
                format!("{{\"ts\":\"2026-11-22T00:00:00Z\",\"checkpoint_id\":1,\"plate\":\"p\",\"speed_kmh\":{v}}}\n")
            })
            .collect();
        let d = decode_ndjson(&passages_def(), body.as_bytes());
        let speeds = d
            .batch
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        assert_eq!(speeds.values().to_vec(), values.to_vec());
    }

    #[test]
    fn ndjson_parallel_split_keeps_line_numbers() {
        let mut body = Vec::new();
        for i in 0..20_000 {
            if i == 15_000 {
                body.extend_from_slice(b"{\"ts\":\"bad\",\"checkpoint_id\":1,\"plate\":\"p\"}\n");
            } else {
                body.extend_from_slice(
                    format!("{{\"ts\":\"2026-11-22T00:00:00Z\",\"checkpoint_id\":{i},\"plate\":\"p\"}}\n").as_bytes(),
                );
            }
        }
        let d = decode_ndjson(&passages_def(), &body);
        assert_eq!(d.batch.num_rows(), 19_999);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].line, 15_001);
    }

    #[test]
    fn csv_header_and_cells() {
        let body = "ts,checkpoint_id,plate,speed_kmh,loc\n\
                    2026-11-22T00:00:00Z,1,A,10.5,\"120.1,30.2\"\n\
                    2026-11-22T00:00:00Z,x,B,,\n\
                    2026-11-22T00:00:00Z,2,,,POINT(120.1 30.2)\n";
        let d = decode_csv(&passages_def(), body.as_bytes()).unwrap();
        assert_eq!(d.batch.num_rows(), 1);
        assert_eq!(d.rejected.len(), 2);
        assert_eq!(d.rejected[0].line, 3);
        assert_eq!(
            d.rejected[0].problems[0].field.as_deref(),
            Some("checkpoint_id")
        );
        assert_eq!(d.rejected[1].line, 4);
        assert_eq!(d.rejected[1].problems[0].field.as_deref(), Some("plate"));
        let err = decode_csv(&passages_def(), b"ts,plate,wat\n").unwrap_err();
        assert!(err.to_string().contains("wat"), "{err}");
        assert!(err.to_string().contains("checkpoint_id"), "{err}");
    }
}
