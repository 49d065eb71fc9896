//! CSV with a header row: columns matched by name (or a feed mapping's source names), every
//! cell text and parsed by the field's type, an empty cell null.

use std::borrow::Cow;

use super::*;

/// Decodes CSV with a header row, without bounds; an empty cell is null.
pub fn decode_csv(def: &DatasetDef, body: &[u8]) -> Result<Decoded, DecodeError> {
    decode_csv_within(def, body, &IngestLimits::UNBOUNDED)
}

/// Decodes CSV with a header row within `limits` (refused whole when over); an empty cell
/// is null. A leading byte order mark is skipped.
pub fn decode_csv_within(
    def: &DatasetDef,
    body: &[u8],
    limits: &IngestLimits,
) -> Result<Decoded, DecodeError> {
    decode_csv_mapped(def, None, body, limits)
}

pub(super) fn decode_csv_mapped(
    def: &DatasetDef,
    mapper: Option<&Mapper>,
    body: &[u8],
    limits: &IngestLimits,
) -> Result<Decoded, DecodeError> {
    check_text_rows(def, body, limits, || {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(body);
        let mut record = ::csv::ByteRecord::new();
        let mut records = 0;
        // A record the reader cannot read is still a record (kept as refused).
        while !matches!(reader.read_byte_record(&mut record), Ok(false)) {
            records += 1;
        }
        records
    })?;
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let header = reader
        .byte_headers()
        .map_err(|e| DecodeError::CsvHeader(e.to_string()))?
        .clone();
    let mut position = Vec::with_capacity(header.len());
    let mut header_problems = Vec::new();
    for (column, name) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(name).trim().to_string();
        let slot = match mapper {
            None => def
                .fields
                .iter()
                .position(|f| f.name == name)
                .map_or(Slot::Unknown, Slot::Field),
            Some(m) => m.slot(&name),
        };
        match slot {
            Slot::Field(i) => {
                if let Some(first) = header
                    .iter()
                    .take(column)
                    .position(|h| String::from_utf8_lossy(h).trim() == name)
                {
                    header_problems.push(format!(
                        "column '{name}' appears more than once (columns {} and {})",
                        first + 1,
                        column + 1
                    ));
                }
                position.push(Some(i));
            }
            Slot::Ignore => position.push(None),
            Slot::Unknown => match mapper {
                None => header_problems.push(format!("column '{name}' is not a field of the dataset")),
                Some(m) => header_problems.push(format!(
                    "column '{name}' is neither mapped by '{}' nor a field of the dataset (list it under ignore to drop it)",
                    m.name()
                )),
            },
        }
    }
    for (i, field) in def.fields.iter().enumerate().filter(|(_, f)| !f.nullable) {
        // A mapped field's column is its source's; a constant needs none.
        let column = match mapper {
            None => Some(field.name.as_str()),
            Some(m) => m.column_of(i),
        };
        if let Some(column) = column
            && !header
                .iter()
                .any(|h| String::from_utf8_lossy(h).trim() == column)
        {
            header_problems.push(if column == field.name {
                format!("required field '{}' has no column", field.name)
            } else {
                format!(
                    "required field '{}' has no column (mapped from '{column}')",
                    field.name
                )
            });
        }
    }
    if !header_problems.is_empty() {
        return Err(DecodeError::CsvHeader(header_problems.join("; ")));
    }
    let n_fields = def.fields.len();
    let lines = body.iter().filter(|b| **b == b'\n').count() + 1;
    let mut columns = Columns::new(def, (body.len() / 64 + 1).min(lines));
    let mut rejected = Vec::new();
    let mut record = ::csv::ByteRecord::new();
    let mut problems = Vec::new();
    loop {
        let line = reader.position().line() + 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                rejected.push(Rejected {
                    line,
                    problems: vec![Problem {
                        line,
                        field: None,
                        reason: error.to_string(),
                    }],
                    raw: String::new(),
                });
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        problems.clear();
        if record.len() != position.len() {
            problems.push(Problem {
                line,
                field: None,
                reason: format!(
                    "{} cells, but the header has {}",
                    record.len(),
                    position.len()
                ),
            });
        }
        let mut raws: Vec<Option<Raw>> = (0..n_fields).map(|_| None).collect();
        for (cell, i) in record.iter().zip(&position) {
            let Some(i) = *i else {
                continue;
            };
            raws[i] = Some(match std::str::from_utf8(cell) {
                Ok("") => Raw::Null,
                Ok(text) => Raw::Str(Cow::Borrowed(text)),
                Err(_) => Raw::Other("bytes that are not UTF-8"),
            });
        }
        let mut row = vec![Value::Missing; n_fields];
        match mapper {
            None => check_row(def, &raws, true, line, &mut row, &mut problems, None),
            Some(m) => {
                let mut failed = vec![false; n_fields];
                m.apply(&mut raws, line, &mut problems, &mut failed);
                let before = problems.len();
                check_row(
                    def,
                    &raws,
                    true,
                    line,
                    &mut row,
                    &mut problems,
                    Some(&failed),
                );
                name_sources(m, def, &mut problems[before..]);
            }
        }
        if problems.is_empty() {
            columns.push(&row);
        } else {
            let raw = record
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join(",");
            rejected.push(Rejected {
                line,
                problems: std::mem::take(&mut problems),
                raw: cut(raw.as_bytes()),
            });
        }
    }
    Ok(Decoded {
        batch: columns.finish(),
        rejected,
    })
}
