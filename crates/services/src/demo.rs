//! The demo city's people: residents in households, communities split into grids with a
//! worker each, the facts departments publish about them (a first load, then a month of
//! changes: births, deaths, certificates, income assessments, jobs lost and found, pensions,
//! moves), who already receives what, and the truth beside it: every service and resident
//! that should get a task, and from which day.
//!
//! The truth is decided here by hand-written predicates that mirror the shipped rule files,
//! not by the rule engine, and by the protocol the engine documents (each day's morning for
//! everyone, then each change for the residents it touches), so a test comparing the scene's
//! tasks with it checks the engine, the facts' joining and the scene together.

use std::collections::{BTreeMap, HashSet};

use citybrain_core::rng::Rng;
use citybrain_core::{Date, GeoPoint, TimeZone, Timestamp};
use serde::{Deserialize, Serialize};

use crate::alarms::near;
use crate::facts::{CertificateRow, EnrolmentRow, IncomeRow, InsuranceRow, ResidentRow, Update};

/// Residents per grid, and grids per community.
const GRID_SIZE: u64 = 400;
const GRIDS_PER_COMMUNITY: u64 = 8;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub seed: u64,
    /// Residents at the first load (1,000,000 is scale 1; the demo city loads a hundredth).
    pub residents: u64,
    /// The first day of changes; the first load is dated the day before.
    pub first_day: Date,
    pub days: u32,
    pub zone: TimeZone,
    /// Where the city is: grids lie within `radius_m` of it.
    pub centre: GeoPoint,
    pub radius_m: f64,
}

impl DemoConfig {
    /// The radius of one grid: the city's disc shared out among its grids.
    pub fn grid_radius_m(&self) -> f64 {
        self.radius_m / (self.residents.div_ceil(GRID_SIZE).max(1) as f64).sqrt()
    }
}

/// A grid and its worker (`community.grids`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridRow {
    pub grid: String,
    pub community: String,
    pub centre: GeoPoint,
    pub worker_id: String,
    pub worker_name: String,
}

/// A task the scene must open: this service for this resident, from this day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Expected {
    pub service: String,
    pub resident_id: String,
    #[serde(with = "citybrain_core::time::date_as_text")]
    pub day: Date,
}

/// The generated people.
#[derive(Debug, Clone, Default)]
pub struct Demo {
    pub grids: Vec<GridRow>,
    /// The first load, dated the day before `first_day`.
    pub first_load: Vec<Update>,
    /// Each day's changes, in time order.
    pub days: Vec<(Date, Vec<Update>)>,
    pub truth: Vec<Expected>,
}

/// The shipped services the truth knows, in the order of [`crate::rules::SHIPPED_RULES`].
pub const SERVICES: &[&str] = &[
    "old_age_allowance_80",
    "old_age_allowance_90",
    "centenarian_allowance",
    "elderly_card",
    "free_transit_70",
    "elderly_health_check",
    "living_alone_care",
    "home_care_subsidy",
    "minimum_living",
    "low_income_margin",
    "medical_aid",
    "disability_living_subsidy",
    "severe_disability_care",
    "disabled_employment_aid",
    "childcare_subsidy",
    "resident_basic_pension",
    "employment_aid",
    "elderly_meal_aid",
];

/// One resident's facts as the truth sees them (`income` is the household's).
struct Facts {
    age: i64,
    local: bool,
    members: usize,
    level: i64,
    income: Option<i64>,
    employed: bool,
    pension: i64,
}

