//! The shipped rules against the planted cluster, judged from the generated rows (the
//! server's test does the same through SQL under a department's grants): the cluster is
//! found in the week it starts, and chance makes at most one false warning per 100
//! township-weeks. Precision and recall are printed for the docs.

use std::collections::BTreeSet;

use citybrain_core::{TimeZone, Timestamp};
use citybrain_warnings::demo::{DemoConfig, District, generate};
use citybrain_warnings::{Every, Rule, judge_series, shipped};

/// (rule, area, week) of every warning the rule raises over the data's weeks, judging each
/// week after the rule's baseline periods.
fn warnings(
    d: &District,
    rule: &Rule,
) -> (BTreeSet<(String, String, citybrain_core::Date)>, usize) {
    assert_eq!(rule.every, Every::Week);
    let counts = citybrain_warnings::demo::counts(d, &rule.name);
    let townships: BTreeSet<String> = d
        .workplaces
        .iter()
        .map(|w| w.township.to_string())
        .collect();
    let n = rule.baseline_periods as usize;
    let mut raised = BTreeSet::new();
    let mut judged = 0;
    for t in &townships {
        let values: Vec<u64> = d
            .weeks
            .iter()
            .map(|w| counts.get(&(t.clone(), w.first_day)).copied().unwrap_or(0))
            .collect();
        for (j, week) in judge_series(rule, &values).iter().zip(&d.weeks[n..]) {
            judged += 1;
            if j.warn {
                raised.insert((rule.name.clone(), t.clone(), week.first_day));
            }
        }
    }
    (raised, judged)
}

#[test]
fn the_planted_cluster_is_found_in_its_first_week_with_few_false_warnings() {
    let zone = TimeZone::parse("Asia/Shanghai").unwrap();
    let end = Timestamp::parse("2026-12-03T10:00:00+08:00").unwrap();
    let mut false_total = 0;
    let mut judged_total = 0;
    let (mut found, mut planted, mut raised_all, mut true_all) = (0, 0, 0, 0);
    for seed in 1..=5 {
        let d = generate(&DemoConfig::standard(seed, end, zone.clone()));
        for rule in shipped() {
            let truth: BTreeSet<_> = d
                .truth
                .iter()
                .filter(|p| p.rule == rule.name)
                .map(|p| (p.rule.to_string(), p.area.clone(), p.first_day))
                .collect();
            let start = d
                .truth
                .iter()
                .find(|p| p.rule == rule.name && p.start)
                .map(|p| (p.rule.to_string(), p.area.clone(), p.first_day));
            let (raised, judged) = warnings(&d, &rule);
            let true_pos = raised.intersection(&truth).count();
            let false_pos = raised.difference(&truth).count();
            println!(
                "seed {seed} {}: {} warnings, {true_pos} true, {false_pos} false over {judged} township-weeks; recall {}/{}; first week found: {}",
                rule.name,
                raised.len(),
                true_pos,
                truth.len(),
                start.as_ref().is_some_and(|s| raised.contains(s))
            );
            raised_all += raised.len();
            true_all += true_pos;
            if rule.name == "eye_injuries" {
                found += true_pos;
                planted += truth.len();
                let start = start.expect("a planted start");
                assert!(
                    raised.contains(&start),
                    "seed {seed}: the cluster's first week not found"
                );
            }
            false_total += false_pos;
            judged_total += judged;
        }
    }
    println!(
        "eye_injuries recall {found}/{planted}; precision of both rules {true_all}/{raised_all}"
    );
    assert!(
        found * 2 >= planted,
        "eye_injuries found {found} of {planted} planted weeks"
    );
    let rate = false_total as f64 * 100.0 / judged_total as f64;
    println!(
        "false warnings: {false_total} over {judged_total} township-weeks ({rate:.3} per 100)"
    );
    assert!(rate <= 1.0, "{rate} false warnings per 100 township-weeks");
}
