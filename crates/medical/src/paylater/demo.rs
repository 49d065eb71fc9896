//! A generated month of treat-first-pay-later: patients with a payment habit each, their
//! insurance and credit, their visits across hospitals and what they paid when. The habit is
//! the truth a test checks the book against: a prompt payer is never reminded, one who pays
//! after the reminder is never overdue, a late payer is overdue and suspended until paid, one
//! who never pays stays suspended, and the uninsured and the refused are never on credit.
//! The habits decide the payments, not [`super::Book`], so comparing the two checks the terms.

use citybrain_core::rng::Rng;
use citybrain_core::time::MICROS_PER_SECOND;
use citybrain_core::{Date, Fen, TimeZone, Timestamp};
use serde::Serialize;

use super::{Input, Payment, Terms, Visit};

const HOUR: i64 = 3600 * MICROS_PER_SECOND;

/// Hospitals the visits are at.
pub const HOSPITALS: &[&str] = &[
    "hz_first_people",
    "zj_provincial_people",
    "hz_childrens",
    "hz_red_cross",
    "yuhang_first",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Habit {
    /// Pays each visit within hours of it: before any reminder.
    Prompt,
    /// Pays after the reminder, before the deadline.
    AfterReminder,
    /// Pays after the deadline.
    Late,
    /// Never pays.
    Never,
    /// Has no active insurance.
    Uninsured,
    /// Has a refused credit rating.
    Refused,
}

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub seed: u64,
    pub patients: usize,
    /// Visits span this many days before `end`.
    pub days: u32,
    /// Visits in all, spread over the patients.
    pub visits: usize,
    pub end: Timestamp,
    pub zone: TimeZone,
    /// The terms the payment habits are timed against.
    pub terms: Terms,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub patient_id: String,
    pub status: &'static str,
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct RatingRow {
    pub patient_id: String,
    pub rating: &'static str,
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct VisitRow {
    pub visit_id: String,
    pub patient_id: String,
    pub hospital: &'static str,
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
    pub amount: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PaymentRow {
    pub payment_id: String,
    pub visit_id: String,
    pub amount: i64,
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
}

/// The month, each dataset's rows in time order, and every patient's habit.
#[derive(Debug, Default)]
pub struct Month {
    pub members: Vec<MemberRow>,
    pub ratings: Vec<RatingRow>,
    pub visits: Vec<VisitRow>,
    pub payments: Vec<PaymentRow>,
    /// (patient id, habit), in patient order.
    pub habits: Vec<(String, Habit)>,
}

impl Month {
    /// Everything as book inputs, in the order it happened.
    pub fn inputs(&self) -> Vec<Input> {
        let mut inputs: Vec<Input> = Vec::new();
        inputs.extend(self.members.iter().map(|m| Input::Member {
            patient_id: m.patient_id.clone(),
            active: m.status == "active",
            at: m.at,
        }));
        inputs.extend(self.ratings.iter().map(|r| Input::Rating {
            patient_id: r.patient_id.clone(),
            rating: r.rating.into(),
            at: r.at,
        }));
        inputs.extend(self.visits.iter().map(|v| {
            Input::Visit(Visit {
                visit_id: v.visit_id.clone(),
                patient_id: v.patient_id.clone(),
                hospital: v.hospital.into(),
                at: v.at,
                amount: Fen(v.amount),
            })
        }));
        inputs.extend(self.payments.iter().map(|p| {
            Input::Payment(Payment {
                payment_id: p.payment_id.clone(),
                visit_id: p.visit_id.clone(),
                amount: Fen(p.amount),
                at: p.at,
            })
        }));
        Input::sort(&mut inputs);
        inputs
    }
}

/// The patient id of patient `n` (18 characters like a resident id; not a real one).
pub fn patient_id(n: usize) -> String {
    format!("330110{}{:08}", 1950 + n % 60, n)
}

pub fn generate(config: &DemoConfig) -> Month {
    let mut rng = Rng::new(config.seed);
    let mut month = Month::default();
    let first_day = Date(config.zone.local_day(config.end).0 - config.days as i32);
    let known_from = config.zone.day_start(Date(first_day.0 - 30));
    for n in 0..config.patients {
        let id = patient_id(n);
        let habit = match rng.below(100) {
            0..=54 => Habit::Prompt,
            55..=74 => Habit::AfterReminder,
            75..=84 => Habit::Late,
            85..=89 => Habit::Never,
            90..=94 => Habit::Uninsured,
            _ => Habit::Refused,
        };
        month.members.push(MemberRow {
            patient_id: id.clone(),
            status: if habit == Habit::Uninsured {
                "lapsed"
            } else {
                "active"
            },
            at: known_from,
        });
        let rating = match habit {
            Habit::Refused => "D",
            Habit::Prompt => ["A", "A", "B"][rng.below(3) as usize],
            _ => ["A", "B", "C"][rng.below(3) as usize],
        };
        month.ratings.push(RatingRow {
            patient_id: id.clone(),
            rating,
            at: known_from,
        });
        month.habits.push((id, habit));
    }
    let window = config.terms.window_hours * HOUR;
    let remind = config.terms.remind_hours * HOUR;
    for v in 0..config.visits {
        let n = rng.below(config.patients as u64) as usize;
        let (patient, habit) = &month.habits[n];
        let day = Date(first_day.0 + rng.below(u64::from(config.days)) as i32);
        // Between 08:00 and 17:00, local.
        let at = Timestamp(
            config.zone.day_start(day).0
                + 8 * HOUR
                + rng.below(9 * 3600) as i64 * MICROS_PER_SECOND,
        );
        // 20 to 600 yuan, most of them small: outpatient visits after insurance.
        let amount = 2_000 + (rng.f64().powi(3) * 58_000.0) as i64;
        let visit_id = format!("V{:07}", v + 1);
        let day_end = config.zone.day_start(Date(day.0 + 1)).0;
        let (due, reminder) = (day_end + window, day_end + window - remind);
        let paid_at = match habit {
            Habit::Prompt | Habit::Uninsured | Habit::Refused => {
                // Before the bill's day has ended plus a few hours: never near a reminder.
                Some(at.0 + HOUR / 2 + rng.below(9 * 3600) as i64 * MICROS_PER_SECOND)
            }
            Habit::AfterReminder => Some(
                reminder
                    + HOUR
                    + rng.below((remind / HOUR - 2).max(1) as u64 * 3600) as i64
                        * MICROS_PER_SECOND,
            ),
            Habit::Late => Some(due + 2 * HOUR + rng.below(70 * 3600) as i64 * MICROS_PER_SECOND),
            Habit::Never => None,
        };
        if let Some(paid_at) = paid_at {
            month.payments.push(PaymentRow {
                payment_id: format!("P{:07}", v + 1),
                visit_id: visit_id.clone(),
                amount,
                at: Timestamp(paid_at),
            });
        }
        month.visits.push(VisitRow {
            visit_id,
            patient_id: patient.clone(),
            hospital: HOSPITALS[rng.below(HOSPITALS.len() as u64) as usize],
            at,
            amount,
        });
    }
    month.visits.sort_by_key(|v| v.at);
    month.payments.sort_by_key(|p| p.at);
    month
}
