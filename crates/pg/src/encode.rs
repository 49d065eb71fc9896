//! Arrow results as PostgreSQL rows, and PostgreSQL parameters as Arrow values.
//!
//! Each Arrow column is first cast to the one Arrow type that stands for its PostgreSQL
//! type (`canonical`), so encoding needs one case per PostgreSQL type. The mapping is
//! `citybrain_sql::pg_catalog::pg_type`, which the catalog uses too. Money is integer fen
//! (`int8`) on the wire as in every other answer; decimals travel as `float8`; types
//! PostgreSQL has no equivalent for (a geo point, a list) travel as their text.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Schema,
    TimeUnit, TimestampMicrosecondType,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use citybrain_sql::ScalarValue;
use citybrain_sql::pg_catalog::pg_type;
use futures::{Stream, StreamExt};
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

use crate::error::user_error;

/// The one Arrow type each PostgreSQL type is encoded from.
fn canonical(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Boolean => DataType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => DataType::Int16,
        DataType::Int32 | DataType::UInt16 => DataType::Int32,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 | DataType::Float32 => DataType::Float32,
        DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            DataType::Float64
        }
        DataType::Date32 | DataType::Date64 => DataType::Date32,
        DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// The PostgreSQL type of an Arrow type.
pub fn wire_type(data_type: &DataType) -> Type {
    let (oid, ..) = pg_type(&canonical(data_type));
    Type::from_oid(oid as u32).unwrap_or(Type::TEXT)
}

/// The row description of a result schema, each column in the format the client asked.
pub fn fields(schema: &Schema, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let format = format.map_or(FieldFormat::Text, |f| f.format_for(i));
            let (_, _, size) = pg_type(&canonical(field.data_type()));
            FieldInfo::new(
                field.name().clone(),
                None,
                None,
                wire_type(field.data_type()),
                format,
            )
            .with_type_size(size)
        })
        .collect()
}

/// The rows of `batches`, encoded as the client reads them: a batch is taken from the
/// statement when the connection has taken the rows before it, and each row is made when
/// the connection can take it.
pub fn rows<S>(
    batches: S,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + use<S>
where
    S: Stream<Item = PgWireResult<RecordBatch>> + Send,
{
    batches.flat_map(move |batch| {
        let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
            Ok(batch) => Box::new(Rows::new(&batch, fields.clone())),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
        futures::stream::iter(rows)
    })
}

/// One batch's rows.
struct Rows {
    /// The batch's columns, cast to their canonical types; an error instead if one
    /// cannot be.
    columns: PgWireResult<Vec<ArrayRef>>,
    row: usize,
    len: usize,
    encoder: DataRowEncoder,
}

impl Rows {
    fn new(batch: &RecordBatch, fields: Arc<Vec<FieldInfo>>) -> Self {
        Self {
            columns: batch.columns().iter().map(to_canonical).collect(),
            row: 0,
            len: batch.num_rows(),
            encoder: DataRowEncoder::new(fields),
        }
    }
}

impl Iterator for Rows {
    type Item = PgWireResult<DataRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.row >= self.len {
            return None;
        }
        let columns = match &mut self.columns {
            Ok(columns) => columns,
            Err(_) => {
                self.row = self.len;
                let error = std::mem::replace(&mut self.columns, Ok(Vec::new()));
                return error.err().map(Err);
            }
        };
        let row = self.row;
        self.row += 1;
        for column in columns.iter() {
            if let Err(e) = encode(&mut self.encoder, column, row) {
                return Some(Err(e));
            }
        }
        Some(Ok(self.encoder.take_row()))
    }
}

fn to_canonical(column: &ArrayRef) -> PgWireResult<ArrayRef> {
    let target = canonical(column.data_type());
    if column.data_type() == &target {
        return Ok(column.clone());
    }
    if can_cast_types(column.data_type(), &target)
        && let Ok(cast) = cast(column, &target)
    {
        return Ok(cast);
    }
    // What has no cast to text (a struct, a list) travels as it displays.
    let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let text: StringArray = (0..column.len())
        .map(|i| (!column.is_null(i)).then(|| formatter.value(i).to_string()))
        .collect();
    Ok(Arc::new(text))
}

