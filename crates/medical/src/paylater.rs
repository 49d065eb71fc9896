//! Treat first, pay later (先看病后付费): a patient with a credit line is treated without
//! paying at the desk; the day's visits, at any hospital, are consolidated into one bill,
//! payable within a window after the day ends, with a reminder before the deadline; a bill
//! unpaid at its deadline is overdue and suspends the patient's line until it is paid.
//! No I/O: the server's `paylater` scene feeds [`Book`] from the change feed, in the order
//! things happened, and stores what each step yields.
//!
//! The terms (docs/medical.md says how a city changes them, [`Terms`] holds the defaults):
//! 1. A visit is on credit only if the patient is insured (`insurance.members`, newest row
//!    `active`), their credit rating (`credit.ratings`, newest row) is not refused, no bill of
//!    theirs is overdue, and what they owe plus the visit stays within the limit. Otherwise
//!    it is declined with the first reason that applies, and paid at the desk as before.
//! 2. A visit on credit joins the patient's unpaid bill of the same local day, or opens one.
//! 3. A bill is due `window_hours` after its day ends; `remind_hours` before that, if it is
//!    not paid, a reminder is sent; at the deadline, unpaid, it is overdue.
//! 4. Payments (`health.visit_payments`) settle visits; a bill is paid when all of its visits
//!    are.
//!
//! Exactly once: every output has an id fixed by what it is about (a visit's charge by the
//! visit, a bill's steps by the bill and the step), the server loads the stored ones before
//! it replays the feed ([`Book::restore_charge`], [`Book::restore_step`]), and a replayed
//! visit keeps the decision stored for it, so a restart at any point sends no bill, reminder
//! or overdue notice twice and changes no decision already made.

pub mod demo;

use std::collections::{BTreeSet, HashMap, HashSet};

use citybrain_core::time::MICROS_PER_SECOND;
use citybrain_core::{Date, Fen, TimeZone, Timestamp};
use serde::{Deserialize, Serialize};

/// Visits hospitals publish, with what each cost.
pub const VISITS: &str = "health.visits";
/// What patients paid, visit by visit.
pub const PAYMENTS: &str = "health.visit_payments";
/// Who is insured (medical insurance bureau).
pub const MEMBERS: &str = "insurance.members";
/// Personal credit ratings (the social credit office).
pub const RATINGS: &str = "credit.ratings";
/// One row per visit: on credit (and on which bill) or declined, and why.
pub const CHARGES: &str = "paylater.charges";
/// One row per step of a bill: opened, reminded, overdue, paid.
pub const BILL_STEPS: &str = "paylater.bill_steps";

/// Definitions (file name, TOML text) of the scene's datasets.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "health.visits.toml",
        include_str!("../definitions/health.visits.toml"),
    ),
    (
        "health.visit_payments.toml",
        include_str!("../definitions/health.visit_payments.toml"),
    ),
    (
        "insurance.members.toml",
        include_str!("../definitions/insurance.members.toml"),
    ),
    (
        "credit.ratings.toml",
        include_str!("../definitions/credit.ratings.toml"),
    ),
    (
        "paylater.charges.toml",
        include_str!("../definitions/paylater.charges.toml"),
    ),
    (
        "paylater.bill_steps.toml",
        include_str!("../definitions/paylater.bill_steps.toml"),
    ),
];

/// The terms of the credit line. A city sets them in `paylater.toml` in the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Terms {
    /// What a patient may owe at most, in fen.
    pub limit: Fen,
    /// Hours after the bill's day ends that it must be paid by.
    pub window_hours: i64,
    /// Hours before the deadline a reminder goes out, if the bill is not paid.
    pub remind_hours: i64,
    /// Credit ratings that are refused a line.
    pub refused_ratings: Vec<String>,
    /// Whether a line needs an active insurance membership.
    pub insurance_required: bool,
}

impl Default for Terms {
    fn default() -> Self {
        Self {
            limit: Fen(100_000),
            window_hours: 48,
            remind_hours: 24,
            refused_ratings: vec!["D".into()],
            insurance_required: true,
        }
    }
}

impl Terms {
    /// Parses `paylater.toml`; every field is optional.
    pub fn parse(text: &str) -> Result<Self, String> {
        let terms: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if terms.limit.0 < 0 {
            return Err("limit: must not be negative".into());
        }
        if terms.window_hours <= 0 {
            return Err("window_hours: must be above 0".into());
        }
        if terms.remind_hours < 0 || terms.remind_hours >= terms.window_hours {
            return Err("remind_hours: must be at least 0 and below window_hours".into());
        }
        Ok(terms)
    }
}

