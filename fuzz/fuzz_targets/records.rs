//! NDJSON, CSV and Parquet bodies decoded against the demo's passages definition: every
//! body gets records or problems, never a panic. The first byte picks the format.
#![no_main]

use citybrain_hub::{DatasetDef, Format, IngestLimits, decode};
use libfuzzer_sys::fuzz_target;

const DEF: &str = include_str!("../../crates/gen/definitions/transport.anpr_passages.toml");

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let def = DatasetDef::from_file_text("d.toml", DEF).expect("the shipped definition");
    let format = match pick % 3 {
        0 => Format::Ndjson,
        1 => Format::Csv,
        _ => Format::Parquet,
    };
    // Bounded as the server bounds a call, so a tiny Parquet file cannot ask for gigabytes.
    let limits = IngestLimits {
        max_rows: 100_000,
        max_bytes: 64 << 20,
    };
    if let Ok(decoded) = decode::decode_within(&def, format, body, &limits) {
        assert_eq!(decoded.batch.num_columns(), def.fields.len());
    }
});