/// The shipped rules, written again by hand (money in fen).
fn eligible(service: &str, f: &Facts) -> bool {
    let low = |line: i64| f.income.is_some_and(|i| i < line);
    let working_age = (18..60).contains(&f.age);
    match service {
        "old_age_allowance_80" => (80..90).contains(&f.age) && f.local,
        "old_age_allowance_90" => (90..100).contains(&f.age) && f.local,
        "centenarian_allowance" => f.age >= 100 && f.local,
        "elderly_card" => f.age >= 60,
        "free_transit_70" => f.age >= 70 && f.local,
        "elderly_health_check" => f.age >= 65,
        "living_alone_care" => f.age >= 75 && f.members == 1,
        "home_care_subsidy" => {
            (f.age >= 80 && low(252_000)) || (f.age >= 60 && (1..=2).contains(&f.level))
        }
        "minimum_living" => f.local && low(126_000),
        "low_income_margin" => f.local && f.income.is_some_and(|i| (126_000..189_000).contains(&i)),
        "medical_aid" => low(189_000),
        "disability_living_subsidy" => f.level >= 1 && low(189_000),
        "severe_disability_care" => (1..=2).contains(&f.level),
        "disabled_employment_aid" => f.level >= 3 && working_age && !f.employed,
        "childcare_subsidy" => f.age < 3,
        "resident_basic_pension" => f.age >= 60 && f.local && f.pension == 0,
        "employment_aid" => working_age && !f.employed && low(189_000),
        "elderly_meal_aid" => f.age >= 80 || (f.age >= 60 && low(189_000)),
        other => panic!("the demo's truth does not know the service {other}"),
    }
}

struct Person {
    id: String,
    name: String,
    sex: &'static str,
    birth: Date,
    household: usize,
    grid: usize,
    home: GeoPoint,
    living: bool,
    level: i64,
    employed: bool,
    pension: i64,
}

struct Household {
    id: String,
    local: bool,
    income: Option<i64>,
    members: Vec<usize>,
}

struct World {
    people: Vec<Person>,
    households: Vec<Household>,
    grids: Vec<GridRow>,
    enrolled: HashSet<(usize, usize)>,
    expected: BTreeMap<(usize, usize), Date>,
}

impl World {
    fn facts(&self, p: usize, day: Date) -> Facts {
        let person = &self.people[p];
        let h = &self.households[person.household];
        Facts {
            age: day.years_since(person.birth),
            local: h.local,
            members: h.members.len(),
            level: person.level,
            income: h.income,
            employed: person.employed,
            pension: person.pension,
        }
    }

    /// Decides `p` on `day` as the engine's protocol says: a task for every service they
    /// are eligible for and do not receive, once.
    fn decide(&mut self, p: usize, day: Date) {
        if !self.people[p].living {
            return;
        }
        let facts = self.facts(p, day);
        for (s, name) in SERVICES.iter().enumerate() {
            if eligible(name, &facts) && !self.enrolled.contains(&(s, p)) {
                self.expected.entry((s, p)).or_insert(day);
            }
        }
    }

