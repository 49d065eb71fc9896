//! What a feed mapping costs (issue 29's target: under 10% of ingest throughput). The same
//! passages in two shapes: the hub's own (`ts` RFC 3339, `checkpoint_id`, `plate`, `lane`,
//! `speed_kmh`) and a checkpoint export's (`jgsj` local time, `kkbh` as text, `hphm`,
//! `cdbh`, `clsd`) read through the `kkbh_export` mapping. Measured twice, alternating
//! the shapes round by round on warm data: decoding alone (all cores, as ingest does), and
//! whole ingest calls (decode + log append + fsync) into a fresh hub.
//!
//! `cargo run --release -p citybrain-hub --example mapping_bench -- [ROUNDS]`

use std::time::Instant;

use citybrain_core::{DatasetName, TimeZone, Timestamp};
use citybrain_hub::decode::decode_mapped_within;
use citybrain_hub::mapping::Mapper;
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, IngestLimits, OnError};

const DEF: &str = include_str!("../../gen/definitions/transport.anpr_passages.toml");
const ROWS: usize = 100_000;
const BATCH: usize = 10_000;

fn bodies(mapped: bool) -> Vec<Vec<u8>> {
    (0..ROWS / BATCH)
        .map(|b| {
            let mut body = String::new();
            for i in 0..BATCH {
                let k = b * BATCH + i;
                let (h, m, s) = ((k / 3600) % 24, (k / 60) % 60, k % 60);
                let (cp, plate, lane, speed) = (k % 500, k % 100_000, k % 4 + 1, (k % 80) as f64 + 0.5);
                body.push_str(&if mapped {
                    format!(
                        "{{\"jgsj\":\"2026-11-22 {h:02}:{m:02}:{s:02}\",\"kkbh\":\"{cp}\",\"hphm\":\"浙A{plate:05}\",\"cdbh\":{lane},\"clsd\":{speed}}}\n"
                    )
                } else {
                    format!(
                        "{{\"ts\":\"2026-11-22T{h:02}:{m:02}:{s:02}+08:00\",\"checkpoint_id\":{cp},\"plate\":\"浙A{plate:05}\",\"lane\":{lane},\"speed_kmh\":{speed}}}\n"
                    )
                });
            }
            body.into_bytes()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let def = DatasetDef::from_file_text("transport.anpr_passages.toml", DEF).unwrap();
    let zone = TimeZone::parse("Asia/Shanghai").unwrap();
    let mapper = Mapper::new(&def, "kkbh_export", &zone).unwrap();
    let (own, export) = (bodies(false), bodies(true));

    // Decoding alone; both shapes give the same records.
    let decode = |mapped: bool| {
        let started = Instant::now();
        let mut rows = 0;
        let mut batches = Vec::new();
        for body in if mapped { &export } else { &own } {
            let d = decode_mapped_within(
                &def,
                mapped.then_some(&mapper),
                Format::Ndjson,
                body,
                &IngestLimits::UNBOUNDED,
            )
            .unwrap();
            assert!(d.rejected.is_empty());
            rows += d.batch.num_rows();
            batches.push(d.batch);
        }
        assert_eq!(rows, ROWS);
        (ROWS as f64 / started.elapsed().as_secs_f64(), batches)
    };
    let (_, a) = decode(false);
    let (_, b) = decode(true);
    assert!(a == b, "the two shapes decode to different records");
    let (mut d_own, mut d_mapped) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        d_own.push(decode(false).0);
        d_mapped.push(decode(true).0);
    }

    // Whole ingest calls, each fsynced, into a hub per shape.
    let name = DatasetName::parse("transport.anpr_passages").unwrap();
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let dir = std::env::temp_dir().join(format!("mapping-bench-{}", std::process::id()));
    let open = |which: &str| {
        let path = dir.join(which);
        let _ = std::fs::remove_dir_all(&path);
        let hub = Hub::open(
            &path,
            HubConfig {
                seal_rows: usize::MAX,
                ..HubConfig::default()
            },
        )
        .unwrap();
        hub.create_dataset(def.clone(), now).unwrap();
        hub
    };
    let (hub_own, hub_mapped) = (open("own"), open("mapped"));
    let ingest = |mapped: bool| {
        let started = Instant::now();
        for body in if mapped { &export } else { &own } {
            if mapped {
                hub_mapped
                    .ingest_mapped(
                        &name,
                        Format::Ndjson,
                        "kkbh_export",
                        body,
                        OnError::Reject,
                        now,
                    )
                    .unwrap();
            } else {
                hub_own
                    .ingest(&name, Format::Ndjson, body, OnError::Reject, now)
                    .unwrap();
            }
        }
        ROWS as f64 / started.elapsed().as_secs_f64()
    };
    let (mut i_own, mut i_mapped) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        i_own.push(ingest(false));
        i_mapped.push(ingest(true));
    }
    hub_own.close();
    hub_mapped.close();
    let _ = std::fs::remove_dir_all(&dir);
    let report = |what: &str, own: Vec<f64>, mapped: Vec<f64>| {
        let (o, m) = (median(own), median(mapped));
        println!(
            "{{\"measure\":\"{what}\",\"rows\":{ROWS},\"rounds\":{rounds},\"own_rows_per_s\":{o:.0},\"mapped_rows_per_s\":{m:.0},\"mapped_over_own\":{:.3}}}",
            m / o
        );
    };
    report("decode", d_own, d_mapped);
    report("ingest", i_own, i_mapped);
}
