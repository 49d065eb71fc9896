//! Results as clients take them: JSON, CSV (also with a byte-order mark for Excel), Arrow
//! IPC and GeoJSON.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::{QueryResult, SqlError};

/// Result encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    Json,
    Csv,
    /// CSV for spreadsheets: UTF-8 with a byte-order mark, so Excel on Chinese Windows
    /// reads 浙A as 浙A rather than as its GBK mojibake.
    CsvExcel,
    ArrowIpc,
    /// A FeatureCollection: each row a Feature, its first point column the geometry and
    /// the other columns its properties.
    GeoJson,
    /// An Excel workbook (Office Open XML): numbers as numbers, instants as date-times.
    Xlsx,
}

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

impl ResultFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "json" | "application/json" => Some(Self::Json),
            "csv" | "text/csv" => Some(Self::Csv),
            "excel" | "csv-excel" => Some(Self::CsvExcel),
            "arrow" | "application/vnd.apache.arrow.stream" => Some(Self::ArrowIpc),
            "geojson" | "application/geo+json" => Some(Self::GeoJson),
            "xlsx" | XLSX => Some(Self::Xlsx),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv",
            Self::CsvExcel => "text/csv; charset=utf-8",
            Self::ArrowIpc => "application/vnd.apache.arrow.stream",
            Self::GeoJson => "application/geo+json",
            Self::Xlsx => XLSX,
        }
    }
}

/// CSV has no nested values: a point (`{lon, lat}`) becomes `POINT(lon lat)`, the text form
/// ingest takes back; any other nested column becomes Arrow's display text.
fn csv_cells(batch: &RecordBatch) -> Result<RecordBatch, SqlError> {
    use arrow::array::{Array, AsArray, StringBuilder};
    use arrow::datatypes::{DataType, Field, Float64Type, Schema};
    if !batch.columns().iter().any(|c| c.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let err =
        |e: arrow::error::ArrowError| SqlError::Execution(format!("encoding the result: {e}"));
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !column.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let mut text = StringBuilder::new();
        let point = match column.data_type() {
            DataType::Struct(_) if is_point(column.data_type()) => {
                let s = column.as_struct();
                Some((
                    s.column(0).as_primitive::<Float64Type>().clone(),
                    s.column(1).as_primitive::<Float64Type>().clone(),
                ))
            }
            _ => None,
        };
        if let Some((lon, lat)) = point {
            for i in 0..column.len() {
                if column.is_valid(i) {
                    text.append_value(format!("POINT({} {})", lon.value(i), lat.value(i)));
                } else {
                    text.append_null();
                }
            }
        } else {
            let display = arrow::util::display::ArrayFormatter::try_new(
                column.as_ref(),
                &arrow::util::display::FormatOptions::default(),
            )
            .map_err(err)?;
            for i in 0..column.len() {
                if column.is_valid(i) {
                    text.append_value(display.value(i).to_string());
                } else {
                    text.append_null();
                }
            }
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(err)
}

/// Encodes a result: JSON as an array of row objects, CSV with a header, or an Arrow IPC stream.
pub fn encode(result: &QueryResult, format: ResultFormat) -> Result<Vec<u8>, SqlError> {
    match format {
        ResultFormat::GeoJson => geojson(result),
        ResultFormat::Xlsx => crate::xlsx::workbook(result, csv_cells),
        _ => {
            let mut encoder = Encoder::new(format, &result.schema)?;
            let mut out = Vec::new();
            for batch in &result.batches {
                out.extend(encoder.batch(batch)?);
            }
            out.extend(encoder.finish()?);
            Ok(out)
        }
    }
}

impl ResultFormat {
    /// Whether a result in this format can be sent batch by batch ([`Encoder`]); a
    /// GeoJSON collection and a workbook are written whole.
    pub fn streams(self) -> bool {
        !matches!(self, Self::GeoJson | Self::Xlsx)
    }
}

/// A result encoded as its batches arrive (JSON, CSV, Arrow IPC): each batch's bytes are
/// handed out before the next is read, so an answer need not be held whole to be sent.
/// The bytes of [`Encoder::batch`] and then [`Encoder::finish`], joined, are what
/// [`encode`] writes for the same batches.
pub struct Encoder {
    kind: Kind,
    /// Anything was written (JSON's `[`, CSV's header).
    started: bool,
}

enum Kind {
    Json(arrow::json::ArrayWriter<Vec<u8>>),
    Csv { excel: bool, schema: SchemaRef },
    Arrow(arrow::ipc::writer::StreamWriter<Vec<u8>>),
}

impl Encoder {
    /// An encoder for a streaming format ([`ResultFormat::streams`]) of results with `schema`.
    pub fn new(format: ResultFormat, schema: &SchemaRef) -> Result<Self, SqlError> {
        let kind = match format {
            ResultFormat::Json => Kind::Json(arrow::json::ArrayWriter::new(Vec::new())),
            ResultFormat::Csv | ResultFormat::CsvExcel => Kind::Csv {
                excel: format == ResultFormat::CsvExcel,
                schema: schema.clone(),
            },
            ResultFormat::ArrowIpc => Kind::Arrow(
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema).map_err(encoding)?,
            ),
            ResultFormat::GeoJson | ResultFormat::Xlsx => {
                return Err(SqlError::Execution(format!(
                    "{} is written whole, not batch by batch",
                    format.content_type()
                )));
            }
        };
        Ok(Self {
            kind,
            started: false,
        })
    }

    /// The bytes of one more batch.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, SqlError> {
        let first = !self.started;
        self.started = true;
        match &mut self.kind {
            Kind::Json(writer) => {
                writer.write(batch).map_err(encoding)?;
                Ok(std::mem::take(writer.get_mut()))
            }
            Kind::Csv { excel, .. } => {
                let mut out = Vec::new();
                if first && *excel {
                    out.extend_from_slice("\u{feff}".as_bytes());
                }
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(first)
                    .build(&mut out);
                writer.write(&csv_cells(batch)?).map_err(encoding)?;
                drop(writer);
                Ok(out)
            }
            Kind::Arrow(writer) => {
                writer.write(batch).map_err(encoding)?;
                Ok(std::mem::take(writer.get_mut()))
            }
        }
    }

    /// The bytes that end the result (JSON's `]`, an empty result's CSV header line).
    pub fn finish(mut self) -> Result<Vec<u8>, SqlError> {
        match &mut self.kind {
            Kind::Json(writer) => {
                writer.finish().map_err(encoding)?;
                // With no row written, arrow's finish writes `[]`.
                Ok(std::mem::take(writer.get_mut()))
            }
            Kind::Csv { excel, schema } => {
                if self.started {
                    return Ok(Vec::new());
                }
                let mut out = Vec::new();
                if *excel {
                    out.extend_from_slice("\u{feff}".as_bytes());
                }
                let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                out.extend_from_slice(header.join(",").as_bytes());
                out.push(b'\n');
                Ok(out)
            }
            Kind::Arrow(writer) => {
                writer.finish().map_err(encoding)?;
                Ok(std::mem::take(writer.get_mut()))
            }
        }
    }
}

