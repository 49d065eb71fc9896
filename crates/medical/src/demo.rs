//! The demo city's medical data: patients' test results across hospitals over some weeks,
//! and orders planted with the answer each must get. The answers come from how each order
//! is made (a result's age set past its validity, a body site the patient has no image of),
//! not from [`crate::decide`], so a test comparing the two checks the rules.

use citybrain_core::Timestamp;
use citybrain_core::time::{MICROS_PER_DAY, MICROS_PER_SECOND};
use serde::Serialize;

use crate::{Catalogue, Reason, TestType};

/// Where imaging looks.
const SITES: &[&str] = &["chest", "head", "abdomen", "knee", "lumbar spine"];

/// Hospitals publishing results (codes as `hospital` holds them).
pub const HOSPITALS: &[&str] = &[
    "zj_provincial_people",
    "hz_first_people",
    "hz_childrens",
    "hz_red_cross",
    "hz_chinese_medicine",
    "yuhang_first",
    "xiaoshan_first",
    "binjiang_community",
];

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub seed: u64,
    pub patients: usize,
    /// Results span this many days before `end`.
    pub days: u32,
    pub end: Timestamp,
    /// Orders planted per kind of answer.
    pub orders_per_reason: usize,
}

/// A patient's result as a row of `health.test_results`.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub result_id: String,
    pub patient_id: String,
    pub test_code: String,
    pub body_site: Option<String>,
    pub hospital: String,
    #[serde(with = "citybrain_core::time::as_text")]
    pub performed_at: Timestamp,
    pub result: String,
    pub report: String,
}

/// An order and the answer it must get.
#[derive(Debug, Clone, Serialize)]
pub struct Planted {
    pub order_id: String,
    pub patient_id: String,
    pub test_code: String,
    pub body_site: Option<String>,
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
    pub emergency: bool,
    pub changed_condition: bool,
    pub child: bool,
    pub expected: Reason,
}

struct Rng(u64);

impl Rng {
    /// splitmix64: small, deterministic, good enough to spread synthetic data.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Patient {
    id: String,
    child: bool,
    results: Vec<usize>,
}

