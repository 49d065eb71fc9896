//! Risk early warning from data collisions (数据碰撞预警): a warning rule is a query across
//! departments' datasets that counts something per area and period (eye injuries among
//! metal workers per township and week), a baseline (the same area's mean over the periods
//! before) and a threshold (a count the baseline makes improbable). When a period's count
//! passes it, the department that owns the risk is warned, with the query that shows the
//! evidence. No I/O: the server's `warnings` scene runs the queries as that department
//! (under its grants) and asks [`judge`].
//!
//! Rules are files (`rules/*.toml` ships two; docs/warnings.md says how a city writes its
//! own). The statistics: counts of rare events per area and period are taken as Poisson
//! with the baseline as mean; a count warns when it is at least `min_value` and the chance
//! of a count at least as high is below `alpha` (one in a thousand by default), so a city of
//! a hundred areas expects about one false warning in ten periods from chance alone.

pub mod demo;

use citybrain_cockpits::Text;
use citybrain_core::time::MICROS_PER_DAY;
use citybrain_core::{Date, DepartmentId, TimeZone, Timestamp};
use serde::{Deserialize, Serialize};

/// Warnings raised, one row per rule, area and period, ever.
pub const RAISED: &str = "warnings.raised";

/// Definitions (file name, TOML text) of the datasets the shipped rules read and of the
/// warnings.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "safety.workplaces.toml",
        include_str!("../definitions/safety.workplaces.toml"),
    ),
    (
        "public_security.migrants.toml",
        include_str!("../definitions/public_security.migrants.toml"),
    ),
    (
        "health.diagnoses.toml",
        include_str!("../definitions/health.diagnoses.toml"),
    ),
    (
        "hr.injury_claims.toml",
        include_str!("../definitions/hr.injury_claims.toml"),
    ),
    (
        "warnings.raised.toml",
        include_str!("../definitions/warnings.raised.toml"),
    ),
];

/// The shipped rules: (file name, text).
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "eye_injuries.toml",
        include_str!("../rules/eye_injuries.toml"),
    ),
    (
        "eye_injury_claims.toml",
        include_str!("../rules/eye_injury_claims.toml"),
    ),
];

/// How long a period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    /// A local calendar day.
    Day,
    /// A local week from Monday 00:00.
    Week,
}

impl Every {
    fn days(self) -> i32 {
        match self {
            Every::Day => 1,
            Every::Week => 7,
        }
    }

    /// The first day of the period `day` falls in.
    pub fn start_day(self, day: Date) -> Date {
        match self {
            Every::Day => day,
            // 1970-01-01 was a Thursday: Monday is 3 days before it.
            Every::Week => Date(day.0 - (day.0 + 3).rem_euclid(7)),
        }
    }
}

/// A period: [start, end) in the city's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Period {
    pub first_day: Date,
    #[serde(with = "citybrain_core::time::as_text")]
    pub start: Timestamp,
    #[serde(with = "citybrain_core::time::as_text")]
    pub end: Timestamp,
}

impl Period {
    /// The period of `every` that the instant `at` falls in.
    pub fn of(at: Timestamp, every: Every, zone: &TimeZone) -> Period {
        Self::starting(every.start_day(zone.local_day(at)), every, zone)
    }

    fn starting(first_day: Date, every: Every, zone: &TimeZone) -> Period {
        Period {
            first_day,
            start: zone.day_start(first_day),
            end: zone.day_start(Date(first_day.0 + every.days())),
        }
    }

    /// The period `n` periods before this one.
    pub fn back(&self, n: i32, every: Every, zone: &TimeZone) -> Period {
        Self::starting(Date(self.first_day.0 - n * every.days()), every, zone)
    }

    /// The period's days, for the rough check that a period is whole.
    pub fn days(&self) -> f64 {
        (self.end.0 - self.start.0) as f64 / MICROS_PER_DAY as f64
    }
}

/// A warning rule, as its file says.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its name: letters, digits and `_`; part of every warning's id.
    pub name: String,
    pub title: Text,
    /// What it watches for and why, for the person warned.
    pub description: Text,
    /// The department that owns the risk: it is warned, and the query runs under its grants.
    pub department: String,
    pub every: Every,
    /// One row per area with `area` (text) and `value` (a count) for the period from `$from`
    /// to `$to`.
    pub sql: String,
    /// Rows that show the evidence for one area and period: `$area`, `$from`, `$to`.
    pub evidence: String,
    /// Periods before the one judged whose mean is the baseline.
    #[serde(default = "default_baseline_periods")]
    pub baseline_periods: u32,
    /// The baseline is at least this (a quiet area's few periods say little).
    #[serde(default = "default_floor")]
    pub baseline_floor: f64,
    /// A count below this never warns.
    #[serde(default = "default_min_value")]
    pub min_value: u64,
    /// The chance, under the baseline, of a count at least as high, below which it warns.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Periods judged back from the current one at each run (a server started late, a
    /// history loaded at once).
    #[serde(default = "default_look_back")]
    pub look_back: u32,
}

