//! Ingest throughput of the hub alone (no HTTP): `BATCHES` NDJSON batches of 10,000
//! passages, each fsynced before the next, into a fresh data directory. Used to compare the
//! ingest path before and after a change, same machine, same run (docs/benchmarks.md).
//!
//! `cargo run --release -p citybrain-hub --example ingest_bench -- [BATCHES] [DIR]`

use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, OnError};

#[path = "shared/passages.rs"]
mod passages;

const DEF: &str = include_str!("../tests/data/passages.toml");

fn main() {
    let mut args = std::env::args().skip(1);
    let batches: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("ingest-bench-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let hub = Hub::open(
        &dir,
        HubConfig {
            seal_rows: 1_000_000,
            ..HubConfig::default()
        },
    )
    .unwrap();
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now)
        .unwrap();
    let name = DatasetName::parse("transport.anpr_passages").unwrap();
    let bodies = passages::bodies(batches);
    let started = std::time::Instant::now();
    for body in &bodies {
        hub.ingest(&name, Format::Ndjson, body, OnError::Reject, now)
            .unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    hub.close();
    let rows = batches * 10_000;
    println!(
        "{rows} rows in {batches} fsynced batches: {elapsed:.2} s, {:.0} rows/s",
        rows as f64 / elapsed
    );
    let _ = std::fs::remove_dir_all(&dir);
}
