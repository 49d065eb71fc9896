//! A generated district for the warning rules: workplaces in townships, the migrant workers
//! registered at them, hospitals' diagnoses and work-injury claims over some weeks, with a
//! cluster of eye injuries planted at a few metal workshops of one township (the 铁屑伤眼
//! case: weeks at a high rate, then, after the intervention, weeks at about half of it).
//! The truth is where the cluster was planted; [`counts`] recomputes a rule's counts from
//! the rows the way its query does, so a test can judge them without a database.

use std::collections::{BTreeMap, HashMap, HashSet};

use citybrain_core::rng::Rng;
use citybrain_core::time::MICROS_PER_SECOND;
use citybrain_core::{Date, TimeZone, Timestamp};
use serde::Serialize;

use crate::{Every, Period};

/// Townships and streets of a district (names of Yuhang's, for colour).
pub const TOWNSHIPS: &[&str] = &[
    "Linping",
    "Nanyuan",
    "Donghu",
    "Xingqiao",
    "Yunhe",
    "Qiaosi",
    "Chongxian",
    "Tangqi",
    "Yuhang",
    "Renhe",
    "Liangzhu",
    "Pingyao",
    "Jingshan",
    "Huanghu",
    "Luniao",
    "Baizhang",
    "Zhongtai",
    "Xianlin",
    "Wuchang",
    "Cangqian",
    "Wenyi",
    "Yunchuan",
    "Donghua",
    "Xianzhai",
    "Bijia",
    "Shengqiao",
    "Hengcun",
    "Xinyu",
    "Tangyun",
    "Dongxin",
];

const INDUSTRIES: &[(&str, u64)] = &[
    ("metal_products", 12),
    ("machinery", 10),
    ("textiles", 15),
    ("food", 12),
    ("electronics", 10),
    ("logistics", 13),
    ("construction", 13),
    ("retail", 15),
];

const HOSPITALS: &[&str] = &[
    "yuhang_first",
    "yuhang_second",
    "linping_tcm",
    "zj_provincial_people",
    "hz_first_people",
];

#[derive(Debug, Clone)]
pub struct Cluster {
    /// Index into the townships (its busiest metal township when None).
    pub township: Option<usize>,
    /// Week (from the first) the cluster starts.
    pub start_week: u32,
    pub high_weeks: u32,
    pub high_per_week: u32,
    pub low_weeks: u32,
    pub low_per_week: u32,
}

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub seed: u64,
    pub townships: usize,
    /// Weeks of data, the last being the week of `end` (up to `end`).
    pub weeks: u32,
    pub end: Timestamp,
    pub zone: TimeZone,
    /// Background eye injuries per metal worker and week.
    pub eye_rate: f64,
    /// Share of eye injuries that become claims.
    pub claim_share: f64,
    pub cluster: Option<Cluster>,
}

