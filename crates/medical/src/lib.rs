//! Medical results recognised across hospitals (浙医互认): when a doctor orders a test, is
//! there a result another hospital already has that stands in for it, which one, and why (or
//! why not)? No I/O: the server's medical scene feeds the results and the test types from
//! the hub's change feed and asks [`decide`].
//!
//! The rules, in the order they are applied (docs/medical.md says how a city changes them):
//! 1. The test must be in `health.test_types` (else `unknown_test`) with a validity above 0
//!    days (else `not_recognisable`: e.g. a blood gas, which describes the minute it was taken).
//! 2. Among the patient's results of that test performed before the order, for an imaging
//!    test (`by_site`) only those of the same body site (none of the test: `no_result`; only
//!    other sites: `other_site`), the newest is the candidate.
//! 3. It must be at most `validity_days` old, or `child_validity_days` for a patient under 14,
//!    whose values change faster (else `expired`).
//! 4. The doctor's exceptions come last, so the answer still shows the result they set aside:
//!    an emergency (`emergency`) or a changed condition (`changed_condition`) allows the test
//!    to be repeated.
//! 5. Otherwise `recognised`: the repeat test's price is saved.
//!
//! The shipped test types (`data/test_types.ndjson`) are illustrative: validities and prices
//! in the range Zhejiang's list uses, not an official table.

pub mod demo;
pub mod paylater;

use std::collections::{HashMap, HashSet};

use citybrain_core::time::MICROS_PER_DAY;
use citybrain_core::{Fen, Timestamp};
use serde::{Deserialize, Serialize};

/// The results hospitals publish.
pub const RESULTS: &str = "health.test_results";
/// The test types and their validity.
pub const TYPES: &str = "health.test_types";
/// Every recognition asked, with its answer.
pub const RECOGNITIONS: &str = "medical.recognitions";

/// Definitions (file name, TOML text) of the scene's datasets.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "health.test_results.toml",
        include_str!("../definitions/health.test_results.toml"),
    ),
    (
        "health.test_types.toml",
        include_str!("../definitions/health.test_types.toml"),
    ),
    (
        "medical.recognitions.toml",
        include_str!("../definitions/medical.recognitions.toml"),
    ),
];

/// The shipped test types as NDJSON rows of `health.test_types` (illustrative).
pub const SHIPPED_TYPES: &str = include_str!("../data/test_types.ndjson");

/// A test hospitals recognise from each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestType {
    pub code: String,
    pub name: String,
    pub name_zh: String,
    /// Days a result stays valid; 0: never recognised.
    pub validity_days: u32,
    /// The same for a patient under 14.
    pub child_validity_days: u32,
    /// Recognised only for the same body site.
    pub by_site: bool,
    /// What a repeat costs, in fen.
    pub price: i64,
}

/// The test types by code; a newer row of a code replaces the older.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    by_code: HashMap<String, TestType>,
}

impl Catalogue {
    pub fn set(&mut self, test: TestType) {
        self.by_code.insert(test.code.clone(), test);
    }

    pub fn get(&self, code: &str) -> Option<&TestType> {
        self.by_code.get(code)
    }

    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }

    /// The shipped test types.
    pub fn shipped() -> Self {
        let mut catalogue = Self::default();
        for line in SHIPPED_TYPES.lines().filter(|l| !l.trim().is_empty()) {
            catalogue.set(serde_json::from_str(line).expect("the shipped test types parse"));
        }
        catalogue
    }
}

/// One published result, as recognition needs it (the finding itself stays in the dataset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredResult {
    pub result_id: String,
    pub test_code: String,
    pub body_site: Option<String>,
    pub hospital: String,
    #[serde(with = "citybrain_core::time::as_text")]
    pub performed_at: Timestamp,
}

/// Every patient's results, as the feed delivered them; a result delivered twice (the feed
/// is at least once) or published twice is kept once.
#[derive(Debug, Default)]
pub struct ResultIndex {
    by_patient: HashMap<String, Vec<StoredResult>>,
    seen: HashSet<String>,
}

impl ResultIndex {
    /// Adds a result; false when its id was already there.
    pub fn insert(&mut self, patient_id: &str, result: StoredResult) -> bool {
        if !self.seen.insert(result.result_id.clone()) {
            return false;
        }
        self.by_patient
            .entry(patient_id.to_string())
            .or_default()
            .push(result);
        true
    }

    pub fn of(&self, patient_id: &str) -> &[StoredResult] {
        self.by_patient.get(patient_id).map_or(&[], Vec::as_slice)
    }

    /// How many results it holds.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A test a doctor orders, with the exceptions the doctor states.
#[derive(Debug, Clone)]
pub struct Order<'a> {
    pub test_code: &'a str,
    pub body_site: Option<&'a str>,
    pub at: Timestamp,
    pub emergency: bool,
    pub changed_condition: bool,
    /// The patient is under 14.
    pub child: bool,
}

