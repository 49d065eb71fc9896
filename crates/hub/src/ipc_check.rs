//! An Arrow IPC stream's structure checked before the arrow-ipc crate reads it. The crate
//! trusts what a schema message states and panics when it is false (a union's type ids, an
//! integer's bit width, a date's unit, a list without its child), and it allocates what a
//! message says its metadata and body take before reading them. The hub writes IPC only in
//! its own logs, with the few types a dataset's fields map to, so a frame is refused here
//! unless every message fits in the bytes there are, the first is a schema of those types
//! only and the rest are record batches whose buffers lie inside their bodies. Found by fuzzing the shared log
//! (`fuzz/corpus/shared_log/`): whoever can publish on a cluster's log subjects writes
//! these bytes.

use arrow::ipc::{self, MessageHeader, Type};

const CONTINUATION: [u8; 4] = [0xff; 4];

/// Walks every message of the stream in `payload`; `Err` says what is wrong and where.
pub(crate) fn check_stream(payload: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    let mut index = 0usize;
    while at < payload.len() {
        let mut len_at = at;
        let Some(word) = payload.get(len_at..len_at + 4) else {
            return Err(format!("message {}: its length is cut off", index + 1));
        };
        if word == CONTINUATION {
            len_at += 4;
        }
        let Some(word) = payload.get(len_at..len_at + 4) else {
            return Err(format!("message {}: its length is cut off", index + 1));
        };
        let meta_len = i32::from_le_bytes(word.try_into().expect("4 bytes"));
        let meta_start = len_at + 4;
        if meta_len == 0 {
            // The end-of-stream marker.
            return Ok(());
        }
        let Some(meta) = usize::try_from(meta_len)
            .ok()
            .and_then(|n| payload.get(meta_start..meta_start.checked_add(n)?))
        else {
            return Err(format!(
                "message {}: its metadata ({meta_len} bytes) does not fit in the {} bytes left",
                index + 1,
                payload.len() - meta_start.min(payload.len())
            ));
        };
        let message = ipc::root_as_message(meta)
            .map_err(|e| format!("message {}: not an Arrow IPC message ({e})", index + 1))?;
        let body_start = meta_start + meta.len();
        let body = message.bodyLength();
        let body_end = usize::try_from(body)
            .ok()
            .and_then(|n| body_start.checked_add(n))
            .filter(|&end| end <= payload.len())
            .ok_or_else(|| {
                format!(
                    "message {}: its body ({body} bytes) does not fit in the {} bytes left",
                    index + 1,
                    payload.len() - body_start
                )
            })?;
        match (index, message.header_type()) {
            (0, MessageHeader::Schema) => {
                let schema = message
                    .header_as_schema()
                    .ok_or("message 1: a schema message without its schema")?;
                for field in schema.fields().iter().flatten() {
                    check_field(&field, 0)?;
                }
            }
            (0, other) => {
                return Err(format!(
                    "message 1 is a {other:?}, where a stream starts with its schema"
                ));
            }
            (_, MessageHeader::RecordBatch) => {
                let batch = message.header_as_record_batch().ok_or_else(|| {
                    format!(
                        "message {}: a record batch message without its batch",
                        index + 1
                    )
                })?;
                // The crate slices each buffer out of the body as stated, asserting.
                for (b, buffer) in batch.buffers().iter().flatten().enumerate() {
                    let (offset, len) = (buffer.offset(), buffer.length());
                    if offset < 0 || len < 0 || offset.saturating_add(len) > body {
                        return Err(format!(
                            "message {}: buffer {} ({len} bytes at {offset}) lies outside its \
                             body of {body} bytes",
                            index + 1,
                            b + 1
                        ));
                    }
                }
                if batch
                    .nodes()
                    .iter()
                    .flatten()
                    .any(|n| n.length() < 0 || n.null_count() < 0)
                {
                    return Err(format!("message {}: a negative length", index + 1));
                }
            }
            (_, other) => {
                return Err(format!(
                    "message {} is a {other:?}; the hub's logs hold record batches only",
                    index + 1
                ));
            }
        }
        at = body_end;
        index += 1;
    }
    Ok(())
}