    fn resident_row(&self, p: usize, at: Timestamp) -> Update {
        let person = &self.people[p];
        let grid = &self.grids[person.grid];
        Update::Resident(ResidentRow {
            resident_id: person.id.clone(),
            name: person.name.clone(),
            sex: person.sex.to_string(),
            birth_date: person.birth,
            household_id: self.households[person.household].id.clone(),
            community: grid.community.clone(),
            grid: grid.grid.clone(),
            home: Some(person.home),
            local_hukou: self.households[person.household].local,
            status: if person.living {
                "resident"
            } else {
                "deceased"
            }
            .into(),
            recorded_at: at,
        })
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "高", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "霞", "平", "刚", "桂英", "建华", "文", "华", "玉兰", "志强", "晓东", "海燕",
    "子涵",
];
const CATEGORIES: &[&str] = &[
    "physical",
    "visual",
    "hearing",
    "speech",
    "intellectual",
    "mental",
];

fn name(rng: &mut Rng) -> String {
    let s = SURNAMES[rng.below(SURNAMES.len() as u64) as usize];
    let g = GIVEN[rng.below(GIVEN.len() as u64) as usize];
    format!("{s}{g}")
}

/// A birth date `age` full years before `day` (any day of that year of life).
fn born(rng: &mut Rng, day: Date, age: i64) -> Date {
    let (y, m, d) = day.ymd();
    let anniversary = Date::from_ymd(y - age, m, d.min(28));
    Date(anniversary.0 - rng.below(365) as i32)
}

fn older_age(rng: &mut Rng) -> i64 {
    // 60 and over: 11% of them 80+, 2.5% 90+, a few centenarians.
    (60.0 - 9.0 * (1.0 - rng.f64()).ln()).min(106.0) as i64
}

fn level(rng: &mut Rng) -> i64 {
    match rng.below(20) {
        0..=1 => 1,
        2..=5 => 2,
        6..=12 => 3,
        _ => 4,
    }
}

fn income(rng: &mut Rng) -> i64 {
    // Log-normal around 4,000 yuan a month per person, to the yuan.
    let yuan = 4_000.0 * (0.6 * rng.normal()).exp();
    (yuan.round() as i64).max(0) * 100
}

/// Generates the people (see the module).
pub fn generate(config: &DemoConfig) -> Demo {
    let mut rng = Rng::new(config.seed ^ 0x005e_1ce5);
    let grids_n = config.residents.div_ceil(GRID_SIZE).max(1);
    let mut grids = Vec::new();
    let grid_radius = config.grid_radius_m();
    for g in 0..grids_n {
        let community = format!("C{:04}", g / GRIDS_PER_COMMUNITY + 1);
        let grid = format!("{community}-G{}", g % GRIDS_PER_COMMUNITY + 1);
        grids.push(GridRow {
            worker_id: format!("W{:05}", g + 1),
            worker_name: name(&mut rng),
            centre: near(&mut rng, config.centre, config.radius_m),
            grid,
            community,
        });
    }
    let mut world = World {
        people: Vec::new(),
        households: Vec::new(),
        grids,
        enrolled: HashSet::new(),
        expected: BTreeMap::new(),
    };
    let load_day = Date(config.first_day.0 - 1);
    let tz = &config.zone;
    // Households until the residents are all placed.
    while (world.people.len() as u64) < config.residents {
        let h = world.households.len();
        let grid = rng.below(grids_n) as usize;
        let home = near(&mut rng, world.grids[grid].centre, grid_radius);
        let kind = rng.f64();
        let ages: Vec<i64> = if kind < 0.22 {
            (0..1 + rng.below(2)).map(|_| older_age(&mut rng)).collect()
        } else if kind < 0.32 {
            vec![18 + rng.below(42) as i64]
        } else {
            let mut a = vec![25 + rng.below(31) as i64, 25 + rng.below(31) as i64];
            for _ in 0..rng.below(3) {
                a.push(rng.below(18) as i64);
            }
            if rng.f64() < 0.15 {
                a.push(older_age(&mut rng));
            }
            a
        };
        let hh_income = income(&mut rng);
        let assessed = rng.f64() < if hh_income < 260_000 { 0.6 } else { 0.1 };
        world.households.push(Household {
            id: format!("H{:07}", h + 1),
            local: rng.f64() < 0.7,
            income: assessed.then_some(hh_income),
            members: Vec::new(),
        });
        for age in ages {
            let p = world.people.len();
            let disabled = rng.f64() < if age >= 60 { 0.12 } else { 0.05 };
            let employed = match age {
                18..60 => rng.f64() < if disabled { 0.35 } else { 0.78 },
                60..70 => rng.f64() < 0.05,
                _ => false,
            };
            let pension = if age >= 60 && rng.f64() < 0.7 {
                (2_000 + rng.below(5_000) as i64) * 100
            } else {
                0
            };
            world.people.push(Person {
                id: format!("R{:08}", p + 1),
                name: name(&mut rng),
                sex: if rng.below(2) == 0 { "F" } else { "M" },
                birth: born(&mut rng, load_day, age),
                household: h,
                grid,
                home: near(&mut rng, home, 15.0),
                living: true,
                level: if disabled { level(&mut rng) } else { 0 },
                employed,
                pension,
            });
            world.households[h].members.push(p);
        }
    }
    // The first load: every fact, spread over the day before the first day.
    let load_start = tz.day_start(load_day).0;
    let mut first_load = Vec::new();
    let n = world.people.len() as i64;
    let stamp = |i: i64, of: i64| Timestamp(load_start + i * (86_000_000_000 / of.max(1)));
    for p in 0..world.people.len() {
        first_load.push(world.resident_row(p, stamp(p as i64, n)));
    }
    for (p, person) in world.people.iter().enumerate() {
        if person.level > 0 {
            first_load.push(Update::Certificate(CertificateRow {
                certificate_id: format!("D{:08}", p + 1),
                resident_id: person.id.clone(),
                level: person.level,
                category: CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize].into(),
                status: "valid".into(),
                issued_at: stamp(p as i64, n),
            }));
        }
        if load_day.years_since(person.birth) >= 16 {
            first_load.push(Update::Insurance(InsuranceRow {
                resident_id: person.id.clone(),
                employed: person.employed,
                pension: person.pension,
                updated_at: stamp(p as i64, n),
            }));
        }
    }
    let hn = world.households.len() as i64;
    for (h, household) in world.households.iter().enumerate() {
        if let Some(income) = household.income {
            first_load.push(Update::Income(IncomeRow {
                assessment_id: format!("A{:08}", h + 1),
                household_id: household.id.clone(),
                income_per_person: income,
                assessed_at: stamp(h as i64, hn),
            }));
        }
    }
    // Who already receives what: nine in ten of those eligible the day before.
    let mut enrolments = 0;
    for p in 0..world.people.len() {
        let facts = world.facts(p, load_day);
        for (s, service) in SERVICES.iter().enumerate() {
            if eligible(service, &facts) && rng.f64() < 0.9 {
                world.enrolled.insert((s, p));
                enrolments += 1;
                first_load.push(Update::Enrolment(EnrolmentRow {
                    enrolment_id: format!("E{enrolments:08}"),
                    resident_id: world.people[p].id.clone(),
                    service: service.to_string(),
                    enrolled_at: stamp(p as i64, n),
                }));
            }
        }
    }
    // The month: each morning everyone is decided, then each change as it comes.
    let per_day = |rate_per_10k: f64, rng: &mut Rng| -> u64 {
        let mean = rate_per_10k * config.residents as f64 / 10_000.0;
        let whole = mean.floor();
        whole as u64 + u64::from(rng.f64() < mean - whole)
    };
    let mut days = Vec::new();
    let (mut certificates, mut assessments) = (world.people.len(), world.households.len());
    for d in 0..config.days {
        let day = Date(config.first_day.0 + d as i32);
        for p in 0..world.people.len() {
            world.decide(p, day);
        }
        let start = tz.day_start(day).0;
        let mut touched = HashSet::new();
        let mut changes: Vec<(i64, usize, Update)> = Vec::new();
        // A change of time of day, and a household not changed yet today.
        let mut pick = |rng: &mut Rng, world: &World, filter: &dyn Fn(&Person) -> bool| {
            for _ in 0..50 {
                let p = rng.below(world.people.len() as u64) as usize;
                let person = &world.people[p];
                if person.living && filter(person) && touched.insert(person.household) {
                    return Some(p);
                }
            }
            None
        };
        let kinds: [(f64, u8); 8] = [
            (1.0, 0), // a birth
            (0.6, 1), // a death, mostly of the old
            (0.6, 2), // a certificate issued (or changed)
            (2.0, 3), // an income assessment
            (1.5, 4), // a job lost
            (1.0, 5), // a job found
            (0.3, 6), // a pension starts
            (0.5, 7), // a move to another grid
        ];
        for (rate, kind) in kinds {
            for _ in 0..per_day(rate, &mut rng) {
                let at = start + (8 * 3600 + rng.below(10 * 3600) as i64) * 1_000_000;
                let ts = Timestamp(at);
                let p = match kind {
                    0 => pick(&mut rng, &world, &|q| {
                        world.households[q.household].members.len() >= 2
                    }),
                    1 => pick(&mut rng, &world, &|q| day.years_since(q.birth) >= 70),
                    2 => pick(&mut rng, &world, &|_| true),
                    3 => pick(&mut rng, &world, &|_| true),
                    4 => pick(&mut rng, &world, &|q| q.employed),
                    5 => pick(&mut rng, &world, &|q| {
                        !q.employed && (18..60).contains(&day.years_since(q.birth))
                    }),
                    6 => pick(&mut rng, &world, &|q| {
                        q.pension == 0 && day.years_since(q.birth) >= 60
                    }),
                    _ => pick(&mut rng, &world, &|_| true),
                };
                let Some(p) = p else { continue };
                let update = match kind {
                    0 => {
                        let h = world.people[p].household;
                        let child = world.people.len();
                        world.people.push(Person {
                            id: format!("R{:08}", child + 1),
                            name: name(&mut rng),
                            sex: if rng.below(2) == 0 { "F" } else { "M" },
                            birth: day,
                            household: h,
                            grid: world.people[p].grid,
                            home: world.people[p].home,
                            living: true,
                            level: 0,
                            employed: false,
                            pension: 0,
                        });
                        world.households[h].members.push(child);
                        changes.push((at, child, world.resident_row(child, ts)));
                        continue;
                    }
                    1 => {
                        world.people[p].living = false;
                        let h = world.people[p].household;
                        world.households[h].members.retain(|m| *m != p);
                        world.resident_row(p, ts)
                    }
                    2 => {
                        certificates += 1;
                        let level = level(&mut rng);
                        world.people[p].level = level;
                        Update::Certificate(CertificateRow {
                            certificate_id: format!("D{certificates:08}"),
                            resident_id: world.people[p].id.clone(),
                            level,
                            category: CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize]
                                .into(),
                            status: "valid".into(),
                            issued_at: ts,
                        })
                    }
                    3 => {
                        assessments += 1;
                        let h = world.people[p].household;
                        let income = match world.households[h].income {
                            Some(i) => (i as f64 * (0.55 + 0.75 * rng.f64())) as i64 / 100 * 100,
                            None => income(&mut rng) / 2,
                        };
                        world.households[h].income = Some(income);
                        Update::Income(IncomeRow {
                            assessment_id: format!("A{assessments:08}"),
                            household_id: world.households[h].id.clone(),
                            income_per_person: income,
                            assessed_at: ts,
                        })
                    }
                    4..=6 => {
                        let person = &mut world.people[p];
                        match kind {
                            4 => person.employed = false,
                            5 => person.employed = true,
                            _ => person.pension = (1_800 + rng.below(3_000) as i64) * 100,
                        }
                        Update::Insurance(InsuranceRow {
                            resident_id: person.id.clone(),
                            employed: person.employed,
                            pension: person.pension,
                            updated_at: ts,
                        })
                    }
                    _ => {
                        let grid = rng.below(world.grids.len() as u64) as usize;
                        let home = near(&mut rng, world.grids[grid].centre, grid_radius);
                        let person = &mut world.people[p];
                        person.grid = grid;
                        person.home = home;
                        world.resident_row(p, ts)
                    }
                };
                changes.push((at, p, update));
            }
        }
        changes.sort_by_key(|c| c.0);
        let mut updates = Vec::with_capacity(changes.len());
        for (_, p, update) in changes {
            // A change is decided for the household it touches, as the engine does.
            let members = world.households[world.people[p].household].members.clone();
            for m in members.into_iter().chain([p]) {
                world.decide(m, day);
            }
            updates.push(update);
        }
        days.push((day, updates));
    }
    let truth = world
        .expected
        .iter()
        .map(|((s, p), day)| Expected {
            service: SERVICES[*s].to_string(),
            resident_id: world.people[*p].id.clone(),
            day: *day,
        })
        .collect();
    Demo {
        grids: world.grids,
        first_load,
        days,
        truth,
    }
}