fn encode(encoder: &mut DataRowEncoder, column: &ArrayRef, row: usize) -> PgWireResult<()> {
    if column.is_null(row) {
        return encoder.encode_field(&None::<i64>);
    }
    match column.data_type() {
        DataType::Boolean => encoder.encode_field(&column.as_boolean().value(row)),
        DataType::Int16 => encoder.encode_field(&column.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => encoder.encode_field(&column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => encoder.encode_field(&column.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => encoder.encode_field(&column.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => encoder.encode_field(&column.as_primitive::<Float64Type>().value(row)),
        DataType::Date32 => {
            let days = column.as_primitive::<Date32Type>().value(row);
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|d| d.checked_add_signed(chrono::TimeDelta::days(i64::from(days))))
                .ok_or_else(|| out_of_range("date", i64::from(days)))?;
            encoder.encode_field(&date)
        }
        DataType::Timestamp(_, zone) => {
            let micros = column.as_primitive::<TimestampMicrosecondType>().value(row);
            let at = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
                .ok_or_else(|| out_of_range("timestamp", micros))?;
            if zone.is_some() {
                encoder.encode_field(&at)
            } else {
                encoder.encode_field(&at.naive_utc())
            }
        }
        DataType::Binary => encoder.encode_field(&column.as_binary::<i32>().value(row)),
        _ => encoder.encode_field(&column.as_string::<i32>().value(row)),
    }
}

fn out_of_range(what: &str, value: i64) -> PgWireError {
    user_error(
        "22008",
        format!("a {what} value ({value}) is outside PostgreSQL's range"),
    )
}

/// The type a parameter travels as: what the client declared, else what the statement
/// expects, else text.
pub fn parameter_type(declared: Option<&Type>, expected: Option<&DataType>) -> Type {
    match declared {
        Some(t) if *t != Type::UNKNOWN => t.clone(),
        _ => expected.map_or(Type::TEXT, wire_type),
    }
}

/// The value of parameter `index` of `portal`, as the statement expects it.
pub fn parameter<S: Clone>(
    portal: &Portal<S>,
    index: usize,
    declared: Option<&Type>,
    expected: Option<&DataType>,
) -> PgWireResult<ScalarValue> {
    let ty = parameter_type(declared, expected);
    let bad = |e: PgWireError| {
        user_error(
            "22P02",
            format!("parameter ${}: not a valid {}: {e}", index + 1, ty.name()),
        )
    };
    let value = match ty {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(index, &ty).map_err(bad)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(index, &ty).map_err(bad)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(index, &ty).map_err(bad)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(index, &ty).map_err(bad)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(index, &ty).map_err(bad)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(index, &ty).map_err(bad)?),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<chrono::DateTime<chrono::FixedOffset>>(index, &ty)
                .map_err(bad)?
                .map(|t| t.timestamp_micros()),
            Some("UTC".into()),
        ),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<chrono::NaiveDateTime>(index, &ty)
                .map_err(bad)?
                .map(|t| t.and_utc().timestamp_micros()),
            None,
        ),
        Type::DATE => ScalarValue::Date32(
            portal
                .parameter::<chrono::NaiveDate>(index, &ty)
                .map_err(bad)?
                .map(|d| {
                    d.signed_duration_since(chrono::NaiveDate::default())
                        .num_days() as i32
                }),
        ),
        _ => {
            // Text, and any type sent as text (numeric, json, ...): read as the statement
            // expects it.
            if portal.parameter_format.is_binary(index)
                && !matches!(ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME)
            {
                return Err(user_error(
                    "0A000",
                    format!(
                        "parameter ${}: {} parameters are taken as text only; send it in text format",
                        index + 1,
                        ty.name()
                    ),
                ));
            }
            let text = match portal.parameters.get(index) {
                Some(Some(bytes)) => Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                    user_error("22021", format!("parameter ${}: not UTF-8", index + 1))
                })?),
                Some(None) => None,
                None => return Err(PgWireError::ParameterIndexOutOfBound(index)),
            };
            match (text, expected) {
                (None, Some(t)) => ScalarValue::try_from(t).map_err(internal)?,
                (None, None) => ScalarValue::Utf8(None),
                (Some(text), Some(t)) => {
                    ScalarValue::try_from_string(text.clone(), t).map_err(|_| {
                        user_error(
                            "22P02",
                            format!(
                                "parameter ${}: '{text}' is not a valid {}",
                                index + 1,
                                wire_type(t).name()
                            ),
                        )
                    })?
                }
                (Some(text), None) => ScalarValue::Utf8(Some(text)),
            }
        }
    };
    match expected {
        Some(t) if &value.data_type() != t => value.cast_to(t).map_err(|e| {
            user_error(
                "42804",
                format!(
                    "parameter ${}: a {} cannot be used as {}: {e}",
                    index + 1,
                    ty.name(),
                    wire_type(t).name()
                ),
            )
        }),
        _ => Ok(value),
    }
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::Field;
    use futures::StreamExt;

    #[test]
    fn every_arrow_type_has_a_wire_type() {
        assert_eq!(wire_type(&DataType::Int64), Type::INT8);
        assert_eq!(wire_type(&DataType::Utf8View), Type::TEXT);
        assert_eq!(
            wire_type(&DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("UTC".into())
            )),
            Type::TIMESTAMPTZ
        );
        assert_eq!(wire_type(&DataType::Decimal128(10, 2)), Type::FLOAT8);
        assert_eq!(wire_type(&DataType::UInt64), Type::INT8);
    }

    #[tokio::test]
    async fn rows_encode_nulls_and_timestamps_as_text() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(7), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_763_798_400_000_000), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let fields = Arc::new(fields(&schema, None));
        let rows: Vec<_> = rows(futures::stream::iter([Ok(batch)]), fields)
            .collect()
            .await;
        assert_eq!(rows.len(), 2);
        let first = rows[0].as_ref().unwrap();
        assert_eq!(first.field_count, 2);
        let text = String::from_utf8_lossy(&first.data);
        assert!(
            text.contains('7') && text.contains("2025-11-22 08:00:00"),
            "{text}"
        );
    }
}