/// Why a visit is not on credit; `None` in a charge means it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Declined {
    NotInsured,
    CreditRating,
    Suspended,
    OverLimit,
}

impl Declined {
    pub fn name(self) -> &'static str {
        match self {
            Self::NotInsured => "not_insured",
            Self::CreditRating => "credit_rating",
            Self::Suspended => "suspended",
            Self::OverLimit => "over_limit",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::NotInsured,
            Self::CreditRating,
            Self::Suspended,
            Self::OverLimit,
        ]
        .into_iter()
        .find(|d| d.name() == text)
    }

    /// In words, English and Chinese.
    pub fn why(self) -> (&'static str, &'static str) {
        match self {
            Self::NotInsured => (
                "no active medical insurance membership",
                "无有效医保参保记录",
            ),
            Self::CreditRating => ("the credit rating is refused a line", "信用等级不符合"),
            Self::Suspended => (
                "a bill is overdue: the line is suspended until it is paid",
                "有逾期账单，信用额度暂停",
            ),
            Self::OverLimit => (
                "what is owed plus this visit would pass the limit",
                "欠款加本次费用超过额度",
            ),
        }
    }
}

/// A bill's steps, each stored once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Opened,
    Reminded,
    Overdue,
    Paid,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Reminded => "reminded",
            Self::Overdue => "overdue",
            Self::Paid => "paid",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Opened, Self::Reminded, Self::Overdue, Self::Paid]
            .into_iter()
            .find(|s| s.name() == text)
    }
}

/// A visit as a hospital publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub visit_id: String,
    pub patient_id: String,
    pub hospital: String,
    pub at: Timestamp,
    pub amount: Fen,
}

/// A payment of a visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: String,
    pub visit_id: String,
    pub amount: Fen,
    pub at: Timestamp,
}

/// Something that happened, in the order [`Book::apply`] takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A patient's insurance membership as of `at` (`active` or not).
    Member {
        patient_id: String,
        active: bool,
        at: Timestamp,
    },
    /// A patient's credit rating as of `at`.
    Rating {
        patient_id: String,
        rating: String,
        at: Timestamp,
    },
    Visit(Visit),
    Payment(Payment),
}

impl Input {
    pub fn at(&self) -> Timestamp {
        match self {
            Self::Member { at, .. } | Self::Rating { at, .. } => *at,
            Self::Visit(v) => v.at,
            Self::Payment(p) => p.at,
        }
    }

    /// At one instant: memberships and ratings first, then payments, then visits, so a visit
    /// is decided on everything known at its time.
    fn rank(&self) -> u8 {
        match self {
            Self::Member { .. } | Self::Rating { .. } => 0,
            Self::Payment(_) => 1,
            Self::Visit(_) => 2,
        }
    }

    /// Sorts inputs into the order they happened (stable: one instant keeps feed order).
    pub fn sort(inputs: &mut [Input]) {
        inputs.sort_by_key(|i| (i.at(), i.rank()));
    }
}

/// What a visit became: a row of `paylater.charges`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub visit_id: String,
    pub patient_id: String,
    pub hospital: String,
    pub at: Timestamp,
    pub amount: Fen,
    /// The bill it joined, when on credit.
    pub bill_id: Option<String>,
    pub declined: Option<Declined>,
}

/// A step of a bill: a row of `paylater.bill_steps` (the reminder and the overdue notice are
/// the messages a notifier sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillStep {
    pub bill_id: String,
    pub patient_id: String,
    pub step: Step,
    pub at: Timestamp,
    /// The bill's amount at this step.
    pub amount: Fen,
    pub due_at: Timestamp,
}

impl BillStep {
    /// Its id, the same at every replay.
    pub fn id(&self) -> String {
        step_id(&self.bill_id, self.step)
    }
}

pub fn step_id(bill_id: &str, step: Step) -> String {
    format!("{bill_id}/{}", step.name())
}

/// What one input yielded, to be stored.
#[derive(Debug, Default)]
pub struct Outputs {
    pub charges: Vec<Charge>,
    pub steps: Vec<BillStep>,
}

#[derive(Debug)]
struct Bill {
    id: String,
    patient: String,
    day: Date,
    opened_at: Timestamp,
    amount: Fen,
    due_at: Timestamp,
    visits: Vec<String>,
    steps: BTreeSet<Step>,
}