/// The results (rows of `health.test_results`) and the planted orders.
pub fn generate(config: &DemoConfig) -> (Vec<ResultRow>, Vec<Planted>) {
    let catalogue = Catalogue::shipped();
    let mut types: Vec<&TestType> = catalogue.by_code.values().collect();
    types.sort_by(|a, b| a.code.cmp(&b.code));
    let recognisable: Vec<&TestType> = types
        .iter()
        .copied()
        .filter(|t| t.validity_days > 0)
        .collect();
    let mut rng = Rng(config.seed);
    let start = config.end.0 - i64::from(config.days) * MICROS_PER_DAY;
    let mut rows = Vec::new();
    let mut patients = Vec::with_capacity(config.patients);
    for p in 0..config.patients {
        // One in six a child; ids shaped like a resident id (region, birth year, sequence).
        let child = rng.below(6) == 0;
        let born = if child {
            2014 + rng.below(12)
        } else {
            1940 + rng.below(70)
        };
        let mut patient = Patient {
            id: format!("330106{born}{:08}", p),
            child,
            results: Vec::new(),
        };
        for _ in 0..rng.below(7) {
            let test = recognisable[rng.below(recognisable.len())];
            let hospital = if child && rng.below(2) == 0 {
                "hz_childrens"
            } else {
                HOSPITALS[rng.below(HOSPITALS.len())]
            };
            let at = start + (rng.unit() * (config.end.0 - start) as f64) as i64;
            let site = test
                .by_site
                .then(|| SITES[rng.below(SITES.len())].to_string());
            patient.results.push(rows.len());
            rows.push(ResultRow {
                result_id: format!("{hospital}/R{:09}", rows.len()),
                patient_id: patient.id.clone(),
                test_code: test.code.clone(),
                body_site: site,
                hospital: hospital.to_string(),
                performed_at: Timestamp(at - at % MICROS_PER_SECOND),
                result: format!("{} within reference range", test.name),
                report: format!("{hospital}/RPT{:09}", rows.len()),
            });
        }
        patients.push(patient);
    }

    let mut planted = Vec::new();
    let mut plant = |order: Planted| {
        let mut order = order;
        order.order_id = format!("demo-{:06}", planted.len());
        planted.push(order);
    };
    // The newest result of a test (and site) a patient has, over all the data: an order
    // after it sees it as the candidate.
    let newest = |patient: &Patient, test: &str, site: Option<&String>| -> Option<&ResultRow> {
        patient
            .results
            .iter()
            .map(|&i| &rows[i])
            .filter(|r| r.test_code == test && (site.is_none() || r.body_site.as_ref() == site))
            .max_by_key(|r| (r.performed_at, r.result_id.clone()))
    };
    let day = |d: f64| (d * MICROS_PER_DAY as f64) as i64;
    let kinds = [
        Reason::Recognised,
        Reason::Expired,
        Reason::NoResult,
        Reason::OtherSite,
        Reason::Emergency,
        Reason::ChangedCondition,
        Reason::NotRecognisable,
        Reason::UnknownTest,
    ];
    for kind in kinds {
        let mut made = 0;
        let mut tries = 0;
        while made < config.orders_per_reason && tries < config.patients * 20 {
            tries += 1;
            let patient = &patients[rng.below(patients.len())];
            let blank = |test: &str, site: Option<String>, at: i64| Planted {
                order_id: String::new(),
                patient_id: patient.id.clone(),
                test_code: test.to_string(),
                body_site: site,
                at: Timestamp(at - at % MICROS_PER_SECOND),
                emergency: false,
                changed_condition: false,
                child: patient.child,
                expected: kind,
            };
            let pick = patient
                .results
                .get(rng.below(patient.results.len().max(1)))
                .map(|&i| &rows[i]);
            match kind {
                Reason::Recognised
                | Reason::Expired
                | Reason::Emergency
                | Reason::ChangedCondition => {
                    let Some(pick) = pick else { continue };
                    let test = catalogue.get(&pick.test_code).expect("generated from it");
                    let last =
                        newest(patient, &test.code, pick.body_site.as_ref()).expect("has one");
                    let valid = if patient.child {
                        test.child_validity_days
                    } else {
                        test.validity_days
                    };
                    // Clear of the boundary by a tenth of the validity either way (and an
                    // hour), so the answer does not hang on rounding.
                    let after = if kind == Reason::Expired {
                        f64::from(valid) * (1.1 + rng.unit()) + 1.0 / 24.0
                    } else {
                        f64::from(valid) * (0.05 + 0.85 * rng.unit())
                    };
                    let mut order = blank(
                        &test.code,
                        last.body_site.clone(),
                        last.performed_at.0 + day(after),
                    );
                    order.emergency = kind == Reason::Emergency;
                    order.changed_condition = kind == Reason::ChangedCondition;
                    plant(order);
                }
                Reason::OtherSite => {
                    let Some(pick) = pick.filter(|r| r.body_site.is_some()) else {
                        continue;
                    };
                    let Some(site) = SITES
                        .iter()
                        .find(|s| newest(patient, &pick.test_code, Some(&s.to_string())).is_none())
                    else {
                        continue;
                    };
                    plant(blank(&pick.test_code, Some(site.to_string()), config.end.0));
                }
                Reason::NoResult => {
                    let missing = recognisable
                        .iter()
                        .find(|t| !patient.results.iter().any(|&i| rows[i].test_code == t.code));
                    let Some(test) = missing else { continue };
                    let site = test.by_site.then(|| SITES[0].to_string());
                    plant(blank(&test.code, site, config.end.0));
                }
                Reason::NotRecognisable => {
                    let test = types
                        .iter()
                        .find(|t| t.validity_days == 0)
                        .expect("one shipped");
                    plant(blank(&test.code, None, config.end.0));
                }
                Reason::UnknownTest => plant(blank("PETCT-X", None, config.end.0)),
            }
            made += 1;
        }
    }
    (rows, planted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Order, ResultIndex, StoredResult, decide};

    /// The rules agree with how the orders were made, every one.
    #[test]
    fn every_planted_order_gets_its_answer() {
        let config = DemoConfig {
            seed: 3,
            patients: 2_000,
            days: 60,
            end: Timestamp::parse("2026-11-22T00:00:00Z").unwrap(),
            orders_per_reason: 40,
        };
        let (rows, planted) = generate(&config);
        assert!(rows.len() > 4_000, "{} results", rows.len());
        assert_eq!(planted.len(), 8 * 40);
        let mut index = ResultIndex::default();
        for r in &rows {
            index.insert(
                &r.patient_id,
                StoredResult {
                    result_id: r.result_id.clone(),
                    test_code: r.test_code.clone(),
                    body_site: r.body_site.clone(),
                    hospital: r.hospital.clone(),
                    performed_at: r.performed_at,
                },
            );
        }
        let types = Catalogue::shipped();
        for p in &planted {
            let order = Order {
                test_code: &p.test_code,
                body_site: p.body_site.as_deref(),
                at: p.at,
                emergency: p.emergency,
                changed_condition: p.changed_condition,
                child: p.child,
            };
            let d = decide(&types, &order, index.of(&p.patient_id));
            assert_eq!(d.reason, p.expected, "{p:?}: {}", d.why);
        }
        // Same seed, same city.
        assert_eq!(generate(&config).0.len(), rows.len());
    }
}
