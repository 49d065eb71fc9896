//! Accuracy against the generator's truth (3% missed reads, 0.5% misreads) on a 20,000-vehicle
//! day, held to the targets: census within 0.1%, link medians within 2% for 90% of
//! link-bins with at least 20 traversals, city delay index within 0.5%, top-20 overlap 19/20.
//! (A link-bin here holds 20–60 traversals, so dropping the ~6% that lose a read moves a median
//! by about one order statistic; `bench/indices.py` checks the same at benchmark size, where
//! bins hold hundreds.)

mod common;

use std::collections::{BTreeMap, HashSet};

use citybrain_gen::{GenConfig, generate};
use citybrain_indices::{CITY, TrafficConfig, TrafficIndices, rank};

#[test]
fn indices_match_the_generated_truth() {
    let dir = tempfile::tempdir().unwrap();
    let config = GenConfig {
        seed: 11,
        scale: 1.0,
        miss_rate: 0.03,
        misread_rate: 0.005,
        network: None,
        max_trips: 3,
        day: citybrain_core::Date::parse("2026-11-22").unwrap(),
        local_prefix: "浙A".into(),
        zone: citybrain_core::TimeZone::fixed(8 * 3600),
    };
    let truth = generate(&config, dir.path(), &mut |_, _| {}).unwrap();
    let links = common::links(&std::fs::read_to_string(dir.path().join("links.ndjson")).unwrap());
    let freeflow: BTreeMap<(i64, i64), (i64, f64)> = links
        .iter()
        .map(|l| ((l.from, l.to), (l.link_id, l.freeflow_s)))
        .collect();
    let mut indices = TrafficIndices::new(TrafficConfig::default(), links.clone());
    let records = common::passages(
        &std::fs::read_to_string(dir.path().join("anpr_passages.ndjson")).unwrap(),
    );
    common::push_all(&mut indices, &records);
    let (out, _) = indices.finish();

    // The pass split by plate across threads, fed in batches as a file is read, gives the
    // same rows (the benchmark's and the CLI's way).
    let mut split = citybrain_indices::SplitPass::new(TrafficConfig::default(), links.clone(), 2);
    for chunk in records.chunks(10_000) {
        split.push_batch(&common::batch(chunk)).unwrap();
    }
    assert!(split.finish().0 == out, "the split pass's rows differ");

    // The census so far, at every instant: plates whose second distinct passage of the
    // local day came before it.
    let defaults = TrafficConfig::default();
    let day_of = |ts: i64| i64::from(defaults.zone.local_day(citybrain_core::Timestamp(ts)).0);
    let mut by_plate: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for (ts, checkpoint, plate) in &records {
        by_plate.entry(plate).or_default().push((*ts, *checkpoint));
    }
    let mut corroborated: Vec<(i64, i64)> = Vec::new();
    for passages in by_plate.values_mut() {
        passages.sort_unstable();
        passages.dedup();
        let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (ts, _) in passages.iter() {
            seen.entry(day_of(*ts)).or_default().push(*ts);
        }
        for (day, times) in seen {
            if let Some(second) = times.get(defaults.corroboration as usize - 1) {
                corroborated.push((day, *second));
            }
        }
    }
    assert!(
        out.census_so_far.len() > 200,
        "an instant every 5 minutes of the day"
    );
    for row in &out.census_so_far {
        let t = row.at.0;
        let expected = corroborated
            .iter()
            .filter(|(day, ts)| *day == day_of(t) && *ts < t)
            .count() as u64;
        assert_eq!(row.vehicles, expected, "vehicles so far at {}", row.at);
        assert_eq!(row.day, citybrain_core::Date(day_of(t) as i32));
    }

    // Census.
    let census = &out.census_days[0];
    let error = (census.vehicles as f64 / truth.vehicles as f64 - 1.0).abs();
    let naive = census.plates_read as f64 / truth.vehicles as f64 - 1.0;
    assert!(
        error <= 0.001,
        "census {} vs truth {} ({error:.4})",
        census.vehicles,
        truth.vehicles
    );
    assert!(
        naive > 0.02,
        "the naive count should be visibly off: {naive:.4}"
    );

    // Truth per link-bin: (median, vehicles).
    let mut true_bins: BTreeMap<(i64, String), (f64, u64)> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.path().join("truth_link_travel_times.csv"))
        .unwrap()
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split(',').collect();
        let key = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let (link, _) = freeflow[&key];
        true_bins.insert(
            (link, f[2].to_string()),
            (f[3].parse().unwrap(), f[5].parse().unwrap()),
        );
    }
    let (mut within, mut judged) = (0, 0);
    for row in out.link_travel.iter().filter(|r| r.traversals >= 20) {
        let (median, _) = true_bins[&(row.link_id, row.bin.to_string())];
        judged += 1;
        if (row.median_s / median - 1.0).abs() <= 0.02 {
            within += 1;
        }
    }
    let share = within as f64 / judged as f64;
    assert!(judged > 100, "too few link-bins to judge: {judged}");
    eprintln!("{within}/{judged} link medians within 2% of the truth");
    // The target is 90%. (The truth file once rounded medians to 0.1 s, which on the
    // shortest links is more than 2% by itself; it now keeps milliseconds.)
    assert!(share >= 0.90, "{within}/{judged} link medians within 2%");

    // City delay index over the day: traversal-weighted, the same definition on both sides.
    let ff: BTreeMap<i64, f64> = freeflow.values().copied().collect();
    let (mut s, mut n) = (0.0, 0.0);
    for ((link, _), (median, vehicles)) in &true_bins {
        s += median / ff[link] * *vehicles as f64;
        n += *vehicles as f64;
    }
    let true_city = s / n;
    let (mut s, mut n) = (0.0, 0.0);
    for d in out.delay.iter().filter(|d| d.district == CITY) {
        s += d.delay_index * d.traversals as f64;
        n += d.traversals as f64;
    }
    let city = s / n;
    assert!(
        (city / true_city - 1.0).abs() <= 0.005,
        "city delay index {city:.4} vs truth {true_city:.4}"
    );

    // Top-20 congested links over the day.
    let ours: Vec<String> = rank(&out.link_travel, "", "~", 20)
        .into_iter()
        .filter(|r| r.kind == "link")
        .take(20)
        .map(|r| r.id)
        .collect();
    let mut per_link: BTreeMap<i64, (f64, u64)> = BTreeMap::new();
    for ((link, _), (median, vehicles)) in &true_bins {
        let e = per_link.entry(*link).or_default();
        e.0 += median / ff[link] * *vehicles as f64;
        e.1 += vehicles;
    }
    let mut truth_rank: Vec<(i64, f64)> = per_link
        .into_iter()
        .filter(|(_, (_, n))| *n >= 20)
        .map(|(l, (s, n))| (l, s / n as f64))
        .collect();
    truth_rank.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: HashSet<String> = truth_rank
        .iter()
        .take(20)
        .map(|(l, _)| l.to_string())
        .collect();
    let overlap = ours.iter().filter(|l| top.contains(*l)).count();
    eprintln!(
        "census {} vs {} ({error:.5}); naive +{naive:.4}; link medians {within}/{judged}; city DI {city:.4} vs {true_city:.4}; top-20 overlap {overlap}",
        census.vehicles, truth.vehicles
    );
    assert!(overlap >= 19, "top-20 overlap {overlap}: ours {ours:?}");
}

