//! The residents' facts as the departments publish them, joined into one record per resident:
//! the registry's row (birth, household, grid, status), the newest disability certificate, the
//! household's newest income assessment, social insurance. Each source row carries its time;
//! an older row than the one held is ignored, so a replay or a late correction from before
//! leaves the newest fact in place.

use std::collections::HashMap;

use citybrain_core::{Date, GeoPoint, Timestamp};
use citybrain_rules::Value;
use citybrain_rules::eval::Ratio;
use serde::{Deserialize, Serialize};

/// A registry row (`registry.residents`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidentRow {
    pub resident_id: String,
    pub name: String,
    pub sex: String,
    #[serde(with = "citybrain_core::time::date_as_text")]
    pub birth_date: Date,
    pub household_id: String,
    pub community: String,
    pub grid: String,
    pub home: Option<GeoPoint>,
    pub local_hukou: bool,
    /// `resident`, `moved_out` or `deceased`.
    pub status: String,
    #[serde(with = "citybrain_core::time::as_text")]
    pub recorded_at: Timestamp,
}

/// A disability certificate (`civil.disability_certificates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateRow {
    pub certificate_id: String,
    pub resident_id: String,
    pub level: i64,
    pub category: String,
    /// `valid` or `revoked`.
    pub status: String,
    #[serde(with = "citybrain_core::time::as_text")]
    pub issued_at: Timestamp,
}

/// A household income assessment (`civil.household_income`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomeRow {
    pub assessment_id: String,
    pub household_id: String,
    /// Monthly, per member, in fen.
    pub income_per_person: i64,
    #[serde(with = "citybrain_core::time::as_text")]
    pub assessed_at: Timestamp,
}

/// Social insurance (`hr.social_insurance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsuranceRow {
    pub resident_id: String,
    pub employed: bool,
    /// Monthly, in fen.
    pub pension: i64,
    #[serde(with = "citybrain_core::time::as_text")]
    pub updated_at: Timestamp,
}

/// A service a resident already receives (`civil.enrolments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolmentRow {
    pub enrolment_id: String,
    pub resident_id: String,
    pub service: String,
    #[serde(with = "citybrain_core::time::as_text")]
    pub enrolled_at: Timestamp,
}

/// One fact as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Resident(ResidentRow),
    Certificate(CertificateRow),
    Income(IncomeRow),
    Insurance(InsuranceRow),
    Enrolment(EnrolmentRow),
}

impl Update {
    /// When the fact became true, by its source.
    pub fn at(&self) -> Timestamp {
        match self {
            Update::Resident(r) => r.recorded_at,
            Update::Certificate(c) => c.issued_at,
            Update::Income(i) => i.assessed_at,
            Update::Insurance(i) => i.updated_at,
            Update::Enrolment(e) => e.enrolled_at,
        }
    }
}

/// One resident's facts.
#[derive(Debug, Clone)]
pub struct Resident {
    pub id: String,
    /// Whether the registry has a row for them (facts of other departments may come first).
    pub registered: bool,
    pub name: String,
    pub birth: Date,
    pub household: Option<u32>,
    pub community: String,
    pub grid: String,
    pub home: Option<GeoPoint>,
    pub local_hukou: bool,
    /// Registered and living here (not moved out, not deceased).
    pub living: bool,
    /// 0: no valid certificate; else 1 (most severe) to 4.
    pub disability_level: i64,
    pub employed: bool,
    pub pension: i64,
    recorded_at: Option<Timestamp>,
    certificate_at: Option<Timestamp>,
    insurance_at: Option<Timestamp>,
}

