//! Data-driven tests: small hand-worked inputs with expected index rows.

mod common;

use citybrain_indices::{TrafficConfig, TrafficIndices};
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
    assert_eq!(live.at, "2026-11-22T00:22:00Z");
    assert_eq!(live.vehicles_today, 5);
    // On the road in the 15 minutes before 00:22: d (00:10:30) and g.
    assert_eq!(live.on_road, 2);
}

#[test]
fn a_pass_split_by_plate_and_merged_gives_the_same_rows() {
    use citybrain_indices::{Admission, merge, partition_of};
    let base = format!(
        "{}/tests/data/small",
        std::env::var("CARGO_MANIFEST_DIR").unwrap()
    );
    let links = links(&std::fs::read_to_string(format!("{base}/links.ndjson")).unwrap());
    let records = passages(&std::fs::read_to_string(format!("{base}/passages.ndjson")).unwrap());
    let mut whole = TrafficIndices::new(TrafficConfig::default(), links.clone());
    push_all(&mut whole, &records);
    let (expected, expected_counters) = whole.finish();
    for parts in [2, 3] {
        let mut partitions: Vec<TrafficIndices> = (0..parts)
            .map(|_| TrafficIndices::partition(TrafficConfig::default(), links.clone()))
            .collect();
        let mut admission = Admission::new(&TrafficConfig::default());
        for record in &records {
            if !admission.admit(record.0) {
                continue;
            }
            push_all(
                &mut partitions[partition_of(&record.2, parts)],
                std::slice::from_ref(record),
            );
        }
        let end = partitions[0].end_for(admission.newest());
        let partials = partitions
            .into_iter()
            .map(|p| p.finish_partial(end))
            .collect();
        let (merged, mut counters) = merge(TrafficConfig::default(), links.clone(), partials);
        counters.late_dropped += admission.late_dropped;
        assert_eq!(counters.late_dropped, expected_counters.late_dropped);
        assert_eq!(merged, expected, "{parts} partitions");
        assert_eq!(counters.applied, expected_counters.applied);
        assert_eq!(counters.duplicates, expected_counters.duplicates);
    }
}
