//! Data-driven tests: small hand-worked inputs with expected index rows.

mod common;

use citybrain_indices::{SplitPass, TrafficConfig, TrafficIndices};
use common::{links, passages, push_all};
use serde_json::Value;

/// Equal JSON, numbers within 1e-9.
fn assert_close(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!((a - e).abs() < 1e-9, "{path}: {a} != {e}");
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: {actual} vs {expected}");
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                assert_close(a, e, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(e)) => {
            for (k, e) in e {
                let a = a.get(k).unwrap_or_else(|| panic!("{path}.{k} missing"));
                assert_close(a, e, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

fn run(dir: &str, order: impl Fn(&mut Vec<(i64, i64, String)>)) -> Value {
    let base = format!(
        "{}/tests/data/{dir}",
        std::env::var("CARGO_MANIFEST_DIR").unwrap()
    );
    let links = links(&std::fs::read_to_string(format!("{base}/links.ndjson")).unwrap());
    let mut records =
        passages(&std::fs::read_to_string(format!("{base}/passages.ndjson")).unwrap());
    order(&mut records);
    let mut indices = TrafficIndices::new(TrafficConfig::default(), links);
    push_all(&mut indices, &records);
    let (out, counters) = indices.finish();
    let mut v = serde_json::to_value(&out).unwrap();
    v["counters"] = serde_json::to_value(counters).unwrap();
    v
}

#[test]
fn small_city_matches_the_hand_worked_rows() {
    let base = format!(
        "{}/tests/data/small",
        std::env::var("CARGO_MANIFEST_DIR").unwrap()
    );
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{base}/expected.json")).unwrap())
            .unwrap();
    let actual = run("small", |_| {});
    for key in ["counters", "census_days", "link_travel", "delay", "on_road"] {
        assert_close(&actual[key], &expected[key], key);
    }
    let hour = actual["census_hours"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hour"] == "2026-11-22T00:00:00Z")
        .unwrap();
    assert_close(hour, &expected["census_hour_0800_local"], "census hour");
    assert_eq!(actual["census_hours"].as_array().unwrap().len(), 24);
}

#[test]
fn arrival_order_within_the_lateness_does_not_change_the_rows() {
    // Sorted input (no reordering needed, the late record now in its place and so applied).
    let sorted = run("small", |r| {
        r.retain(|(_, _, p)| p != "浙A00006");
        r.sort_by_key(|(ts, _, _)| *ts)
    });
    let shuffled = run("small", |r| {
        r.retain(|(_, _, p)| p != "浙A00006");
        // Swap neighbours less than 60 s apart: still within the lateness.
        for i in (1..r.len()).step_by(2) {
            if (r[i].0 - r[i - 1].0).abs() < 60_000_000 {
                r.swap(i, i - 1);
            }
        }
    });
    for key in [
        "census_days",
        "census_hours",
        "link_travel",
        "delay",
        "on_road",
    ] {
        assert_eq!(sorted[key], shuffled[key], "{key}");
    }
    assert_eq!(
        sorted["counters"]["applied"],
        shuffled["counters"]["applied"]
    );
}

#[test]
fn the_live_view_counts_records_still_held_for_the_lateness() {
    let base = format!(
        "{}/tests/data/small",
        std::env::var("CARGO_MANIFEST_DIR").unwrap()
    );
    let links = links(&std::fs::read_to_string(format!("{base}/links.ndjson")).unwrap());
    let records = passages(&std::fs::read_to_string(format!("{base}/passages.ndjson")).unwrap());
    let mut indices = TrafficIndices::new(TrafficConfig::default(), links);
    push_all(&mut indices, &records);
    // Newest 00:22:00; g's second read (00:22:00) is still held, yet g counts: a, b, c, d, g.
    let live = indices.live();
    assert_eq!(live.at.to_string(), "2026-11-22T00:22:00Z");
    assert_eq!(live.vehicles_today, 5);
    // On the road in the 15 minutes before 00:22: d (00:10:30) and g.
    assert_eq!(live.on_road, 2);
}

#[test]
fn a_pass_split_by_plate_and_merged_gives_the_same_rows() {
    let base = format!(
        "{}/tests/data/small",
        std::env::var("CARGO_MANIFEST_DIR").unwrap()
    );
    let links = links(&std::fs::read_to_string(format!("{base}/links.ndjson")).unwrap());
    let records = passages(&std::fs::read_to_string(format!("{base}/passages.ndjson")).unwrap());
    let mut whole = TrafficIndices::new(TrafficConfig::default(), links.clone());
    push_all(&mut whole, &records);
    let (expected, expected_counters) = whole.finish();
    // Batches of one record, a few, and all of them: late, duplicate and out-of-order
    // records fall inside and across batch boundaries.
    for (parts, batch_rows) in [(2, 1), (2, 3), (3, 4), (3, records.len())] {
        let mut pass = SplitPass::new(TrafficConfig::default(), links.clone(), parts);
        for chunk in records.chunks(batch_rows) {
            pass.push_batch(&common::batch(chunk)).unwrap();
        }
        let (merged, counters) = pass.finish();
        let case = format!("{parts} partitions, batches of {batch_rows}");
        assert_eq!(merged, expected, "{case}");
        assert_eq!(
            counters.late_dropped, expected_counters.late_dropped,
            "{case}"
        );
        assert_eq!(counters.applied, expected_counters.applied, "{case}");
        assert_eq!(counters.duplicates, expected_counters.duplicates, "{case}");
    }
}

#[test]
fn records_pushed_together_keep_the_lateness_of_one_by_one() {
    use citybrain_indices::{LocalPrefix, Passage, Record};
    let config = TrafficConfig::default();
    let local = LocalPrefix::new(&config.local_prefix);
    let record = |s: i64, plate: &str| {
        let passage = Passage {
            ts: 1_795_000_000_000_000 + s * 1_000_000,
            checkpoint: 1,
            plate,
        };
        Record::new(passage, &local)
    };
    // An in-order run, then one 80 s older than the run's newest (beyond the 60 s lateness,
    // though not older than its first), then one 30 s out of order (within it).
    let records = [
        record(0, "浙A00001"),
        record(100, "浙A00002"),
        record(200, "浙A00003"),
        record(120, "浙A00004"),
        record(170, "浙A00005"),
    ];
    let mut together = TrafficIndices::new(config.clone(), Vec::new());
    together.push_records(&records);
    let mut one_by_one = TrafficIndices::new(config.clone(), Vec::new());
    for r in records {
        one_by_one.push_record(r);
    }
    let (a, b) = (together.counters(), one_by_one.counters());
    assert_eq!((a.late_dropped, a.reordered), (1, 1));
    assert_eq!((b.late_dropped, b.reordered), (1, 1));
    assert_eq!(together.finish(), one_by_one.finish());
}