impl Resident {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            registered: false,
            name: String::new(),
            birth: Date(0),
            household: None,
            community: String::new(),
            grid: String::new(),
            home: None,
            local_hukou: false,
            living: false,
            disability_level: 0,
            employed: false,
            pension: 0,
            recorded_at: None,
            certificate_at: None,
            insurance_at: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Household {
    income: Option<i64>,
    income_at: Option<Timestamp>,
    /// Living residents registered in it.
    members: Vec<u32>,
}

/// The facts a service rule may read, with their types in the rule language; a rule that
/// declares another input is refused when loaded.
pub const FACTS: &[(&str, &str, &str)] = &[
    (
        "age",
        "int",
        "full years on the day decided (from registry.residents birth_date)",
    ),
    (
        "local_hukou",
        "bool",
        "household registration in this city (registry.residents)",
    ),
    (
        "household_members",
        "int",
        "living residents registered in the household (registry.residents)",
    ),
    (
        "disability_level",
        "int",
        "0 without a valid certificate, else 1 (most severe) to 4 (civil.disability_certificates)",
    ),
    (
        "income_assessed",
        "bool",
        "the household's income has been assessed (civil.household_income)",
    ),
    (
        "income_per_person",
        "money",
        "the newest assessment's monthly income per member; 0 when never assessed",
    ),
    (
        "employed",
        "bool",
        "contributing as an employee (hr.social_insurance)",
    ),
    (
        "pension",
        "money",
        "monthly pension from work; 0 when none (hr.social_insurance)",
    ),
];

/// Every resident's facts, by dense index.
#[derive(Debug, Clone, Default)]
pub struct Population {
    residents: Vec<Resident>,
    by_id: HashMap<String, u32>,
    households: Vec<Household>,
    household_ids: HashMap<String, u32>,
}

impl Population {
    pub fn len(&self) -> usize {
        self.residents.len()
    }
    pub fn is_empty(&self) -> bool {
        self.residents.is_empty()
    }
    pub fn get(&self, index: u32) -> &Resident {
        &self.residents[index as usize]
    }
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }
    pub fn residents(&self) -> &[Resident] {
        &self.residents
    }

    fn resident(&mut self, id: &str) -> u32 {
        if let Some(i) = self.by_id.get(id) {
            return *i;
        }
        let i = self.residents.len() as u32;
        self.residents.push(Resident::new(id));
        self.by_id.insert(id.to_string(), i);
        i
    }

    fn household(&mut self, id: &str) -> u32 {
        if let Some(i) = self.household_ids.get(id) {
            return *i;
        }
        let i = self.households.len() as u32;
        self.households.push(Household::default());
        self.household_ids.insert(id.to_string(), i);
        i
    }

    /// Applies one fact; returns the residents whose facts changed (a household's members
    /// for a change of its income or of who lives in it). An enrolment changes no fact.
    pub fn apply(&mut self, update: &Update) -> Vec<u32> {
        let newer = |held: Option<Timestamp>, at: Timestamp| held.is_none_or(|h| at >= h);
        match update {
            Update::Resident(row) => {
                let i = self.resident(&row.resident_id);
                if !newer(self.residents[i as usize].recorded_at, row.recorded_at) {
                    return Vec::new();
                }
                let household = self.household(&row.household_id);
                let living = row.status == "resident";
                let old = &self.residents[i as usize];
                let old_household = old.household.filter(|_| old.living);
                if let Some(h) = old_household {
                    self.households[h as usize].members.retain(|m| *m != i);
                }
                if living {
                    self.households[household as usize].members.push(i);
                }
                let r = &mut self.residents[i as usize];
                r.registered = true;
                r.name.clone_from(&row.name);
                r.birth = row.birth_date;
                r.household = Some(household);
                r.community.clone_from(&row.community);
                r.grid.clone_from(&row.grid);
                r.home = row.home;
                r.local_hukou = row.local_hukou;
                r.living = living;
                r.recorded_at = Some(row.recorded_at);
                let mut affected = self.households[household as usize].members.clone();
                if let Some(h) = old_household.filter(|h| *h != household) {
                    affected.extend(&self.households[h as usize].members);
                }
                if !affected.contains(&i) {
                    affected.push(i);
                }
                affected
            }
            Update::Certificate(row) => {
                let i = self.resident(&row.resident_id);
                let r = &mut self.residents[i as usize];
                if !newer(r.certificate_at, row.issued_at) {
                    return Vec::new();
                }
                r.certificate_at = Some(row.issued_at);
                r.disability_level = if row.status == "valid" && (1..=4).contains(&row.level) {
                    row.level
                } else {
                    0
                };
                vec![i]
            }
            Update::Income(row) => {
                let h = self.household(&row.household_id);
                let hh = &mut self.households[h as usize];
                if !newer(hh.income_at, row.assessed_at) {
                    return Vec::new();
                }
                hh.income = Some(row.income_per_person);
                hh.income_at = Some(row.assessed_at);
                hh.members.clone()
            }
            Update::Insurance(row) => {
                let i = self.resident(&row.resident_id);
                let r = &mut self.residents[i as usize];
                if !newer(r.insurance_at, row.updated_at) {
                    return Vec::new();
                }
                r.insurance_at = Some(row.updated_at);
                r.employed = row.employed;
                r.pension = row.pension;
                vec![i]
            }
            Update::Enrolment(row) => {
                self.resident(&row.resident_id);
                Vec::new()
            }
        }
    }

