//! Helpers shared by the indices tests: reading links and passages from NDJSON text.

use citybrain_core::Timestamp;
use citybrain_indices::{Link, Passage, TrafficIndices};
use serde_json::Value;

pub fn links(text: &str) -> Vec<Link> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Link {
                link_id: v["link_id"].as_i64().unwrap(),
                from: v["from_checkpoint"].as_i64().unwrap(),
                to: v["to_checkpoint"].as_i64().unwrap(),
                length_m: v["length_m"].as_f64().unwrap(),
                freeflow_s: v["freeflow_s"].as_f64().unwrap(),
                district: v["district"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// (ts µs, checkpoint, plate) per line.
pub fn passages(text: &str) -> Vec<(i64, i64, String)> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                Timestamp::parse(v["ts"].as_str().unwrap()).unwrap().0,
                v["checkpoint_id"].as_i64().unwrap(),
                v["plate"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn push_all(indices: &mut TrafficIndices, records: &[(i64, i64, String)]) {
    for (ts, checkpoint, plate) in records {
        indices.push(Passage {
            ts: *ts,
            checkpoint: *checkpoint,
            plate,
        });
    }
}

/// Records as an Arrow batch of `transport.anpr_passages` columns, as a file or ingest gives
/// them to a pass.
pub fn batch(records: &[(i64, i64, String)]) -> arrow::array::RecordBatch {
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;
    let ts = TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.0))
        .with_timezone("UTC");
    let checkpoints = Int64Array::from_iter_values(records.iter().map(|r| r.1));
    let plates = StringArray::from_iter_values(records.iter().map(|r| r.2.as_str()));
    arrow::array::RecordBatch::try_from_iter([
        ("ts", Arc::new(ts) as arrow::array::ArrayRef),
        ("checkpoint_id", Arc::new(checkpoints)),
        ("plate", Arc::new(plates)),
    ])
    .unwrap()
}
