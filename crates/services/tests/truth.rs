//! The engine against the generator's truth: every task the truth expects is opened, on its
//! day, and no other; again when the facts arrive in another department order within a day.

use std::collections::BTreeSet;

use citybrain_core::{Date, GeoPoint, TimeZone};
use citybrain_services::demo::{self, DemoConfig, Expected};
use citybrain_services::{Engine, ServiceRules, Update};

fn config(residents: u64) -> DemoConfig {
    DemoConfig {
        seed: 7,
        residents,
        first_day: Date::parse("2026-11-01").unwrap(),
        days: 30,
        zone: TimeZone::parse("Asia/Shanghai").unwrap(),
        centre: GeoPoint {
            lon: 120.16,
            lat: 30.27,
        },
        radius_m: 8_000.0,
    }
}

fn run(engine: &mut Engine, updates: impl IntoIterator<Item = Update>) -> BTreeSet<Expected> {
    let zone = TimeZone::parse("Asia/Shanghai").unwrap();
    let mut got = BTreeSet::new();
    for u in updates {
        for t in engine.apply(&u) {
            let r = engine.population.get(t.resident);
            let fresh = got.insert(Expected {
                service: engine.rules.services[t.service].name.clone(),
                resident_id: r.id.clone(),
                day: zone.local_day(t.opened_at),
            });
            assert!(fresh, "a second task for one service and resident");
        }
    }
    got
}

/// Residents of the run: 10,000, or `CITYBRAIN_TRUTH_RESIDENTS` (1,000,000 is the
/// generator's scale 1: `CITYBRAIN_TRUTH_RESIDENTS=1000000 cargo test --release -p
/// citybrain-services --test truth -- --nocapture`, recorded in docs/benchmarks.md).
fn residents() -> u64 {
    std::env::var("CITYBRAIN_TRUTH_RESIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn every_expected_task_is_opened_on_its_day_and_no_other() {
    let started = std::time::Instant::now();
    let demo = demo::generate(&config(residents()));
    println!(
        "{} residents generated in {:.1} s: {} tasks in the truth",
        residents(),
        started.elapsed().as_secs_f64(),
        demo.truth.len()
    );
    let truth: BTreeSet<Expected> = demo.truth.iter().cloned().collect();
    assert!(truth.len() > 500, "the month has tasks: {}", truth.len());
    let services: BTreeSet<&str> = truth.iter().map(|e| e.service.as_str()).collect();
    assert!(
        services.len() >= 15,
        "most services have a task: {services:?}"
    );
    let later = truth
        .iter()
        .filter(|e| e.day > Date::parse("2026-11-01").unwrap())
        .count();
    assert!(later > 50, "changes during the month open tasks: {later}");

    let mut engine = Engine::new(
        ServiceRules::shipped(),
        TimeZone::parse("Asia/Shanghai").unwrap(),
        2,
    );
    let all = demo
        .first_load
        .iter()
        .cloned()
        .chain(demo.days.iter().flat_map(|(_, d)| d.iter().cloned()));
    let got = run(&mut engine, all);
    let missing: Vec<_> = truth.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&truth).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} expected, {} opened; missing {missing:?}; extra {extra:?}",
        truth.len(),
        got.len()
    );
    assert_eq!(engine.undecided, 0);
    println!(
        "every expected task opened once, no other: {} tasks over {} days ({:.1} s so far)",
        got.len(),
        demo.days.len(),
        started.elapsed().as_secs_f64()
    );

    // Departments publish in their own order: each day's rows grouped by dataset.
    let mut engine = Engine::new(
        ServiceRules::shipped(),
        TimeZone::parse("Asia/Shanghai").unwrap(),
        1,
    );
    let key = |u: &Update| match u {
        Update::Resident(_) => 4,
        Update::Certificate(_) => 3,
        Update::Income(_) => 2,
        Update::Insurance(_) => 1,
        Update::Enrolment(_) => 0,
    };
    let mut first = demo.first_load.clone();
    first.sort_by_key(|u| {
        (
            if matches!(u, Update::Resident(_)) {
                0
            } else {
                1
            },
            key(u),
        )
    });
    let mut grouped = first;
    for (_, day) in &demo.days {
        let mut day = day.clone();
        day.sort_by_key(key);
        grouped.extend(day);
    }
    let again = run(&mut engine, grouped);
    assert_eq!(again, truth);
}

#[test]
fn overdue_tasks_escalate_on_the_data_clock() {
    let demo = demo::generate(&config(2_000));
    let mut engine = Engine::new(
        ServiceRules::shipped(),
        TimeZone::parse("Asia/Shanghai").unwrap(),
        1,
    );
    let mut opened = 0;
    let mut escalated = Vec::new();
    for u in demo
        .first_load
        .iter()
        .chain(demo.days.iter().flat_map(|(_, d)| d.iter()))
    {
        opened += engine.apply(u).len();
        escalated.extend(engine.overdue());
    }
    assert!(opened > 0);
    // Nobody acts on them: every task whose deadline the month passed escalates, once.
    let clock = engine.clock().unwrap();
    let due: usize = engine.tasks.tasks().filter(|t| t.due_at <= clock).count();
    assert_eq!(escalated.len(), due);
    let ids: BTreeSet<&String> = escalated.iter().map(|e| &e.0).collect();
    assert_eq!(ids.len(), escalated.len());
}
