//! A generated month of treat-first-pay-later against its truth: the payment habit of each
//! patient says which steps each of their bills must take, and each visit's decision is
//! checked against what the patient owed and whether a bill was overdue at that instant,
//! computed here from the outputs and the payments, not by the book. Then the same month
//! with the book stopped and restarted from what it had stored, at many points: the same
//! outputs, nothing twice.

use std::collections::{BTreeSet, HashMap, HashSet};

use citybrain_core::{Fen, TimeZone, Timestamp};
use citybrain_medical::paylater::demo::{DemoConfig, Habit, Month, generate};
use citybrain_medical::paylater::{Book, Charge, Declined, Input, Outputs, Step, Terms};

fn config(visits: usize, patients: usize) -> DemoConfig {
    DemoConfig {
        seed: 7,
        patients,
        days: 30,
        visits,
        end: Timestamp::parse("2026-04-01T00:00:00+08:00").unwrap(),
        zone: TimeZone::parse("Asia/Shanghai").unwrap(),
        terms: Terms::default(),
    }
}

fn run(book: &mut Book, inputs: &[Input], all: &mut Outputs) {
    for input in inputs {
        let out = book.apply(input);
        all.charges.extend(out.charges);
        all.steps.extend(out.steps);
    }
}

fn check_against_truth(month: &Month, out: &Outputs, terms: &Terms) {
    // Every visit decided once; every step once.
    let mut seen = HashSet::new();
    for c in &out.charges {
        assert!(seen.insert(&c.visit_id), "{} decided twice", c.visit_id);
    }
    assert_eq!(seen.len(), month.visits.len(), "every visit decided");
    let mut ids = HashSet::new();
    for s in &out.steps {
        assert!(ids.insert(s.id()), "{} sent twice", s.id());
    }
    let habit: HashMap<&str, Habit> = month.habits.iter().map(|(p, h)| (p.as_str(), *h)).collect();
    // Each bill's steps, by the habit of its patient.
    let mut steps: HashMap<&str, (BTreeSet<Step>, &str)> = HashMap::new();
    for s in &out.steps {
        steps
            .entry(&s.bill_id)
            .or_insert_with(|| (BTreeSet::new(), &s.patient_id))
            .0
            .insert(s.step);
    }
    let mut by_habit: HashMap<Habit, usize> = HashMap::new();
    for (bill, (taken, patient)) in &steps {
        let h = habit[patient];
        *by_habit.entry(h).or_default() += 1;
        let expected: &[Step] = match h {
            Habit::Prompt => &[Step::Opened, Step::Paid],
            Habit::AfterReminder => &[Step::Opened, Step::Reminded, Step::Paid],
            Habit::Late => &[Step::Opened, Step::Reminded, Step::Overdue, Step::Paid],
            Habit::Never => &[Step::Opened, Step::Reminded, Step::Overdue],
            Habit::Uninsured | Habit::Refused => &[],
        };
        let taken: Vec<Step> = taken.iter().copied().collect();
        assert_eq!(taken, expected, "bill {bill} of a {h:?} payer");
    }
    for h in [
        Habit::Prompt,
        Habit::AfterReminder,
        Habit::Late,
        Habit::Never,
    ] {
        assert!(
            by_habit.get(&h).copied().unwrap_or(0) > 0,
            "no bill of a {h:?} payer"
        );
    }
    // Each decision against what was owed and overdue at its instant.
    let mut overdue: HashMap<&str, Vec<(Timestamp, Timestamp)>> = HashMap::new();
    let paid_at: HashMap<&str, Timestamp> = out
        .steps
        .iter()
        .filter(|s| s.step == Step::Paid)
        .map(|s| (s.bill_id.as_str(), s.at))
        .collect();
    for s in out.steps.iter().filter(|s| s.step == Step::Overdue) {
        let until = paid_at
            .get(s.bill_id.as_str())
            .copied()
            .unwrap_or(Timestamp(i64::MAX));
        overdue
            .entry(&s.patient_id)
            .or_default()
            .push((s.at, until));
    }
    let mut payments: HashMap<&str, Vec<(Timestamp, i64)>> = HashMap::new();
    for p in &month.payments {
        payments
            .entry(&p.visit_id)
            .or_default()
            .push((p.at, p.amount));
    }
    let mut credited: HashMap<&str, Vec<&Charge>> = HashMap::new();
    let mut reasons: HashMap<Option<Declined>, usize> = HashMap::new();
    for c in &out.charges {
        *reasons.entry(c.declined).or_default() += 1;
        let h = habit[c.patient_id.as_str()];
        match h {
            Habit::Uninsured => assert_eq!(c.declined, Some(Declined::NotInsured)),
            Habit::Refused => assert_eq!(c.declined, Some(Declined::CreditRating)),
            _ => {}
        }
        let suspended = overdue
            .get(c.patient_id.as_str())
            .is_some_and(|spans| spans.iter().any(|&(from, to)| from <= c.at && c.at < to));
        if matches!(h, Habit::Prompt | Habit::AfterReminder) {
            assert!(
                !suspended,
                "{} of a {h:?} payer in a suspension",
                c.visit_id
            );
        }
        let earlier = credited.entry(&c.patient_id).or_default();
        let owed: i64 = earlier
            .iter()
            .map(|e| {
                let paid: i64 = payments
                    .get(e.visit_id.as_str())
                    .map(|ps| {
                        ps.iter()
                            .filter(|(at, _)| *at <= c.at)
                            .map(|(_, a)| a)
                            .sum()
                    })
                    .unwrap_or(0);
                (e.amount.0 - paid).max(0)
            })
            .sum();
        match c.declined {
            None => {
                assert!(
                    !suspended,
                    "{} on credit while a bill was overdue",
                    c.visit_id
                );
                assert!(
                    owed + c.amount.0 <= terms.limit.0,
                    "{} over the limit",
                    c.visit_id
                );
                assert!(c.bill_id.is_some());
                earlier.push(c);
            }
            Some(Declined::Suspended) => {
                assert!(suspended, "{} suspended without cause", c.visit_id)
            }
            Some(Declined::OverLimit) => {
                assert!(!suspended);
                assert!(
                    owed + c.amount.0 > terms.limit.0,
                    "{} within the limit",
                    c.visit_id
                );
            }
            Some(_) => assert!(matches!(h, Habit::Uninsured | Habit::Refused)),
        }
    }
    for r in [None, Some(Declined::Suspended), Some(Declined::OverLimit)] {
        assert!(reasons.get(&r).copied().unwrap_or(0) > 0, "no visit {r:?}");
    }
    // A reminder 24 h before the deadline, with the bill's amount then.
    for s in out.steps.iter().filter(|s| s.step == Step::Reminded) {
        assert_eq!(
            s.due_at.0 - s.at.0,
            terms.remind_hours * 3_600_000_000,
            "{}",
            s.id()
        );
        assert!(s.amount > Fen(0));
    }
}

