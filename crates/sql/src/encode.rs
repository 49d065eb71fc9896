//! Results as clients take them: JSON, CSV (also with a byte-order mark for Excel), Arrow
//! IPC and GeoJSON.

use std::sync::Arc;

use arrow::array::RecordBatch;

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
    let err =
        |e: arrow::error::ArrowError| SqlError::Execution(format!("encoding the result: {e}"));
    let mut out = Vec::new();
    match format {
        ResultFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            for batch in &result.batches {
                writer.write(batch).map_err(err)?;
            }
            writer.finish().map_err(err)?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
        }
        ResultFormat::Csv | ResultFormat::CsvExcel => {
            if format == ResultFormat::CsvExcel {
                out.extend_from_slice("\u{feff}".as_bytes());
            }
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if result.batches.is_empty() {
                let header: Vec<&str> = result
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                drop(writer);
                out.extend_from_slice(header.join(",").as_bytes());
                out.push(b'\n');
            } else {
                for batch in &result.batches {
                    writer.write(&csv_cells(batch)?).map_err(err)?;
                }
            }
        }
        ResultFormat::ArrowIpc => {
            let mut writer =
                arrow::ipc::writer::StreamWriter::try_new(&mut out, &result.schema).map_err(err)?;
            for batch in &result.batches {
                writer.write(batch).map_err(err)?;
            }
            writer.finish().map_err(err)?;
        }
        ResultFormat::GeoJson => out = geojson(result)?,
        ResultFormat::Xlsx => out = crate::xlsx::workbook(result, csv_cells)?,
    }
    Ok(out)
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