/// Updates as NDJSON bodies per dataset, in the order of their first appearance.
pub fn ndjson_by_dataset(updates: &[Update]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for u in updates {
        let (dataset, line) = match u {
            Update::Resident(r) => (crate::RESIDENTS, serde_json::to_vec(r)),
            Update::Certificate(r) => (crate::CERTIFICATES, serde_json::to_vec(r)),
            Update::Income(r) => (crate::INCOMES, serde_json::to_vec(r)),
            Update::Insurance(r) => (crate::INSURANCE, serde_json::to_vec(r)),
            Update::Enrolment(r) => (crate::ENROLMENTS, serde_json::to_vec(r)),
        };
        let line = line.expect("rows serialise");
        let body = match out.iter_mut().find(|(d, _)| *d == dataset) {
            Some((_, body)) => body,
            None => {
                out.push((dataset, Vec::new()));
                &mut out.last_mut().expect("just pushed").1
            }
        };
        body.extend_from_slice(&line);
        body.push(b'\n');
    }
    out
}

/// The facts codes read, for the demo's residents, as NDJSON per dataset: talent facts for
/// a third of those of working age, screening results of the last ten days before `day`
/// for a few (some positive, some of those negative on the days after), close contacts for
/// fewer still.
pub fn code_facts(
    demo: &Demo,
    seed: u64,
    day: Date,
    zone: &TimeZone,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Rng::new(seed ^ 0x000c_0de5);
    let (mut talent, mut screening, mut contacts) = (Vec::new(), Vec::new(), Vec::new());
    let at = |d: i32, rng: &mut Rng| {
        Timestamp(zone.day_start(Date(d)).0 + (8 * 3600 + rng.below(10 * 3600) as i64) * 1_000_000)
    };
    let line = |out: &mut Vec<u8>, v: serde_json::Value| {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    };
    for u in &demo.first_load {
        let Update::Resident(r) = u else { continue };
        let age = day.years_since(r.birth_date);
        if (22..60).contains(&age) && rng.f64() < 0.35 {
            let pick = |rng: &mut Rng, table: &[(&'static str, f64)]| {
                let mut x = rng.f64();
                for (name, p) in table {
                    if x < *p {
                        return *name;
                    }
                    x -= p;
                }
                table[table.len() - 1].0
            };
            let education = pick(
                &mut rng,
                &[
                    ("phd", 0.03),
                    ("master", 0.12),
                    ("bachelor", 0.45),
                    ("college", 0.25),
                    ("other", 0.15),
                ],
            );
            let title = pick(
                &mut rng,
                &[
                    ("senior", 0.03),
                    ("deputy_senior", 0.07),
                    ("intermediate", 0.2),
                    ("junior", 0.3),
                    ("none", 0.4),
                ],
            );
            let salary_yuan = (120_000.0 * (0.6 * rng.normal()).exp()).round() as i64;
            line(
                &mut talent,
                serde_json::json!({"resident_id": r.resident_id, "education": education, "title": title,
                    "annual_salary": salary_yuan * 100, "updated_at": at(day.0 - 30, &mut rng).to_string()}),
            );
        }
        if rng.f64() < 0.03 {
            let first = day.0 - 1 - rng.below(10) as i32;
            let positive = rng.f64() < 0.05;
            line(
                &mut screening,
                serde_json::json!({"resident_id": r.resident_id, "positive": positive,
                    "tested_at": at(first, &mut rng).to_string()}),
            );
            if positive {
                for d in first + 1..day.0 {
                    if rng.f64() < 0.6 {
                        line(
                            &mut screening,
                            serde_json::json!({"resident_id": r.resident_id, "positive": false,
                                "tested_at": at(d, &mut rng).to_string()}),
                        );
                    }
                }
            }
        }
        if rng.f64() < 0.005 {
            line(
                &mut contacts,
                serde_json::json!({"resident_id": r.resident_id,
                    "contact_at": at(day.0 - 1 - rng.below(5) as i32, &mut rng).to_string()}),
            );
        }
    }
    vec![
        (crate::TALENT, talent),
        (crate::SCREENING, screening),
        (crate::CONTACTS, contacts),
    ]
}

/// Bookings at `hotel` (`tourism.bookings`) for one resident in a hundred, covering `day`,
/// as NDJSON.
pub fn bookings(demo: &Demo, seed: u64, day: Date, zone: &TimeZone, hotel: &str) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x0b00_c1e5);
    let mut out = Vec::new();
    let mut n = 0;
    for u in &demo.first_load {
        let Update::Resident(r) = u else { continue };
        if rng.f64() >= 0.01 {
            continue;
        }
        n += 1;
        let nights = 1 + rng.below(4) as i64;
        let check_in = Date(day.0 - rng.below(nights as u64) as i32);
        let line = serde_json::json!({
            "booking_id": format!("B{n:07}"), "resident_id": r.resident_id, "hotel": hotel,
            "room": format!("{}{:02}", 2 + rng.below(8), 1 + rng.below(30)),
            "check_in": check_in.to_string(), "nights": nights,
            "booked_at": Timestamp(zone.day_start(check_in).0 - 86_400_000_000 * 3).to_string(),
        });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}
