//! What the structural checks of a Parquet body cost (`parquet_check`): a body of `ROWS`
//! passages written as pyarrow writes by default (every column optional, so every column
//! has definition levels to check, with snappy pages), decoded whole against the demo's
//! definition, and the check alone, each the median of 7 warm runs.
//!
//! `cargo run --release -p citybrain-hub --example parquet_bench -- [ROWS]`

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{Field, Schema};
use citybrain_hub::{DatasetDef, Format, decode};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

const DEF: &str = include_str!("../../gen/definitions/transport.anpr_passages.toml");

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let def = DatasetDef::from_file_text("d.toml", DEF).unwrap();
    let ndjson: String = (0..rows)
        .map(|k| {
            let lane = if k % 7 == 0 { "null".into() } else { (k % 4).to_string() };
            format!(
                "{{\"ts\":\"2026-11-22T{:02}:{:02}:{:02}Z\",\"checkpoint_id\":{},\"plate\":\"浙A{:05}\",\"lane\":{lane},\"speed_kmh\":{}}}\n",
                (k / 3600) % 24,
                (k / 60) % 60,
                k % 60,
                k % 500,
                k % 100_000,
                (k % 90) as f64 + 0.5
            )
        })
        .collect();
    let batch = decode::decode(&def, Format::Ndjson, ndjson.as_bytes())
        .unwrap()
        .batch;
    // Every field optional, as pyarrow and pandas write them.
    let schema = Arc::new(Schema::new(
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = batch.with_schema(schema.clone()).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut body = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut body, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let body = bytes::Bytes::from(body);
    let mut whole = Vec::new();
    let mut check = Vec::new();
    for _ in 0..8 {
        let t = Instant::now();
        let decoded = decode::decode(&def, Format::Parquet, &body).unwrap();
        assert_eq!(decoded.batch.num_rows(), rows);
        whole.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        citybrain_hub::decode::check_parquet_levels(&body).unwrap();
        check.push(t.elapsed().as_secs_f64());
    }
    whole.remove(0);
    check.remove(0);
    let (whole, check) = (median(whole), median(check));
    println!(
        "{rows} rows, {} bytes of Parquet: decode {:.1} ms (the level check included), the level check alone {:.1} ms ({:.1}% of decode)",
        body.len(),
        whole * 1e3,
        check * 1e3,
        check / whole * 100.0
    );
}