#[test]
fn a_month_of_100_000_visits_follows_the_truth() {
    let config = config(100_000, 20_000);
    let month = generate(&config);
    let inputs = month.inputs();
    let mut book = Book::new(config.terms.clone(), config.zone.clone());
    let mut out = Outputs::default();
    run(&mut book, &inputs, &mut out);
    check_against_truth(&month, &out, &config.terms);
    eprintln!(
        "{} visits, {} on credit, {} bills, {} steps",
        out.charges.len(),
        out.charges.iter().filter(|c| c.declined.is_none()).count(),
        book.bills(),
        out.steps.len()
    );
}

#[test]
fn restarts_anywhere_change_nothing_and_send_nothing_twice() {
    let config = config(5_000, 800);
    let month = generate(&config);
    let inputs = month.inputs();
    let mut whole = Book::new(config.terms.clone(), config.zone.clone());
    let mut expected = Outputs::default();
    run(&mut whole, &inputs, &mut expected);
    // Stored so far, carried from one life of the book to the next.
    let mut stored = Outputs::default();
    let cuts = [
        0,
        1,
        997,
        2_500,
        2_501,
        6_000,
        9_999,
        inputs.len() - 1,
        inputs.len(),
    ];
    for (n, &cut) in cuts.iter().enumerate() {
        let cut = cut.min(inputs.len());
        if n % 2 == 1 {
            // A stop between storing the charges and storing the steps: the steps of the
            // last few hundred inputs are lost.
            let lost = stored.steps.len().saturating_sub(150);
            stored.steps.truncate(lost);
        }
        let mut book = Book::new(config.terms.clone(), config.zone.clone());
        for c in &stored.charges {
            book.restore_charge(c);
        }
        for s in &stored.steps {
            book.restore_step(&s.bill_id, s.step);
        }
        let again = book.restored();
        stored.steps.extend(again.steps);
        // The feed replays from the start: what was stored is not stored again.
        run(&mut book, &inputs[..cut], &mut stored);
    }
    let key = |o: &Outputs| {
        let mut c: Vec<String> = o.charges.iter().map(|c| format!("{c:?}")).collect();
        c.sort();
        let mut s: Vec<String> = o.steps.iter().map(|s| format!("{s:?}")).collect();
        s.sort();
        (c, s)
    };
    let (got, want) = (key(&stored), key(&expected));
    assert_eq!(got.0, want.0, "charges");
    let extra: Vec<_> = got
        .1
        .iter()
        .filter(|s| !want.1.contains(s))
        .take(3)
        .collect();
    let missing: Vec<_> = want
        .1
        .iter()
        .filter(|s| !got.1.contains(s))
        .take(3)
        .collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "steps: extra {extra:?}, missing {missing:?}"
    );
    check_against_truth(&month, &stored, &config.terms);
}