impl Bill {
    fn settled(&self) -> bool {
        self.steps.contains(&Step::Paid)
    }
}

#[derive(Debug, Default)]
struct Patient {
    insured: bool,
    rating: Option<String>,
    bills: Vec<usize>,
}

#[derive(Debug)]
struct Credited {
    bill: usize,
    amount: Fen,
    paid: Fen,
}

/// What a patient's line looks like now, for the desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub limit: Fen,
    pub owed: Fen,
    pub available: Fen,
    /// Why a visit now would be declined, if it would.
    pub declined: Option<Declined>,
    pub bills: Vec<BillState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillState {
    pub bill_id: String,
    pub amount: Fen,
    pub owed: Fen,
    #[serde(with = "citybrain_core::time::as_text")]
    pub due_at: Timestamp,
    pub state: &'static str,
}

/// Every patient's line, bill and visit, on the data's clock.
#[derive(Debug)]
pub struct Book {
    pub terms: Terms,
    zone: TimeZone,
    patients: HashMap<String, Patient>,
    bills: Vec<Bill>,
    bill_index: HashMap<String, usize>,
    /// Visits on credit, by id.
    credited: HashMap<String, Credited>,
    /// Every visit decided (on credit or not).
    decided: HashSet<String>,
    payments: HashSet<String>,
    /// Steps stored (loaded at start, then as yielded).
    stored_steps: HashSet<String>,
    /// Reminders and deadlines to come: (when, bill, step).
    deadlines: BTreeSet<(Timestamp, usize, Step)>,
    next_bill: u64,
    clock: Timestamp,
}

impl Book {
    pub fn new(terms: Terms, zone: TimeZone) -> Self {
        Self {
            terms,
            zone,
            patients: HashMap::new(),
            bills: Vec::new(),
            bill_index: HashMap::new(),
            credited: HashMap::new(),
            decided: HashSet::new(),
            payments: HashSet::new(),
            stored_steps: HashSet::new(),
            deadlines: BTreeSet::new(),
            next_bill: 1,
            clock: Timestamp(i64::MIN),
        }
    }

    /// The data's clock: the time of the latest input applied.
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    pub fn bills(&self) -> usize {
        self.bills.len()
    }

    fn due_at(&self, day: Date) -> Timestamp {
        let end = self.zone.day_start(Date(day.0 + 1));
        Timestamp(end.0 + self.terms.window_hours * 3600 * MICROS_PER_SECOND)
    }

    fn open_bill(&mut self, id: String, patient: &str, opened_at: Timestamp) -> usize {
        let day = self.zone.local_day(opened_at);
        let due_at = self.due_at(day);
        let index = self.bills.len();
        if let Some(n) = id.strip_prefix('B').and_then(|n| n.parse::<u64>().ok()) {
            self.next_bill = self.next_bill.max(n + 1);
        }
        self.bill_index.insert(id.clone(), index);
        self.bills.push(Bill {
            id,
            patient: patient.to_string(),
            day,
            opened_at,
            amount: Fen(0),
            due_at,
            visits: Vec::new(),
            steps: BTreeSet::new(),
        });
        self.patients
            .entry(patient.to_string())
            .or_default()
            .bills
            .push(index);
        let remind = Timestamp(due_at.0 - self.terms.remind_hours * 3600 * MICROS_PER_SECOND);
        self.deadlines.insert((remind, index, Step::Reminded));
        self.deadlines.insert((due_at, index, Step::Overdue));
        index
    }

    fn add_visit(&mut self, bill: usize, visit_id: &str, amount: Fen) {
        let b = &mut self.bills[bill];
        b.amount = Fen(b.amount.0 + amount.0);
        b.visits.push(visit_id.to_string());
        self.credited.insert(
            visit_id.to_string(),
            Credited {
                bill,
                amount,
                paid: Fen(0),
            },
        );
    }

    /// Loads a charge stored before a restart: its visit keeps this decision when replayed.
    pub fn restore_charge(&mut self, charge: &Charge) {
        if !self.decided.insert(charge.visit_id.clone()) {
            return;
        }
        let Some(bill_id) = &charge.bill_id else {
            return;
        };
        let bill = match self.bill_index.get(bill_id) {
            Some(&b) => b,
            None => self.open_bill(bill_id.clone(), &charge.patient_id, charge.at),
        };
        self.add_visit(bill, &charge.visit_id, charge.amount);
    }