/// One field and its children: only the types a dataset's fields map to (and their common
/// widths), none dictionary-encoded.
fn check_field(field: &ipc::Field<'_>, depth: usize) -> Result<(), String> {
    let name = field.name().unwrap_or("(unnamed)");
    let refuse = |what: &str| Err(format!("field {name}: {what}"));
    if field.dictionary().is_some() {
        return refuse("dictionary-encoded, which the hub never writes");
    }
    let children = field.children().map_or(0, |c| c.len());
    let ty = field.type_type();
    let fine = match ty {
        Type::Bool | Type::Utf8 | Type::LargeUtf8 => children == 0,
        Type::Int => field
            .type_as_int()
            .is_some_and(|i| matches!(i.bitWidth(), 8 | 16 | 32 | 64) && children == 0),
        Type::FloatingPoint => field.type_as_floating_point().is_some_and(|f| {
            matches!(
                f.precision(),
                ipc::Precision::SINGLE | ipc::Precision::DOUBLE
            ) && children == 0
        }),
        Type::Date => field.type_as_date().is_some_and(|d| {
            matches!(d.unit(), ipc::DateUnit::DAY | ipc::DateUnit::MILLISECOND) && children == 0
        }),
        Type::Timestamp => field.type_as_timestamp().is_some_and(|t| {
            matches!(
                t.unit(),
                ipc::TimeUnit::SECOND
                    | ipc::TimeUnit::MILLISECOND
                    | ipc::TimeUnit::MICROSECOND
                    | ipc::TimeUnit::NANOSECOND
            ) && children == 0
        }),
        Type::Struct_ => {
            if depth >= 4 {
                return refuse("structs nested deeper than the hub writes");
            }
            for child in field.children().iter().flatten() {
                check_field(&child, depth + 1)?;
            }
            true
        }
        _ => return refuse(&format!("type {ty:?}, which no dataset field maps to")),
    };
    if fine {
        Ok(())
    } else {
        refuse(&format!(
            "a {ty:?} with parameters the format does not define"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::writer::StreamWriter;

    use super::check_stream;

    fn stream(schema: Schema, columns: Vec<arrow::array::ArrayRef>) -> Vec<u8> {
        let batch = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
        let mut out = Vec::new();
        let mut w = StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    }

    #[test]
    fn a_stream_the_hub_writes_passes() {
        let bytes = stream(
            Schema::new(vec![
                Field::new("a", DataType::Int64, false),
                Field::new("b", DataType::Utf8, true),
            ]),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        );
        check_stream(&bytes).unwrap();
    }

    #[test]
    fn a_union_and_a_body_longer_than_the_stream_are_refused() {
        use arrow::array::{Int32Array, UnionArray};
        use arrow::buffer::ScalarBuffer;
        use arrow::datatypes::UnionFields;
        let fields =
            UnionFields::try_new(vec![0], vec![Field::new("i", DataType::Int32, false)]).unwrap();
        let union = UnionArray::try_new(
            fields.clone(),
            ScalarBuffer::from(vec![0i8]),
            None,
            vec![Arc::new(Int32Array::from(vec![7]))],
        )
        .unwrap();
        let bytes = stream(
            Schema::new(vec![Field::new(
                "u",
                DataType::Union(fields, arrow::datatypes::UnionMode::Sparse),
                false,
            )]),
            vec![Arc::new(union)],
        );
        let e = check_stream(&bytes).unwrap_err();
        assert!(e.contains("field u") && e.contains("Union"), "{e}");

        let good = stream(
            Schema::new(vec![Field::new("a", DataType::Int64, false)]),
            vec![Arc::new(Int64Array::from(vec![1]))],
        );
        // Cut inside the record batch's body.
        let e = check_stream(&good[..good.len() - 12]).unwrap_err();
        assert!(e.contains("message 2"), "{e}");
    }
}