fn encoding(e: arrow::error::ArrowError) -> SqlError {
    SqlError::Execution(format!("encoding the result: {e}"))
}

/// Whether a column is a point (`{lon, lat}`, the hub's geo type).
fn is_point(data_type: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType;
    matches!(data_type, DataType::Struct(members)
        if members.len() == 2
            && members[0].name() == "lon"
            && members[1].name() == "lat"
            && members.iter().all(|m| m.data_type() == &DataType::Float64))
}

/// A FeatureCollection of the result's rows (RFC 7946): the first point column is each
/// feature's geometry (null where the row has none), the other columns its properties.
fn geojson(result: &QueryResult) -> Result<Vec<u8>, SqlError> {
    use serde_json::{Map, Value, json};
    let Some(geometry) = result
        .schema
        .fields()
        .iter()
        .find(|f| is_point(f.data_type()))
        .map(|f| f.name().clone())
    else {
        return Err(SqlError::Invalid(format!(
            "format geojson needs a geo (point) column in the result; its columns are {}",
            result
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&encode(result, ResultFormat::Json)?)
            .map_err(|e| SqlError::Execution(format!("encoding the result: {e}")))?;
    let features: Vec<Value> = rows
        .into_iter()
        .map(|mut properties| {
            let point = properties.remove(&geometry);
            let geometry = match point {
                Some(Value::Object(p)) => json!({
                    "type": "Point",
                    "coordinates": [p.get("lon"), p.get("lat")],
                }),
                _ => Value::Null,
            };
            json!({"type": "Feature", "geometry": geometry, "properties": properties})
        })
        .collect();
    serde_json::to_vec(&json!({"type": "FeatureCollection", "features": features}))
        .map_err(|e| SqlError::Execution(format!("encoding the result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn result(sizes: &[usize]) -> QueryResult {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("plate", DataType::Utf8, true),
        ]));
        let mut next = 0;
        let batches = sizes
            .iter()
            .map(|&size| {
                let n: Vec<i64> = (next..next + size as i64).collect();
                next += size as i64;
                let plate: Vec<Option<String>> = n
                    .iter()
                    .map(|i| (i % 3 != 0).then(|| format!("浙A{i}, \"x\"")))
                    .collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(n)),
                        Arc::new(StringArray::from(plate)),
                    ],
                )
                .unwrap()
            })
            .collect();
        QueryResult { schema, batches }
    }

    /// What an HTTP answer streams, batch by batch, is byte for byte what it sent whole.
    #[test]
    fn batch_by_batch_is_the_whole_answer() {
        let formats = [
            ResultFormat::Json,
            ResultFormat::Csv,
            ResultFormat::CsvExcel,
            ResultFormat::ArrowIpc,
        ];
        for sizes in [&[][..], &[0], &[1], &[3, 0, 4], &[0, 2]] {
            let whole = result(sizes);
            for format in formats {
                assert!(format.streams());
                let mut encoder = Encoder::new(format, &whole.schema).unwrap();
                let mut parts = Vec::new();
                for batch in &whole.batches {
                    parts.extend(encoder.batch(batch).unwrap());
                }
                parts.extend(encoder.finish().unwrap());
                assert_eq!(
                    parts,
                    encode(&whole, format).unwrap(),
                    "{format:?} {sizes:?}"
                );
            }
        }
        // The JSON and CSV of a result with rows, read back.
        let three = result(&[2, 1]);
        let json: serde_json::Value =
            serde_json::from_slice(&encode(&three, ResultFormat::Json).unwrap()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 3);
        assert_eq!(json[2]["plate"], "浙A2, \"x\"");
        let empty: serde_json::Value =
            serde_json::from_slice(&encode(&result(&[]), ResultFormat::Json).unwrap()).unwrap();
        assert_eq!(empty, serde_json::json!([]));
        let csv = String::from_utf8(encode(&result(&[]), ResultFormat::CsvExcel).unwrap()).unwrap();
        assert_eq!(csv, "\u{feff}n,plate\n");
        let csv = String::from_utf8(encode(&three, ResultFormat::Csv).unwrap()).unwrap();
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(!ResultFormat::GeoJson.streams() && !ResultFormat::Xlsx.streams());
    }
}