    /// Loads a step stored before a restart (after the charges).
    pub fn restore_step(&mut self, bill_id: &str, step: Step) {
        self.stored_steps.insert(step_id(bill_id, step));
        if let Some(&b) = self.bill_index.get(bill_id) {
            self.bills[b].steps.insert(step);
        }
    }

    /// Once everything stored is restored: the `opened` steps of bills whose charges were
    /// stored but not their first step (a stop between the two), which the replay cannot
    /// yield since it does not decide those visits again.
    pub fn restored(&mut self) -> Outputs {
        let mut out = Outputs::default();
        for bill in 0..self.bills.len() {
            if !self.bills[bill].steps.contains(&Step::Opened) {
                let at = self.bills[bill].opened_at;
                self.step(bill, Step::Opened, at, &mut out);
            }
        }
        out
    }

    /// Applies one input, in time order, and says what it yielded.
    pub fn apply(&mut self, input: &Input) -> Outputs {
        let mut out = Outputs::default();
        self.advance(input.at(), &mut out);
        match input {
            Input::Member {
                patient_id, active, ..
            } => {
                self.patients.entry(patient_id.clone()).or_default().insured = *active;
            }
            Input::Rating {
                patient_id, rating, ..
            } => {
                self.patients.entry(patient_id.clone()).or_default().rating = Some(rating.clone());
            }
            Input::Payment(p) => self.pay(p, &mut out),
            Input::Visit(v) => self.visit(v, &mut out),
        }
        out
    }

    /// Moves the clock to `at`, sending the reminders and overdue notices due by then.
    pub fn advance(&mut self, at: Timestamp, out: &mut Outputs) {
        self.clock = self.clock.max(at);
        while let Some(&(when, bill, step)) = self.deadlines.first() {
            if when > self.clock {
                break;
            }
            self.deadlines.pop_first();
            if self.bills[bill].settled() {
                continue;
            }
            self.step(bill, step, when, out);
        }
    }

    fn step(&mut self, bill: usize, step: Step, at: Timestamp, out: &mut Outputs) {
        let b = &mut self.bills[bill];
        if !b.steps.insert(step) {
            return;
        }
        // What the bill held at the step: at opening, its first visit (a step restored
        // late must say the same as the one it stands for).
        let amount = match step {
            Step::Opened => b
                .visits
                .first()
                .and_then(|v| self.credited.get(v))
                .map_or(b.amount, |c| c.amount),
            _ => b.amount,
        };
        let s = BillStep {
            bill_id: b.id.clone(),
            patient_id: b.patient.clone(),
            step,
            at,
            amount,
            due_at: b.due_at,
        };
        if self.stored_steps.insert(s.id()) {
            out.steps.push(s);
        }
    }

    fn owed(&self, patient: &Patient) -> Fen {
        Fen(patient
            .bills
            .iter()
            .map(|&b| {
                let bill = &self.bills[b];
                bill.visits
                    .iter()
                    .filter_map(|v| self.credited.get(v))
                    .map(|c| (c.amount.0 - c.paid.0).max(0))
                    .sum::<i64>()
            })
            .sum())
    }

    /// Why a visit of `amount` by `patient_id` now would be declined, if it would.
    pub fn decline(&self, patient_id: &str, amount: Fen) -> Option<Declined> {
        let empty = Patient::default();
        let patient = self.patients.get(patient_id).unwrap_or(&empty);
        if self.terms.insurance_required && !patient.insured {
            return Some(Declined::NotInsured);
        }
        if patient
            .rating
            .as_ref()
            .is_some_and(|r| self.terms.refused_ratings.contains(r))
        {
            return Some(Declined::CreditRating);
        }
        let overdue = patient.bills.iter().any(|&b| {
            let bill = &self.bills[b];
            bill.steps.contains(&Step::Overdue) && !bill.settled()
        });
        if overdue {
            return Some(Declined::Suspended);
        }
        if self.owed(patient).0 + amount.0 > self.terms.limit.0 {
            return Some(Declined::OverLimit);
        }
        None
    }