/// A stop after every single input of a small month (each time with the steps of the last
/// input lost, as a stop between the two stores would): the same outputs as one run, nothing
/// twice.
#[test]
fn a_stop_after_every_input_sends_nothing_twice() {
    let config = config(300, 60);
    let month = generate(&config);
    let inputs = month.inputs();
    let mut whole = Book::new(config.terms.clone(), config.zone.clone());
    let mut expected = Outputs::default();
    run(&mut whole, &inputs, &mut expected);
    let mut stored = Outputs::default();
    for cut in 0..=inputs.len() {
        let mut book = Book::new(config.terms.clone(), config.zone.clone());
        for c in &stored.charges {
            book.restore_charge(c);
        }
        for s in &stored.steps {
            book.restore_step(&s.bill_id, s.step);
        }
        stored.steps.extend(book.restored().steps);
        let before = stored.steps.len();
        run(&mut book, &inputs[..cut], &mut stored);
        if cut % 2 == 1 {
            // The steps of this life's last input are lost with the stop.
            let keep = before.max(stored.steps.len().saturating_sub(1));
            stored.steps.truncate(keep);
        }
    }
    // A last life over everything, to send what the last stop lost.
    let mut book = Book::new(config.terms.clone(), config.zone.clone());
    for c in &stored.charges {
        book.restore_charge(c);
    }
    for s in &stored.steps {
        book.restore_step(&s.bill_id, s.step);
    }
    stored.steps.extend(book.restored().steps);
    run(&mut book, &inputs, &mut stored);
    let key = |o: &Outputs| {
        let mut c: Vec<String> = o.charges.iter().map(|c| format!("{c:?}")).collect();
        c.sort();
        let mut s: Vec<String> = o.steps.iter().map(|s| format!("{s:?}")).collect();
        s.sort();
        (c, s)
    };
    assert_eq!(key(&stored), key(&expected));
    check_against_truth(&month, &stored, &config.terms);
}
