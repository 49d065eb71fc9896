//! The demo city is deterministic and its truth adds up.

use citybrain_gen::{GenConfig, generate};

fn config(seed: u64) -> GenConfig {
    GenConfig {
        seed,
        scale: 0.05,
        miss_rate: 0.03,
        misread_rate: 0.02,
        network: None,
        max_trips: 3,
        day: citybrain_core::Date::parse("2026-11-22").unwrap(),
        local_prefix: "浙A".into(),
        zone: citybrain_core::TimeZone::fixed(8 * 3600),
    }
}

#[test]
fn same_seed_same_bytes_and_truth_adds_up() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let truth = generate(&config(3), a.path(), &mut |_, _| {}).unwrap();
    generate(&config(3), b.path(), &mut |_, _| {}).unwrap();
    generate(&config(4), c.path(), &mut |_, _| {}).unwrap();
    let read =
        |d: &tempfile::TempDir| std::fs::read(d.path().join("anpr_passages.ndjson")).unwrap();
    assert_eq!(read(&a), read(&b));
    assert_ne!(read(&a), read(&c));
    assert_eq!(truth.vehicles, 1000);
    assert_eq!(
        truth.local_vehicles + truth.non_local_vehicles,
        truth.vehicles
    );
    assert_eq!(
        truth.passages_recorded + truth.missed_reads,
        truth.passages_true
    );
    let lines = read(&a).iter().filter(|b| **b == b'\n').count() as u64;
    assert_eq!(lines, truth.passages_recorded);
    // Misreads are near the configured rate (2% of recorded passages).
    let rate = truth.misread_plates as f64 / truth.passages_recorded as f64;
    assert!((0.01..0.03).contains(&rate), "{rate}");
    // Every link joins two checkpoints that exist.
    let checkpoints = std::fs::read_to_string(a.path().join("checkpoints.ndjson")).unwrap();
    assert_eq!(checkpoints.lines().count(), 269);
}

#[test]
fn one_trip_each_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut one = config(3);
    one.max_trips = 1;
    let truth = generate(&one, dir.path(), &mut |_, _| {}).unwrap();
    assert_eq!(truth.trips, truth.vehicles);
    let dir = tempfile::tempdir().unwrap();
    let truth = generate(&config(3), dir.path(), &mut |_, _| {}).unwrap();
    assert!(
        truth.trips > truth.vehicles * 3 / 2,
        "{} trips",
        truth.trips
    );
}

/// Found by fuzzing: a network file's counts are claims, not allocations to make.
#[test]
fn a_network_claiming_absurd_counts_is_refused_not_allocated() {
    let e = citybrain_gen::Network::parse("33333333333333333333333333333333333333333333\n")
        .unwrap_err();
    assert!(e.contains("ends"), "{e}");
    let e = citybrain_gen::Network::parse("1\n30 120 1 1\n999999999999999999999\n").unwrap_err();
    assert!(e.contains("ends"), "{e}");
}