impl DemoConfig {
    /// The demo's district: 30 townships, 30 weeks, the cluster 12 weeks before the end.
    pub fn standard(seed: u64, end: Timestamp, zone: TimeZone) -> Self {
        DemoConfig {
            seed,
            townships: TOWNSHIPS.len(),
            weeks: 30,
            end,
            zone,
            eye_rate: 0.0015,
            claim_share: 0.6,
            cluster: Some(Cluster {
                township: None,
                start_week: 18,
                high_weeks: 4,
                high_per_week: 10,
                low_weeks: 4,
                low_per_week: 5,
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkplaceRow {
    pub workplace_id: String,
    pub name: String,
    pub industry: &'static str,
    pub township: &'static str,
    #[serde(with = "citybrain_core::time::as_text")]
    pub registered_at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrantRow {
    pub person_id: String,
    pub workplace_id: String,
    pub township: &'static str,
    #[serde(with = "citybrain_core::time::as_text")]
    pub registered_at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiagnosisRow {
    pub diagnosis_id: String,
    pub patient_id: String,
    pub icd10: &'static str,
    pub hospital: &'static str,
    #[serde(with = "citybrain_core::time::as_text")]
    pub diagnosed_at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimRow {
    pub claim_id: String,
    pub worker_id: String,
    pub workplace_id: String,
    pub injury: &'static str,
    #[serde(with = "citybrain_core::time::as_text")]
    pub injured_at: Timestamp,
}

/// A planted (rule, area, period) the warnings must find.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Planted {
    pub rule: &'static str,
    pub area: String,
    pub first_day: Date,
    /// The cluster's first week.
    pub start: bool,
}

#[derive(Debug, Default)]
pub struct District {
    pub workplaces: Vec<WorkplaceRow>,
    pub migrants: Vec<MigrantRow>,
    pub diagnoses: Vec<DiagnosisRow>,
    pub claims: Vec<ClaimRow>,
    /// Every week of the data, the first first.
    pub weeks: Vec<Period>,
    pub truth: Vec<Planted>,
}

fn pick<'a>(rng: &mut Rng, weighted: &[(&'a str, u64)]) -> &'a str {
    let total: u64 = weighted.iter().map(|(_, w)| w).sum();
    let mut x = rng.below(total);
    for (name, w) in weighted {
        if x < *w {
            return name;
        }
        x -= w;
    }
    weighted[0].0
}

/// A Poisson count of mean `lambda` (small means: Knuth's method).
fn poisson(rng: &mut Rng, lambda: f64) -> u32 {
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = rng.f64();
    while p > limit {
        k += 1;
        p *= rng.f64();
    }
    k
}

pub fn generate(config: &DemoConfig) -> District {
    let mut rng = Rng::new(config.seed);
    let zone = &config.zone;
    let current = Period::of(config.end, Every::Week, zone);
    let weeks: Vec<Period> = (0..config.weeks)
        .rev()
        .map(|n| current.back(n as i32, Every::Week, zone))
        .collect();
    let long_ago = Timestamp(weeks[0].start.0 - 365 * 86_400 * MICROS_PER_SECOND);
    let mut d = District {
        weeks: weeks.clone(),
        ..District::default()
    };
    let townships = &TOWNSHIPS[..config.townships.min(TOWNSHIPS.len())];
    // Workplaces and their workers.
    let mut workers: HashMap<String, Vec<String>> = HashMap::new();
    let mut metal_workers_by_township: BTreeMap<usize, usize> = BTreeMap::new();
    for (t, township) in townships.iter().enumerate() {
        let count = 20 + rng.below(40) as usize;
        for _ in 0..count {
            let id = format!("W{:05}", d.workplaces.len() + 1);
            let industry = pick(&mut rng, INDUSTRIES);
            let staff = 5 + rng.below(76) as usize;
            let mut people = Vec::with_capacity(staff);
            for _ in 0..staff {
                let person = format!("51{:016}", d.migrants.len() + 1);
                d.migrants.push(MigrantRow {
                    person_id: person.clone(),
                    workplace_id: id.clone(),
                    township,
                    registered_at: long_ago,
                });
                people.push(person);
            }
            if industry == "metal_products" {
                *metal_workers_by_township.entry(t).or_default() += staff;
            }
            d.workplaces.push(WorkplaceRow {
                workplace_id: id.clone(),
                name: format!("{township} {industry} {}", d.workplaces.len() + 1),
                industry,
                township,
                registered_at: long_ago,
            });
            workers.insert(id, people);
        }
    }
    let case = |d: &mut District,
                rng: &mut Rng,
                workplace: &WorkplaceRow,
                person: &str,
                week: &Period,
                eye: bool| {
        let span = (week.end.0.min(config.end.0) - week.start.0).max(1);
        let at = Timestamp(week.start.0 + (rng.f64() * span as f64) as i64);
        if at > config.end {
            return false;
        }
        let n = d.diagnoses.len() + 1;
        let icd10 = if eye {
            ["T15.0", "T15.1", "T15.8"][rng.below(3) as usize]
        } else {
            ["S61.0", "S62.6", "S93.4", "M54.5", "T23.2"][rng.below(5) as usize]
        };
        d.diagnoses.push(DiagnosisRow {
            diagnosis_id: format!("D{n:08}"),
            patient_id: person.to_string(),
            icd10,
            hospital: HOSPITALS[rng.below(HOSPITALS.len() as u64) as usize],
            diagnosed_at: at,
        });
        if rng.f64() < config.claim_share {
            let n = d.claims.len() + 1;
            d.claims.push(ClaimRow {
                claim_id: format!("C{n:08}"),
                worker_id: person.to_string(),
                workplace_id: workplace.workplace_id.clone(),
                injury: if eye {
                    "eye"
                } else {
                    ["hand", "foot", "back", "burn"][rng.below(4) as usize]
                },
                injured_at: at,
            });
            return true;
        }
        false
    };
    // The background: eye injuries at metal workplaces at the base rate, other injuries
    // everywhere, and eye injuries at a lower rate in other industries.
    let workplaces = d.workplaces.clone();
    for week in &weeks {
        for w in &workplaces {
            let staff = &workers[&w.workplace_id];
            let eye_rate = if w.industry == "metal_products" {
                config.eye_rate
            } else {
                config.eye_rate / 5.0
            };
            for _ in 0..poisson(&mut rng, eye_rate * staff.len() as f64) {
                let person = &staff[rng.below(staff.len() as u64) as usize];
                case(&mut d, &mut rng, w, person, week, true);
            }
            for _ in 0..poisson(&mut rng, 0.002 * staff.len() as f64) {
                let person = &staff[rng.below(staff.len() as u64) as usize];
                case(&mut d, &mut rng, w, person, week, false);
            }
        }
        // Residents who are not migrant workers, eye injuries among them.
        for _ in 0..poisson(&mut rng, 3.0 * townships.len() as f64) {
            let n = d.diagnoses.len() + 1;
            let span = (week.end.0.min(config.end.0) - week.start.0).max(1);
            let at = Timestamp(week.start.0 + (rng.f64() * span as f64) as i64);
            d.diagnoses.push(DiagnosisRow {
                diagnosis_id: format!("D{n:08}"),
                patient_id: format!("33{:016}", rng.below(1_000_000)),
                icd10: ["T15.0", "J06.9", "K29.7", "I10"][rng.below(4) as usize],
                hospital: HOSPITALS[rng.below(HOSPITALS.len() as u64) as usize],
                diagnosed_at: at,
            });
        }
    }
    // The cluster.
    if let Some(cluster) = &config.cluster {
        let t = cluster.township.unwrap_or_else(|| {
            metal_workers_by_township
                .iter()
                .max_by_key(|(t, n)| (**n, std::cmp::Reverse(**t)))
                .map_or(0, |(t, _)| *t)
        });
        let township = townships[t];
        let mut shops: Vec<&WorkplaceRow> = workplaces
            .iter()
            .filter(|w| w.township == township && w.industry == "metal_products")
            .collect();
        shops.sort_by_key(|w| std::cmp::Reverse(workers[&w.workplace_id].len()));
        shops.truncate(3);
        let total = cluster.high_weeks + cluster.low_weeks;
        for k in 0..total {
            let Some(week) = weeks.get((cluster.start_week + k) as usize) else {
                break;
            };
            let per_week = if k < cluster.high_weeks {
                cluster.high_per_week
            } else {
                cluster.low_per_week
            };
            let cases = per_week.saturating_sub(1) + rng.below(3) as u32;
            let mut claimed = 0;
            let mut people = HashSet::new();
            for _ in 0..cases {
                let shop = shops[rng.below(shops.len() as u64) as usize];
                let staff = &workers[&shop.workplace_id];
                let person = &staff[rng.below(staff.len() as u64) as usize];
                if !people.insert(person.clone()) {
                    continue;
                }
                if case(&mut d, &mut rng, shop, person, week, true) {
                    claimed += 1;
                }
            }
            d.truth.push(Planted {
                rule: "eye_injuries",
                area: township.to_string(),
                first_day: week.first_day,
                start: k == 0,
            });
            if claimed > 0 {
                d.truth.push(Planted {
                    rule: "eye_injury_claims",
                    area: township.to_string(),
                    first_day: week.first_day,
                    start: k == 0,
                });
            }
        }
    }
    d.diagnoses.sort_by_key(|r| r.diagnosed_at);
    d.claims.sort_by_key(|r| r.injured_at);
    d
}

/// A shipped rule's counts per (area, week), computed from the rows as its query does.
pub fn counts(d: &District, rule: &str) -> BTreeMap<(String, Date), u64> {
    let workplace: HashMap<&str, &WorkplaceRow> = d
        .workplaces
        .iter()
        .map(|w| (w.workplace_id.as_str(), w))
        .collect();
    let week_of = |at: Timestamp| {
        d.weeks
            .iter()
            .find(|w| w.start <= at && at < w.end)
            .map(|w| w.first_day)
    };
    let mut out: BTreeMap<(String, Date), u64> = BTreeMap::new();
    match rule {
        "eye_injuries" => {
            let employer: HashMap<&str, &str> = d
                .migrants
                .iter()
                .map(|m| (m.person_id.as_str(), m.workplace_id.as_str()))
                .collect();
            let mut distinct: HashSet<(String, Date, &str)> = HashSet::new();
            for r in d.diagnoses.iter().filter(|r| r.icd10.starts_with("T15")) {
                let Some(w) = employer.get(r.patient_id.as_str()).map(|w| workplace[w]) else {
                    continue;
                };
                if w.industry != "metal_products" {
                    continue;
                }
                if let Some(week) = week_of(r.diagnosed_at)
                    && distinct.insert((w.township.to_string(), week, &r.patient_id))
                {
                    *out.entry((w.township.to_string(), week)).or_default() += 1;
                }
            }
        }
        "eye_injury_claims" => {
            for c in d.claims.iter().filter(|c| c.injury == "eye") {
                let w = workplace[c.workplace_id.as_str()];
                if w.industry != "metal_products" {
                    continue;
                }
                if let Some(week) = week_of(c.injured_at) {
                    *out.entry((w.township.to_string(), week)).or_default() += 1;
                }
            }
        }
        _ => {}
    }
    out
}
