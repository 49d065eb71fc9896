//! Checkpoint exports through the shipped feed mappings (local and compact times, text ids,
//! plate normalisation), as NDJSON or CSV: records or problems naming a column, never a panic.
#![no_main]

use citybrain_core::TimeZone;
use citybrain_hub::mapping::Mapper;
use citybrain_hub::{DatasetDef, Format, IngestLimits, decode};
use libfuzzer_sys::fuzz_target;

const DEF: &str = include_str!("../../crates/gen/definitions/transport.anpr_passages.toml");

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let def = DatasetDef::from_file_text("d.toml", DEF).expect("the shipped definition");
    let names = ["kkbh_export", "kkbh_compact", "camera_push"];
    let zone = TimeZone::fixed(8 * 3600);
    let mapper = Mapper::new(&def, names[usize::from(pick) % names.len()], &zone)
        .expect("a shipped mapping");
    let format = if pick & 0x80 == 0 {
        Format::Ndjson
    } else {
        Format::Csv
    };
    let limits = IngestLimits {
        max_rows: 100_000,
        max_bytes: 64 << 20,
    };
    let _ = decode::decode_mapped_within(&def, Some(&mapper), format, body, &limits);
});