    fn visit(&mut self, v: &Visit, out: &mut Outputs) {
        if !self.decided.insert(v.visit_id.clone()) {
            return;
        }
        let declined = if v.amount.0 < 0 {
            // A refund is not credit: it belongs to the desk.
            Some(Declined::OverLimit)
        } else {
            self.decline(&v.patient_id, v.amount)
        };
        let bill_id = if declined.is_none() {
            let day = self.zone.local_day(v.at);
            let open = self.patients.get(&v.patient_id).and_then(|p| {
                p.bills
                    .iter()
                    .copied()
                    .find(|&b| self.bills[b].day == day && !self.bills[b].settled())
            });
            let (bill, new) = match open {
                Some(b) => (b, false),
                None => {
                    let id = format!("B{:08}", self.next_bill);
                    (self.open_bill(id, &v.patient_id, v.at), true)
                }
            };
            self.add_visit(bill, &v.visit_id, v.amount);
            if new {
                self.step(bill, Step::Opened, v.at, out);
            }
            Some(self.bills[bill].id.clone())
        } else {
            None
        };
        out.charges.push(Charge {
            visit_id: v.visit_id.clone(),
            patient_id: v.patient_id.clone(),
            hospital: v.hospital.clone(),
            at: v.at,
            amount: v.amount,
            bill_id,
            declined,
        });
    }

    fn pay(&mut self, p: &Payment, out: &mut Outputs) {
        if !self.payments.insert(p.payment_id.clone()) {
            return;
        }
        // A payment of a visit not on credit was made at the desk: nothing to settle here.
        let Some(c) = self.credited.get_mut(&p.visit_id) else {
            return;
        };
        c.paid = Fen(c.paid.0 + p.amount.0);
        let bill = c.bill;
        let b = &self.bills[bill];
        if b.settled() {
            return;
        }
        let all_paid = b
            .visits
            .iter()
            .filter_map(|v| self.credited.get(v))
            .all(|c| c.paid.0 >= c.amount.0);
        if all_paid {
            self.step(bill, Step::Paid, p.at, out);
        }
    }