/// Why a result is, or is not, recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Recognised,
    UnknownTest,
    NotRecognisable,
    NoResult,
    OtherSite,
    Expired,
    Emergency,
    ChangedCondition,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Recognised => "recognised",
            Reason::UnknownTest => "unknown_test",
            Reason::NotRecognisable => "not_recognisable",
            Reason::NoResult => "no_result",
            Reason::OtherSite => "other_site",
            Reason::Expired => "expired",
            Reason::Emergency => "emergency",
            Reason::ChangedCondition => "changed_condition",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Reason::Recognised,
            Reason::UnknownTest,
            Reason::NotRecognisable,
            Reason::NoResult,
            Reason::OtherSite,
            Reason::Expired,
            Reason::Emergency,
            Reason::ChangedCondition,
        ]
        .into_iter()
        .find(|r| r.name() == text)
    }
}

/// The answer to an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub recognised: bool,
    pub reason: Reason,
    /// The result recognised, or the newest one considered and set aside.
    pub result: Option<StoredResult>,
    /// Its age at the order, in days.
    pub age_days: Option<f64>,
    /// The validity that applied.
    pub valid_days: Option<u32>,
    /// The repeat test's price when recognised.
    pub saved: Fen,
    /// Why, in words (English and Chinese).
    pub why: String,
    pub why_zh: String,
}

fn same_site(a: Option<&str>, b: Option<&str>) -> bool {
    let norm = |s: Option<&str>| s.map(|s| s.trim().to_lowercase()).unwrap_or_default();
    norm(a) == norm(b)
}

