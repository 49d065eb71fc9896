//! Results as an Excel workbook, what officials open: one sheet, a bold header, numbers as
//! numbers (money stays integer fen, as in every other format), instants as date-times in
//! UTC (the header says so), dates as dates, booleans as booleans, a point as
//! `POINT(lon lat)` text. `rust_xlsxwriter` writes the file.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, XlsxError};

use crate::{QueryResult, SqlError};

/// Rows a sheet holds under its header.
const MAX_ROWS: usize = 1_048_575;
/// Characters a cell holds.
const MAX_CELL: usize = 32_767;
/// Integers beyond this lose digits as Excel's doubles; they are written as text.
const EXACT: i64 = 1 << 53;

fn err(e: XlsxError) -> SqlError {
    SqlError::Execution(format!("writing the XLSX file: {e}"))
}

/// An integer as a number, or as text where a double would lose digits.
fn int_cell(
    sheet: &mut rust_xlsxwriter::Worksheet,
    r: u32,
    col: u16,
    v: i64,
) -> Result<(), SqlError> {
    if v.abs() < EXACT {
        sheet.write_number(r, col, v as f64).map_err(err)?;
    } else {
        sheet.write_string(r, col, v.to_string()).map_err(err)?;
    }
    Ok(())
}

/// The workbook of `result`; `flatten` turns nested columns (points) into text first.
pub(crate) fn workbook(
    result: &QueryResult,
    flatten: fn(&RecordBatch) -> Result<RecordBatch, SqlError>,
) -> Result<Vec<u8>, SqlError> {
    let rows: usize = result.batches.iter().map(RecordBatch::num_rows).sum();
    if rows > MAX_ROWS {
        return Err(SqlError::Invalid(format!(
            "the result has {rows} rows and a sheet holds {MAX_ROWS}: narrow the query, or export as csv"
        )));
    }
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("result").map_err(err)?;
    let bold = Format::new().set_bold();
    let when = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let day = Format::new().set_num_format("yyyy-mm-dd");
    for (c, field) in result.schema.fields().iter().enumerate() {
        let utc = matches!(field.data_type(), DataType::Timestamp(..));
        let name = if utc {
            format!("{} (UTC)", field.name())
        } else {
            field.name().clone()
        };
        sheet
            .write_string_with_format(0, c as u16, name, &bold)
            .map_err(err)?;
        sheet
            .set_column_width(c as u16, if utc { 20 } else { 14 })
            .map_err(err)?;
    }
    let mut row = 1u32;
    for batch in &result.batches {
        let batch = flatten(batch)?;
        for (c, column) in batch.columns().iter().enumerate() {
            let col = c as u16;
            let text = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                .map_err(|e| SqlError::Execution(format!("writing the XLSX file: {e}")))?;
            for i in 0..column.len() {
                if column.is_null(i) {
                    continue;
                }
                let r = row + i as u32;
                let mut int = |v: i64| int_cell(sheet, r, col, v);
                match column.data_type() {
                    DataType::Int8 => int(column.as_primitive::<Int8Type>().value(i).into())?,
                    DataType::Int16 => int(column.as_primitive::<Int16Type>().value(i).into())?,
                    DataType::Int32 => int(column.as_primitive::<Int32Type>().value(i).into())?,
                    DataType::Int64 => int(column.as_primitive::<Int64Type>().value(i))?,
                    DataType::UInt8 => int(column.as_primitive::<UInt8Type>().value(i).into())?,
                    DataType::UInt16 => int(column.as_primitive::<UInt16Type>().value(i).into())?,
                    DataType::UInt32 => int(column.as_primitive::<UInt32Type>().value(i).into())?,
                    DataType::UInt64 => {
                        let v = column.as_primitive::<UInt64Type>().value(i);
                        int(i64::try_from(v).unwrap_or(i64::MAX))?
                    }
                    DataType::Float32 => {
                        let v = column.as_primitive::<Float32Type>().value(i);
                        sheet.write_number(r, col, f64::from(v)).map_err(err)?;
                    }
                    DataType::Float64 => {
                        let v = column.as_primitive::<Float64Type>().value(i);
                        if v.is_finite() {
                            sheet.write_number(r, col, v).map_err(err)?;
                        } else {
                            sheet.write_string(r, col, v.to_string()).map_err(err)?;
                        }
                    }
                    DataType::Boolean => {
                        sheet
                            .write_boolean(r, col, column.as_boolean().value(i))
                            .map_err(err)?;
                    }
                    DataType::Timestamp(unit, _) => {
                        let micros = match unit {
                            TimeUnit::Second => {
                                column.as_primitive::<TimestampSecondType>().value(i) * 1_000_000
                            }
                            TimeUnit::Millisecond => {
                                column.as_primitive::<TimestampMillisecondType>().value(i) * 1_000
                            }
                            TimeUnit::Microsecond => {
                                column.as_primitive::<TimestampMicrosecondType>().value(i)
                            }
                            TimeUnit::Nanosecond => {
                                column.as_primitive::<TimestampNanosecondType>().value(i) / 1_000
                            }
                        };
                        let at = ExcelDateTime::from_timestamp(micros.div_euclid(1_000_000))
                            .map_err(err)?;
                        sheet
                            .write_datetime_with_format(r, col, at, &when)
                            .map_err(err)?;
                    }
                    DataType::Date32 => {
                        let days = column.as_primitive::<Date32Type>().value(i);
                        let at =
                            ExcelDateTime::from_timestamp(i64::from(days) * 86_400).map_err(err)?;
                        sheet
                            .write_datetime_with_format(r, col, at, &day)
                            .map_err(err)?;
                    }
                    _ => {
                        let mut cell = text.value(i).to_string();
                        if cell.chars().count() > MAX_CELL {
                            cell = cell.chars().take(MAX_CELL - 1).collect::<String>() + "…";
                        }
                        sheet.write_string(r, col, cell).map_err(err)?;
                    }
                }
            }
        }
        row += batch.num_rows() as u32;
    }
    book.save_to_buffer().map_err(err)
}