/// With cameras that never miss or misread, the indices must see exactly the traversals the
/// generator drove: every link-bin, its count, and its median (to the truth file's ms).
/// (A vehicle's next trip starts at a random checkpoint; were it next to where the last trip
/// ended, and the wait short enough to pass for travel, the indices would see one traversal
/// the truth lacks, as they would on a real road. This seed has none.)
#[test]
fn perfect_cameras_see_every_true_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let config = GenConfig {
        seed: 5,
        scale: 0.5,
        miss_rate: 0.0,
        misread_rate: 0.0,
        network: None,
        max_trips: 3,
        day: citybrain_core::Date::parse("2026-11-22").unwrap(),
        local_prefix: "浙A".into(),
        zone: citybrain_core::TimeZone::fixed(8 * 3600),
    };
    generate(&config, dir.path(), &mut |_, _| {}).unwrap();
    let links = common::links(&std::fs::read_to_string(dir.path().join("links.ndjson")).unwrap());
    let by_ends: BTreeMap<(i64, i64), i64> =
        links.iter().map(|l| ((l.from, l.to), l.link_id)).collect();
    let mut indices = TrafficIndices::new(TrafficConfig::default(), links);
    let records = common::passages(
        &std::fs::read_to_string(dir.path().join("anpr_passages.ndjson")).unwrap(),
    );
    common::push_all(&mut indices, &records);
    let (out, _) = indices.finish();

    let mut truth: BTreeMap<(i64, String), (f64, u64)> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.path().join("truth_link_travel_times.csv"))
        .unwrap()
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split(',').collect();
        let link = by_ends[&(f[0].parse().unwrap(), f[1].parse().unwrap())];
        truth.insert(
            (link, f[2].to_string()),
            (f[3].parse().unwrap(), f[5].parse().unwrap()),
        );
    }
    let ours: BTreeMap<(i64, String), (f64, u64)> = out
        .link_travel
        .iter()
        .map(|r| ((r.link_id, r.bin.to_string()), (r.median_s, r.traversals)))
        .collect();
    let only_truth: Vec<_> = truth
        .iter()
        .filter(|(k, _)| !ours.contains_key(k))
        .take(10)
        .collect();
    let only_ours: Vec<_> = ours
        .iter()
        .filter(|(k, _)| !truth.contains_key(k))
        .take(10)
        .collect();
    let differ: Vec<_> = truth
        .iter()
        .filter_map(|(k, t)| ours.get(k).map(|o| (k, t, o)))
        .filter(|(_, t, o)| t.1 != o.1 || (t.0 - o.0).abs() > 0.002)
        .take(10)
        .collect();
    let n_only_truth = truth.keys().filter(|k| !ours.contains_key(*k)).count();
    let n_only_ours = ours.keys().filter(|k| !truth.contains_key(*k)).count();
    eprintln!(
        "truth {} bins, ours {}; only truth {n_only_truth} {only_truth:?}; only ours {n_only_ours} {only_ours:?}; differ {differ:?}",
        truth.len(),
        ours.len()
    );
    assert!(truth.len() > 1000, "too few link-bins: {}", truth.len());
    assert!(only_truth.is_empty() && only_ours.is_empty() && differ.is_empty());
}