    /// A resident's facts on `day`, by the names of [`FACTS`].
    pub fn facts(&self, index: u32, day: Date) -> HashMap<String, Value> {
        let r = &self.residents[index as usize];
        let (income, members) = self.household_of(r);
        let num = |n: i64| Value::Num(Ratio::int(i128::from(n)));
        HashMap::from([
            ("age".to_string(), num(day.years_since(r.birth))),
            ("local_hukou".to_string(), Value::Bool(r.local_hukou)),
            ("household_members".to_string(), num(members)),
            ("disability_level".to_string(), num(r.disability_level)),
            ("income_assessed".to_string(), Value::Bool(income.is_some())),
            ("income_per_person".to_string(), num(income.unwrap_or(0))),
            ("employed".to_string(), Value::Bool(r.employed)),
            ("pension".to_string(), num(r.pension)),
        ])
    }

    /// The household's assessed income and its living members.
    fn household_of(&self, r: &Resident) -> (Option<i64>, i64) {
        match r.household {
            Some(h) => {
                let h = &self.households[h as usize];
                (h.income, h.members.len() as i64)
            }
            None => (None, 0),
        }
    }

    /// Every resident's facts on `day` as the fast evaluator's table (all residents, living
    /// or not: the caller skips who is not).
    pub fn table(&self, day: Date) -> citybrain_rules::fast::Table {
        let n = self.residents.len();
        let mut t = citybrain_rules::fast::Table::new(n);
        let mut age = Vec::with_capacity(n);
        let mut members = Vec::with_capacity(n);
        let mut assessed = Vec::with_capacity(n);
        let mut income = Vec::with_capacity(n);
        for r in &self.residents {
            let (inc, m) = self.household_of(r);
            age.push(day.years_since(r.birth));
            members.push(m);
            assessed.push(inc.is_some());
            income.push(inc.unwrap_or(0));
        }
        let col = |f: fn(&Resident) -> i64| self.residents.iter().map(f).collect::<Vec<_>>();
        let flag = |f: fn(&Resident) -> bool| self.residents.iter().map(f).collect::<Vec<_>>();
        // Lengths agree by construction.
        t.add_int("age", age).expect("one value per resident");
        t.add_bool("local_hukou", flag(|r| r.local_hukou))
            .expect("one value per resident");
        t.add_int("household_members", members)
            .expect("one value per resident");
        t.add_int("disability_level", col(|r| r.disability_level))
            .expect("one value per resident");
        t.add_bool("income_assessed", assessed)
            .expect("one value per resident");
        t.add_money("income_per_person", income)
            .expect("one value per resident");
        t.add_bool("employed", flag(|r| r.employed))
            .expect("one value per resident");
        t.add_money("pension", col(|r| r.pension))
            .expect("one value per resident");
        t
    }
}