fn default_baseline_periods() -> u32 {
    8
}
fn default_floor() -> f64 {
    0.5
}
fn default_min_value() -> u64 {
    3
}
fn default_alpha() -> f64 {
    0.001
}
fn default_look_back() -> u32 {
    26
}

impl Rule {
    /// Parses and checks a rule file; every problem at once, each naming its field.
    pub fn parse(file: &str, text: &str) -> Result<Rule, Vec<String>> {
        let rule: Rule = toml::from_str(text).map_err(|e| vec![format!("{file}: {e}")])?;
        let mut problems = Vec::new();
        let ok_name = !rule.name.is_empty()
            && rule.name.len() <= 40
            && rule
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_name {
            problems.push(format!(
                "{file}: name: 1 to 40 lowercase letters, digits or _ (got {:?})",
                rule.name
            ));
        }
        if DepartmentId::parse(&rule.department).is_err() {
            problems.push(format!(
                "{file}: department: not a department id ({:?})",
                rule.department
            ));
        }
        let check = |field: &str, sql: &str, need: &[&str], problems: &mut Vec<String>| {
            let names = citybrain_cockpits::parameter_names(sql);
            for n in need {
                if !names.iter().any(|x| x == n) {
                    problems.push(format!("{file}: {field}: must use ${n}"));
                }
            }
            for n in &names {
                if !need.contains(&n.as_str()) {
                    problems.push(format!(
                        "{file}: {field}: ${n} is not a parameter (use {})",
                        need.iter()
                            .map(|n| format!("${n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        };
        check("sql", &rule.sql, &["from", "to"], &mut problems);
        check(
            "evidence",
            &rule.evidence,
            &["area", "from", "to"],
            &mut problems,
        );
        if !(rule.alpha > 0.0 && rule.alpha < 0.5) {
            problems.push(format!(
                "{file}: alpha: between 0 and 0.5 (got {})",
                rule.alpha
            ));
        }
        if !(1..=520).contains(&rule.baseline_periods) {
            problems.push(format!("{file}: baseline_periods: 1 to 520"));
        }
        if !(rule.baseline_floor > 0.0 && rule.baseline_floor.is_finite()) {
            problems.push(format!("{file}: baseline_floor: above 0"));
        }
        if rule.look_back > 520 {
            problems.push(format!("{file}: look_back: at most 520"));
        }
        if problems.is_empty() {
            Ok(rule)
        } else {
            Err(problems)
        }
    }

    /// The rule's query for one period.
    pub fn query(&self, period: &Period) -> String {
        bind(&self.sql, None, period)
    }

    /// The evidence query for one area and period.
    pub fn evidence_query(&self, area: &str, period: &Period) -> String {
        bind(&self.evidence, Some(area), period)
    }
}

fn bind(sql: &str, area: Option<&str>, period: &Period) -> String {
    citybrain_cockpits::bind_with(sql, |name| match name {
        "from" => Some(format!("TIMESTAMP '{}'", period.start)),
        "to" => Some(format!("TIMESTAMP '{}'", period.end)),
        "area" => area.map(|a| format!("'{}'", a.replace('\'', "''"))),
        _ => None,
    })
}

/// The shipped rules, parsed.
pub fn shipped() -> Vec<Rule> {
    SHIPPED
        .iter()
        .map(|(file, text)| Rule::parse(file, text).expect("the shipped rules parse"))
        .collect()
}

/// P(X ≥ k) for X ~ Poisson(λ).
pub fn poisson_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    // 1 - P(X ≤ k-1), summed from the terms; for the tail far above λ, sum the tail itself
    // so a tiny chance is not lost to rounding.
    let mut term = (-lambda).exp();
    if (k as f64) > lambda {
        // Terms from k upwards: start at P(X = k) in logs.
        let ln_pk = -lambda + k as f64 * lambda.ln() - ln_factorial(k);
        let mut p = ln_pk.exp();
        let mut sum = 0.0;
        let mut i = k;
        while p > sum * 1e-17 && i < k + 10_000 {
            sum += p;
            i += 1;
            p *= lambda / i as f64;
        }
        return sum.min(1.0);
    }
    let mut below = 0.0;
    for i in 0..k {
        if i > 0 {
            term *= lambda / i as f64;
        }
        below += term;
    }
    (1.0 - below).clamp(0.0, 1.0)
}

fn ln_factorial(n: u64) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

/// What the statistics say of one area's count in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub value: u64,
    /// The mean of the periods before (at least the floor).
    pub baseline: f64,
    /// The least count that warns against this baseline.
    pub threshold: u64,
    /// The chance of a count at least `value` under the baseline.
    pub p_value: f64,
    pub warn: bool,
}

/// Judges `value` against the counts of the periods before (`history`, any order; areas
/// with no row in a period count 0 there).
pub fn judge(rule: &Rule, value: u64, history: &[u64]) -> Judgement {
    let mean = if history.is_empty() {
        0.0
    } else {
        history.iter().sum::<u64>() as f64 / history.len() as f64
    };
    let baseline = mean.max(rule.baseline_floor);
    let mut threshold = rule.min_value.max(1);
    while poisson_tail(threshold, baseline) >= rule.alpha && threshold < 1_000_000 {
        threshold += 1;
    }
    let p_value = poisson_tail(value, baseline);
    Judgement {
        value,
        baseline,
        threshold,
        p_value,
        warn: value >= threshold,
    }
}

/// Judges one area's counts over consecutive periods, oldest first: the first
/// `baseline_periods` only as history, each later one against the mean of the last
/// `baseline_periods` before it that did not warn (a cluster does not raise its own
/// baseline, so a warning keeps warning while the cluster lasts, and the baseline is back
/// to what it was once it ends). One judgement per period after the history.
pub fn judge_series(rule: &Rule, values: &[u64]) -> Vec<Judgement> {
    let n = rule.baseline_periods as usize;
    let mut quiet: Vec<u64> = values.iter().take(n).copied().collect();
    let mut out = Vec::new();
    for &value in values.iter().skip(n) {
        let history = &quiet[quiet.len().saturating_sub(n)..];
        let j = judge(rule, value, history);
        if !j.warn {
            quiet.push(value);
        }
        out.push(j);
    }
    out
}

/// A warning's id: the same for a rule, area and period at every run.
pub fn warning_id(rule: &str, area: &str, period: &Period) -> String {
    format!("{rule}/{area}/{}", period.first_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poisson_tail_matches_known_values() {
        // P(X >= 1; 1) = 1 - e^-1
        assert!((poisson_tail(1, 1.0) - 0.632_120_558_8).abs() < 1e-9);
        // P(X >= 5; 0.5) = 1.7212e-4
        assert!((poisson_tail(5, 0.5) - 1.721_156e-4).abs() < 1e-8);
        // P(X >= 3; 4) = 1 - e^-4 (1 + 4 + 8)
        let want = 1.0 - (-4.0f64).exp() * 13.0;
        assert!((poisson_tail(3, 4.0) - want).abs() < 1e-12);
        assert!(poisson_tail(60, 1.0) > 0.0);
        assert_eq!(poisson_tail(0, 3.0), 1.0);
    }

    #[test]
    fn a_count_warns_from_the_least_improbable_threshold() {
        let rule = &shipped()[0];
        let j = judge(rule, 9, &[0, 1, 0, 0, 1, 0, 0, 0]);
        assert_eq!(j.baseline, 0.5);
        assert_eq!(j.threshold, 5);
        assert!(j.warn && j.p_value < 1e-6);
        assert!(!judge(rule, 4, &[0; 8]).warn);
        // A busy area needs more.
        let j = judge(rule, 9, &[4, 5, 3, 4, 6, 4, 5, 5]);
        assert!(!j.warn && j.threshold > 9, "{j:?}");
    }

    #[test]
    fn a_cluster_does_not_raise_its_own_baseline() {
        let rule = &shipped()[0];
        let series = [0, 1, 0, 0, 1, 0, 0, 0, 9, 10, 11, 9, 5, 5, 4, 1, 0];
        let warned: Vec<bool> = judge_series(rule, &series).iter().map(|j| j.warn).collect();
        assert_eq!(
            warned,
            [true, true, true, true, true, true, false, false, false]
        );
    }

    #[test]
    fn weeks_start_on_monday_in_the_city() {
        let zone = TimeZone::parse("Asia/Shanghai").unwrap();
        // Thursday 2026-12-03 10:00 local.
        let p = Period::of(
            Timestamp::parse("2026-12-03T02:00:00Z").unwrap(),
            Every::Week,
            &zone,
        );
        assert_eq!(p.first_day, Date::parse("2026-11-30").unwrap());
        assert_eq!(p.start, Timestamp::parse("2026-11-29T16:00:00Z").unwrap());
        assert_eq!(
            p.back(1, Every::Week, &zone).first_day,
            Date::parse("2026-11-23").unwrap()
        );
        assert_eq!(p.days(), 7.0);
    }

    #[test]
    fn rules_name_their_problems_and_bind_their_parameters() {
        let text = SHIPPED[0].1.replace("$to", "$until");
        let problems = Rule::parse("x.toml", &text).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("sql: must use $to")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("$until is not a parameter")),
            "{problems:?}"
        );
        let rule = &shipped()[0];
        let zone = TimeZone::utc();
        let period = Period::of(
            Timestamp::parse("2026-12-03T02:00:00Z").unwrap(),
            Every::Week,
            &zone,
        );
        let q = rule.evidence_query("O'Brien", &period);
        assert!(
            q.contains("'O''Brien'") && q.contains("TIMESTAMP '2026-11-30T00:00:00Z'"),
            "{q}"
        );
        assert!(Rule::parse("y.toml", "name = 'x'").is_err());
    }
}