/// Decides an order against the patient's results (see the crate's rules).
pub fn decide(catalogue: &Catalogue, order: &Order, results: &[StoredResult]) -> Decision {
    let refuse = |reason: Reason, why: String, why_zh: String| Decision {
        recognised: false,
        reason,
        result: None,
        age_days: None,
        valid_days: None,
        saved: Fen(0),
        why,
        why_zh,
    };
    let Some(test) = catalogue.get(order.test_code) else {
        return refuse(
            Reason::UnknownTest,
            format!("{} is not a test in health.test_types", order.test_code),
            format!(
                "{} 不在互认项目目录（health.test_types）中",
                order.test_code
            ),
        );
    };
    let valid_days = if order.child {
        test.child_validity_days
    } else {
        test.validity_days
    };
    if valid_days == 0 {
        return refuse(
            Reason::NotRecognisable,
            format!(
                "{} results are not recognised: each describes only its moment",
                test.name
            ),
            format!("{}结果仅反映检查当时情况，不予互认", test.name_zh),
        );
    }
    let of_test: Vec<&StoredResult> = results
        .iter()
        .filter(|r| r.test_code == test.code && r.performed_at <= order.at)
        .collect();
    let candidate = of_test
        .iter()
        .filter(|r| !test.by_site || same_site(r.body_site.as_deref(), order.body_site))
        .max_by_key(|r| (r.performed_at, &r.result_id))
        .copied();
    let Some(result) = candidate else {
        let site = order.body_site.unwrap_or("-");
        return if of_test.is_empty() {
            refuse(
                Reason::NoResult,
                format!("no {} result of this patient in any hospital", test.name),
                format!("该患者在各医院均无{}结果", test.name_zh),
            )
        } else {
            refuse(
                Reason::OtherSite,
                format!(
                    "{} results of this patient are of other body sites, none of {site}",
                    test.name
                ),
                format!(
                    "该患者的{}结果均为其他部位，无 {site} 部位结果",
                    test.name_zh
                ),
            )
        };
    };
    let age_days = (order.at.0 - result.performed_at.0) as f64 / MICROS_PER_DAY as f64;
    let who = if order.child { " for a child" } else { "" };
    let who_zh = if order.child { "（儿童）" } else { "" };
    let mut decision = Decision {
        recognised: false,
        reason: Reason::Expired,
        result: Some(result.clone()),
        age_days: Some((age_days * 10.0).round() / 10.0),
        valid_days: Some(valid_days),
        saved: Fen(0),
        why: String::new(),
        why_zh: String::new(),
    };
    let age = format!("{age_days:.1}");
    if age_days > f64::from(valid_days) {
        decision.why = format!(
            "the newest {} ({}, {}) is {age} days old; results stay valid {valid_days} days{who}",
            test.name, result.hospital, result.result_id
        );
        decision.why_zh = format!(
            "最近一次{}（{}，{}）已 {age} 天，超过有效期 {valid_days} 天{who_zh}",
            test.name_zh, result.hospital, result.result_id
        );
    } else if order.emergency {
        decision.reason = Reason::Emergency;
        decision.why = format!(
            "a valid {} exists ({}, {age} days old), but in an emergency the doctor may test again",
            test.name, result.hospital
        );
        decision.why_zh = format!(
            "存在有效的{}结果（{}，{age} 天），但急诊情况下医生可重新检查",
            test.name_zh, result.hospital
        );
    } else if order.changed_condition {
        decision.reason = Reason::ChangedCondition;
        decision.why = format!(
            "a valid {} exists ({}, {age} days old), but the patient's condition has changed since",
            test.name, result.hospital
        );
        decision.why_zh = format!(
            "存在有效的{}结果（{}，{age} 天），但患者病情已变化",
            test.name_zh, result.hospital
        );
    } else {
        decision.recognised = true;
        decision.reason = Reason::Recognised;
        decision.saved = Fen(test.price);
        decision.why = format!(
            "{} by {} ({}) is {age} days old, within {valid_days} days{who}: recognised, a repeat avoided",
            test.name, result.hospital, result.result_id
        );
        decision.why_zh = format!(
            "{}于{}（{}）检查，距今 {age} 天，在有效期 {valid_days} 天内{who_zh}：予以互认，免于重复检查",
            test.name_zh, result.hospital, result.result_id
        );
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: f64) -> Timestamp {
        Timestamp((days * MICROS_PER_DAY as f64) as i64)
    }

    fn result(id: &str, code: &str, site: Option<&str>, day: f64) -> StoredResult {
        StoredResult {
            result_id: id.into(),
            test_code: code.into(),
            body_site: site.map(str::to_string),
            hospital: "hospital_a".into(),
            performed_at: at(day),
        }
    }

    fn order(code: &'static str, site: Option<&'static str>, day: f64) -> Order<'static> {
        Order {
            test_code: code,
            body_site: site,
            at: at(day),
            emergency: false,
            changed_condition: false,
            child: false,
        }
    }

    #[test]
    fn each_rule_in_turn() {
        let types = Catalogue::shipped();
        let results = vec![
            result("r1", "CBC", None, 10.0),
            result("r2", "CBC", None, 14.0),
            result("r3", "CT", Some("chest"), 10.0),
            result("r4", "CBC", None, 30.0), // after the order: not considered
        ];
        let d = decide(&types, &order("CBC", None, 20.0), &results);
        assert_eq!(d.reason, Reason::Recognised, "{d:?}");
        assert_eq!(d.result.as_ref().unwrap().result_id, "r2");
        assert_eq!(d.saved, Fen(2000));
        assert_eq!(d.age_days, Some(6.0));
        let d = decide(&types, &order("CBC", None, 22.0), &results);
        assert_eq!(d.reason, Reason::Expired, "{d:?}");
        let child = Order {
            child: true,
            ..order("CBC", None, 20.0)
        };
        assert_eq!(decide(&types, &child, &results).reason, Reason::Expired);
        assert_eq!(
            decide(&types, &order("CT", Some(" Chest"), 30.0), &results).reason,
            Reason::Recognised
        );
        assert_eq!(
            decide(&types, &order("CT", Some("head"), 30.0), &results).reason,
            Reason::OtherSite
        );
        assert_eq!(
            decide(&types, &order("MRI", Some("knee"), 30.0), &results).reason,
            Reason::NoResult
        );
        assert_eq!(
            decide(&types, &order("BLOODGAS", None, 30.0), &results).reason,
            Reason::NotRecognisable
        );
        assert_eq!(
            decide(&types, &order("NOPE", None, 30.0), &results).reason,
            Reason::UnknownTest
        );
        let urgent = Order {
            emergency: true,
            ..order("CBC", None, 20.0)
        };
        let d = decide(&types, &urgent, &results);
        assert_eq!(d.reason, Reason::Emergency);
        assert!(!d.recognised && d.saved == Fen(0) && d.result.is_some());
        let changed = Order {
            changed_condition: true,
            ..order("CBC", None, 20.0)
        };
        assert_eq!(
            decide(&types, &changed, &results).reason,
            Reason::ChangedCondition
        );
    }

    #[test]
    fn a_result_delivered_twice_is_kept_once() {
        let mut index = ResultIndex::default();
        assert!(index.insert("p", result("r1", "CBC", None, 1.0)));
        assert!(!index.insert("p", result("r1", "CBC", None, 1.0)));
        assert_eq!(index.of("p").len(), 1);
        assert_eq!(index.len(), 1);
        assert!(index.of("q").is_empty());
    }

    #[test]
    fn reasons_round_trip_their_names() {
        for reason in [
            Reason::Recognised,
            Reason::OtherSite,
            Reason::ChangedCondition,
        ] {
            assert_eq!(Reason::parse(reason.name()), Some(reason));
        }
    }
}
