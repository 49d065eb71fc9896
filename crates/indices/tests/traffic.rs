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
    let local = LocalPrefix::new(&config.local_prefixes);
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

/// Another city: Zhengzhou-style plates (two local prefixes) in a zone with daylight saving,
/// over the day its clocks go back (25 hours) and the day after. The census by local day
/// and hour, and the local/non-local split, against a count worked out here with the tz
/// database directly.
#[test]
fn another_city_counts_by_its_own_zone_and_plate_prefixes() {
    use chrono::{TimeZone as _, Timelike};
    use std::collections::{BTreeMap, BTreeSet};
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let config = TrafficConfig {
        local_prefixes: vec!["豫A".into(), "豫Z".into()],
        zone: citybrain_core::TimeZone::parse("Europe/Berlin").unwrap(),
        ..TrafficConfig::default()
    };
    // A deterministic spread of passages from 2026-10-24T00:00Z for three days.
    let start = citybrain_core::Timestamp::parse("2026-10-24T00:00:00Z")
        .unwrap()
        .0;
    let prefixes = ["豫A", "豫Z", "鄂Q", "浙A"];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut records: Vec<(i64, i64, String)> = (0..4000)
        .map(|_| {
            let ts = start + (next() % (3 * 86_400)) as i64 * 1_000_000;
            let plate = next() % 400;
            let prefix = prefixes[(plate % 4) as usize];
            (ts, (next() % 6) as i64 + 1, format!("{prefix}{plate:05}"))
        })
        .collect();
    records.sort();
    records.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);
    let mut indices = TrafficIndices::new(config.clone(), Vec::new());
    push_all(&mut indices, &records);
    let (out, _) = indices.finish();

    // Expected: per local day, plates with two passages or more; per local hour, those of
    // them seen in it.
    let local_of = |ts: i64| {
        berlin
            .timestamp_opt(ts.div_euclid(1_000_000), 0)
            .unwrap()
            .naive_local()
    };
    let mut by_day: BTreeMap<chrono::NaiveDate, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
    for (ts, _, plate) in &records {
        let local = local_of(*ts);
        by_day
            .entry(local.date())
            .or_default()
            .entry(plate)
            .or_default()
            .push(local.hour());
    }
    let is_local = |p: &str| p.starts_with("豫A") || p.starts_with("豫Z");
    let days: Vec<String> = out.census_days.iter().map(|d| d.day.to_string()).collect();
    assert_eq!(
        days,
        by_day.keys().map(|d| d.to_string()).collect::<Vec<_>>()
    );
    for day in &out.census_days {
        let plates =
            &by_day[&chrono::NaiveDate::parse_from_str(&day.day.to_string(), "%Y-%m-%d").unwrap()];
        let counted: Vec<&&str> = plates
            .iter()
            .filter(|(_, h)| h.len() >= 2)
            .map(|(p, _)| p)
            .collect();
        let local = counted.iter().filter(|p| is_local(p)).count() as u64;
        assert_eq!(
            (day.vehicles, day.local, day.non_local),
            (counted.len() as u64, local, counted.len() as u64 - local),
            "{}",
            day.day
        );
        assert_eq!(day.plates_read, plates.len() as u64);
    }
    let mut hours: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for (day, plates) in &by_day {
        for (plate, seen) in plates {
            if seen.len() < 2 {
                continue;
            }
            for hour in seen.iter().collect::<BTreeSet<_>>() {
                let wall = day.and_hms_opt(*hour, 0, 0).unwrap();
                let first = berlin.from_local_datetime(&wall).earliest().unwrap();
                let e = hours.entry(first.timestamp() * 1_000_000).or_default();
                e.0 += 1;
                e.1 += u64::from(is_local(plate));
            }
        }
    }
    let got: BTreeMap<i64, (u64, u64)> = out
        .census_hours
        .iter()
        .filter(|h| h.vehicles > 0)
        .map(|h| (h.hour.0, (h.vehicles, h.local)))
        .collect();
    assert_eq!(got, hours);
    // 24 rows a day, the 25-hour day included: its repeated 02:00 is one row.
    assert_eq!(out.census_hours.len(), 24 * out.census_days.len());
    assert!(
        out.census_days
            .iter()
            .any(|d| d.day.to_string() == "2026-10-25"),
        "the test spans the day the clocks go back"
    );
}
