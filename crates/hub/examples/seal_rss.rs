//! Resident memory of the hub across seals: `BATCHES` NDJSON batches of 10,000 passages
//! (the ingest benchmark's passages, made one batch at a time) with a seal every 1,000,000 rows in the background, RSS printed
//! after every million rows and once the seals are done. A flat line after the first seal
//! says a seal gives back what it took; steps that stay say something is kept (issue 23's
//! soak). Run it as the server runs, and with `MALLOC_ARENA_MAX=1` to tell the allocator's
//! keeping from the hub's.
//!
//! `cargo run --release -p citybrain-hub --example seal_rss -- [BATCHES]`

use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, OnError};

#[path = "shared/passages.rs"]
mod passages;

const DEF: &str = include_str!("../tests/data/passages.toml");

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

fn main() {
    let batches: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(800);
    let dir = std::env::temp_dir().join(format!("seal-rss-{}", std::process::id()));
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let hub = Hub::open(&dir, HubConfig::default()).unwrap();
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now)
        .unwrap();
    let name = DatasetName::parse("transport.anpr_passages").unwrap();
    println!("start: {:.0} MiB", rss_mib());
    for b in 0..batches {
        // Made batch by batch, so the bodies are not what the RSS counts.
        let body = passages::body(b);
        hub.ingest(&name, Format::Ndjson, &body, OnError::Reject, now)
            .unwrap();
        if (b + 1) % 100 == 0 {
            println!("{:>5}k rows: {:.0} MiB", (b + 1) * 10, rss_mib());
        }
    }
    hub.close();
    println!("seals done: {:.0} MiB", rss_mib());
    let _ = std::fs::remove_dir_all(&dir);
}