    /// A patient's line as of the clock.
    pub fn line(&self, patient_id: &str) -> Line {
        let empty = Patient::default();
        let patient = self.patients.get(patient_id).unwrap_or(&empty);
        let owed = self.owed(patient);
        let bills = patient
            .bills
            .iter()
            .map(|&b| {
                let bill = &self.bills[b];
                let owed = bill
                    .visits
                    .iter()
                    .filter_map(|v| self.credited.get(v))
                    .map(|c| (c.amount.0 - c.paid.0).max(0))
                    .sum();
                let state = bill.steps.iter().next_back().map_or("opened", |s| s.name());
                BillState {
                    bill_id: bill.id.clone(),
                    amount: bill.amount,
                    owed: Fen(owed),
                    due_at: bill.due_at,
                    state,
                }
            })
            .collect();
        Line {
            limit: self.terms.limit,
            owed,
            available: Fen((self.terms.limit.0 - owed.0).max(0)),
            declined: self.decline(patient_id, Fen(0)),
            bills,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn visit(id: &str, patient: &str, when: &str, yuan: i64) -> Input {
        Input::Visit(Visit {
            visit_id: id.into(),
            patient_id: patient.into(),
            hospital: "h".into(),
            at: at(when),
            amount: Fen(yuan * 100),
        })
    }

    fn pay(id: &str, visit: &str, when: &str, yuan: i64) -> Input {
        Input::Payment(Payment {
            payment_id: id.into(),
            visit_id: visit.into(),
            amount: Fen(yuan * 100),
            at: at(when),
        })
    }

    fn member(patient: &str, when: &str) -> Input {
        Input::Member {
            patient_id: patient.into(),
            active: true,
            at: at(when),
        }
    }

    fn run(book: &mut Book, inputs: &[Input]) -> Outputs {
        let mut all = Outputs::default();
        for i in inputs {
            let out = book.apply(i);
            all.charges.extend(out.charges);
            all.steps.extend(out.steps);
        }
        all
    }

    fn steps(out: &Outputs) -> Vec<String> {
        out.steps.iter().map(BillStep::id).collect()
    }

    #[test]
    fn a_day_is_one_bill_reminded_then_overdue_then_paid() {
        let mut book = Book::new(Terms::default(), TimeZone::utc());
        let out = run(
            &mut book,
            &[
                member("p", "2026-03-01T00:00:00Z"),
                visit("v1", "p", "2026-03-02T09:00:00Z", 120),
                visit("v2", "p", "2026-03-02T15:00:00Z", 80),
                // The window: the day ends 03-03 00:00, due 03-05 00:00, reminded 03-04.
                visit("v3", "p", "2026-03-04T12:00:00Z", 900),
                visit("v4", "p", "2026-03-05T08:00:00Z", 10),
                pay("x1", "v1", "2026-03-06T10:00:00Z", 120),
                pay("x2", "v2", "2026-03-06T11:00:00Z", 80),
                visit("v5", "p", "2026-03-06T12:00:00Z", 10),
            ],
        );
        let decided: Vec<_> = out
            .charges
            .iter()
            .map(|c| (c.visit_id.as_str(), c.bill_id.as_deref(), c.declined))
            .collect();
        assert_eq!(
            decided,
            [
                ("v1", Some("B00000001"), None),
                ("v2", Some("B00000001"), None),
                // 200 owed + 900 passes the 1,000 yuan limit.
                ("v3", None, Some(Declined::OverLimit)),
                // B1 went overdue at 03-05 00:00.
                ("v4", None, Some(Declined::Suspended)),
                ("v5", Some("B00000002"), None),
            ]
        );
        assert_eq!(
            steps(&out),
            [
                "B00000001/opened",
                "B00000001/reminded",
                "B00000001/overdue",
                "B00000001/paid",
                "B00000002/opened"
            ]
        );
        let reminded = &out.steps[1];
        assert_eq!(reminded.at, at("2026-03-04T00:00:00Z"));
        assert_eq!(reminded.amount, Fen(20_000));
        let line = book.line("p");
        assert_eq!(line.owed, Fen(1_000));
        assert_eq!(line.declined, None);
    }

    #[test]
    fn paid_in_time_is_never_reminded_and_a_paid_bill_takes_no_more_visits() {
        let mut book = Book::new(Terms::default(), TimeZone::utc());
        let out = run(
            &mut book,
            &[
                member("p", "2026-03-01T00:00:00Z"),
                visit("v1", "p", "2026-03-02T09:00:00Z", 50),
                pay("x1", "v1", "2026-03-02T10:00:00Z", 50),
                pay("x1", "v1", "2026-03-02T10:00:00Z", 50),
                visit("v2", "p", "2026-03-02T11:00:00Z", 50),
                visit("v2", "p", "2026-03-02T11:00:00Z", 50),
                visit("v9", "q", "2026-03-09T11:00:00Z", 50),
            ],
        );
        assert_eq!(
            steps(&out),
            [
                "B00000001/opened",
                "B00000001/paid",
                "B00000002/opened",
                "B00000002/reminded",
                "B00000002/overdue"
            ]
        );
        assert_eq!(out.charges.len(), 3);
        assert_eq!(out.charges[2].declined, Some(Declined::NotInsured));
    }

    #[test]
    fn a_restart_keeps_every_decision_and_sends_nothing_twice() {
        let inputs = [
            member("p", "2026-03-01T00:00:00Z"),
            visit("v1", "p", "2026-03-02T09:00:00Z", 50),
            visit("v2", "p", "2026-03-03T09:00:00Z", 50),
            pay("x1", "v1", "2026-03-05T10:00:00Z", 50),
            visit("v3", "p", "2026-03-06T09:00:00Z", 50),
        ];
        let mut whole = Book::new(Terms::default(), TimeZone::utc());
        let all = run(&mut whole, &inputs);
        for cut in 0..=inputs.len() {
            let mut first = Book::new(Terms::default(), TimeZone::utc());
            let before = run(&mut first, &inputs[..cut]);
            let mut second = Book::new(Terms::default(), TimeZone::utc());
            for c in &before.charges {
                second.restore_charge(c);
            }
            for s in &before.steps {
                second.restore_step(&s.bill_id, s.step);
            }
            let after = run(&mut second, &inputs);
            let mut charges: Vec<_> = before.charges.iter().chain(&after.charges).collect();
            charges.sort_by_key(|c| c.visit_id.clone());
            let mut expected: Vec<_> = all.charges.iter().collect();
            expected.sort_by_key(|c| c.visit_id.clone());
            assert_eq!(charges, expected, "cut at {cut}");
            let mut ids: Vec<_> = steps(&before).into_iter().chain(steps(&after)).collect();
            ids.sort();
            let mut expected = steps(&all);
            expected.sort();
            assert_eq!(ids, expected, "cut at {cut}");
        }
    }

    #[test]
    fn terms_parse_and_refuse_nonsense() {
        let terms = Terms::parse("limit = 50000\nrefused_ratings = [\"C\", \"D\"]\n").unwrap();
        assert_eq!(terms.limit, Fen(50_000));
        assert_eq!(terms.window_hours, 48);
        assert!(Terms::parse("window_hours = 0").is_err());
        assert!(Terms::parse("remind_hours = 48").is_err());
        assert!(Terms::parse("limt = 5").unwrap_err().contains("limt"));
    }
}
