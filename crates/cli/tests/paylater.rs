//! Treat first, pay later end to end (issue 27, item 2): the insurance bureau, the credit
//! office and the hospitals publish a generated month over HTTP, day by day; the scene's
//! ledger equals the book's own run over the same records in the same order; with the
//! server killed (`kill -9`) three times while the month is published, every visit is
//! decided once and every bill opened, reminded, overdue and paid at most once, each bill's
//! steps as its payer's habit says. The desk's line answers for the hospital and refuses a
//! department without the grant.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use citybrain_core::{Date, Fen, TimeZone, Timestamp};
use citybrain_medical::paylater::demo::{DemoConfig, Habit, Month, generate};
use citybrain_medical::paylater::{self, Book, Input, Outputs, Payment, Terms, Visit};
use common::people::call;
use common::{Server, agent, department_admin, start};
use serde_json::{Value, json};

fn month() -> (DemoConfig, Month) {
    let config = DemoConfig {
        seed: 11,
        patients: 400,
        days: 20,
        visits: 2_000,
        end: Timestamp::parse("2026-06-01T00:00:00+08:00").unwrap(),
        zone: TimeZone::parse("Asia/Shanghai").unwrap(),
        terms: Terms::default(),
    };
    let month = generate(&config);
    (config, month)
}

/// One HTTP batch: a dataset, its rows (NDJSON) and the same rows as book inputs.
struct Batch {
    dataset: &'static str,
    body: Vec<u8>,
    inputs: Vec<Input>,
}

fn ndjson<T: serde::Serialize>(rows: &[T]) -> Vec<u8> {
    rows.iter()
        .flat_map(|r| {
            let mut line = serde_json::to_vec(r).unwrap();
            line.push(b'\n');
            line
        })
        .collect()
}

/// The month as its publishers send it: memberships and ratings first, then day by day
/// the hospitals' visits and the payments made that day.
fn batches(config: &DemoConfig, month: &Month) -> Vec<Batch> {
    let all = month.inputs();
    let members: Vec<Input> = all
        .iter()
        .filter(|i| matches!(i, Input::Member { .. }))
        .cloned()
        .collect();
    let ratings: Vec<Input> = all
        .iter()
        .filter(|i| matches!(i, Input::Rating { .. }))
        .cloned()
        .collect();
    let mut out = vec![
        Batch {
            dataset: paylater::MEMBERS,
            body: ndjson(&month.members),
            inputs: members,
        },
        Batch {
            dataset: paylater::RATINGS,
            body: ndjson(&month.ratings),
            inputs: ratings,
        },
    ];
    let day = |at: Timestamp| config.zone.local_day(at);
    let mut days: BTreeMap<Date, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, v) in month.visits.iter().enumerate() {
        days.entry(day(v.at)).or_default().0.push(i);
    }
    for (i, p) in month.payments.iter().enumerate() {
        days.entry(day(p.at)).or_default().1.push(i);
    }
    for (visits, payments) in days.values() {
        if !visits.is_empty() {
            let rows: Vec<_> = visits.iter().map(|&i| &month.visits[i]).collect();
            out.push(Batch {
                dataset: paylater::VISITS,
                body: ndjson(&rows),
                inputs: rows
                    .iter()
                    .map(|v| {
                        Input::Visit(Visit {
                            visit_id: v.visit_id.clone(),
                            patient_id: v.patient_id.clone(),
                            hospital: v.hospital.into(),
                            at: v.at,
                            amount: Fen(v.amount),
                        })
                    })
                    .collect(),
            });
        }
        if !payments.is_empty() {
            let rows: Vec<_> = payments.iter().map(|&i| &month.payments[i]).collect();
            out.push(Batch {
                dataset: paylater::PAYMENTS,
                body: ndjson(&rows),
                inputs: rows
                    .iter()
                    .map(|p| {
                        Input::Payment(Payment {
                            payment_id: p.payment_id.clone(),
                            visit_id: p.visit_id.clone(),
                            amount: Fen(p.amount),
                            at: p.at,
                        })
                    })
                    .collect(),
            });
        }
    }
    out
}

struct Tokens(HashMap<&'static str, String>);

impl Tokens {
    fn new(server: &Server) -> Self {
        Self(
            ["health", "medical_insurance", "credit_office", "market"]
                .into_iter()
                .map(|d| (d, department_admin(server, d)))
                .collect(),
        )
    }

    fn publisher(&self, dataset: &str) -> &str {
        let department = match dataset {
            paylater::MEMBERS => "medical_insurance",
            paylater::RATINGS => "credit_office",
            _ => "health",
        };
        &self.0[department]
    }
}

fn publish(base: &str, tokens: &Tokens, batch: &Batch) -> Result<(String, i64), String> {
    let response = agent()
        .post(&format!("{base}/api/v1/datasets/{}/records", batch.dataset))
        .header(
            "Authorization",
            &format!("Bearer {}", tokens.publisher(batch.dataset)),
        )
        .header("Content-Type", "application/x-ndjson")
        .send(&batch.body[..])
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap_or_default();
    if status != 200 {
        return Err(format!("{}: {status} {text}", batch.dataset));
    }
    let report: Value = serde_json::from_str(&text).unwrap();
    Ok((
        batch.dataset.to_string(),
        report["position"].as_i64().unwrap(),
    ))
}

fn sql(server: &Server, tokens: &Tokens, sql: &str) -> Vec<Value> {
    let (status, rows) = call(
        server,
        &tokens.0["health"],
        "POST",
        "/api/v1/sql",
        Some(&json!({"sql": sql, "purpose": "test: the pay-later ledger"})),
    );
    assert_eq!(status, 200, "{rows}");
    rows.as_array().unwrap().clone()
}

/// The ledger as stored: charges as (visit, bill, declined) and steps as (bill, patient, step, at, amount).
fn ledger(server: &Server, tokens: &Tokens) -> (Vec<String>, Vec<String>) {
    let mut charges: Vec<String> = sql(
        server,
        tokens,
        "SELECT visit_id, bill_id, declined FROM paylater.charges",
    )
    .iter()
    .map(|r| format!("{} {} {}", r["visit_id"], r["bill_id"], r["declined"]))
    .collect();
    charges.sort();
    let mut steps: Vec<String> = sql(
        server,
        tokens,
        "SELECT step_id, patient_id, at, amount FROM paylater.bill_steps",
    )
    .iter()
    .map(|r| {
        let at = Timestamp::parse(r["at"].as_str().unwrap()).unwrap();
        format!(
            "{} {} {} {}",
            r["step_id"].as_str().unwrap(),
            r["patient_id"].as_str().unwrap(),
            at.0,
            r["amount"]
        )
    })
    .collect();
    steps.sort();
    (charges, steps)
}

fn expected(outputs: &Outputs) -> (Vec<String>, Vec<String>) {
    let null = |v: Option<&str>| v.map_or("null".to_string(), |s| format!("\"{s}\""));
    let mut charges: Vec<String> = outputs
        .charges
        .iter()
        .map(|c| {
            format!(
                "\"{}\" {} {}",
                c.visit_id,
                null(c.bill_id.as_deref()),
                null(c.declined.map(paylater::Declined::name))
            )
        })
        .collect();
    charges.sort();
    let mut steps: Vec<String> = outputs
        .steps
        .iter()
        .map(|s| format!("{} {} {} {}", s.id(), s.patient_id, s.at.0, s.amount.0))
        .collect();
    steps.sort();
    (charges, steps)
}

#[test]
fn the_ledger_is_the_books_and_the_desk_reads_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let tokens = Tokens::new(&server);
    let (config, month) = month();
    let batches = batches(&config, &month);
    let mut book = Book::new(config.terms.clone(), config.zone.clone());
    let mut outputs = Outputs::default();
    let mut last = Vec::new();
    for batch in &batches {
        last.push(publish(&server.base, &tokens, batch).unwrap());
        for input in &batch.inputs {
            let out = book.apply(input);
            outputs.charges.extend(out.charges);
            outputs.steps.extend(out.steps);
        }
    }
    server.applied("paylater", &last);
    let (charges, steps) = ledger(&server, &tokens);
    let (want_charges, want_steps) = expected(&outputs);
    assert_eq!(charges.len(), month.visits.len());
    assert_eq!(charges, want_charges);
    assert_eq!(steps, want_steps);

    // The desk: a patient who never pays is suspended; one who pays on time is open.
    let habit = |h: Habit| {
        month
            .habits
            .iter()
            .find(|(p, habit)| *habit == h && month.visits.iter().any(|v| &v.patient_id == p))
            .map(|(p, _)| p.clone())
            .unwrap()
    };
    let line = |token: &str, patient: &str| {
        call(
            &server,
            token,
            "POST",
            "/api/v1/paylater/line",
            Some(
                &json!({"patient_id": patient, "amount_fen": 5_000, "purpose": "test: at the desk"}),
            ),
        )
    };
    let never = habit(Habit::Never);
    let (status, answer) = line(&tokens.0["health"], &never);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["on_credit"], false, "{answer}");
    assert_eq!(answer["declined"], "suspended", "{answer}");
    assert!(answer["owed_fen"].as_i64().unwrap() > 0);
    let expected_line = book.line(&never);
    assert_eq!(answer["owed_fen"], expected_line.owed.0);
    let prompt = habit(Habit::Prompt);
    let (status, answer) = line(&tokens.0["health"], &prompt);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["on_credit"], true, "{answer}");
    assert_eq!(answer["limit_fen"], 100_000);
    // Another department without a grant naming patient_id raw learns nothing.
    let (status, answer) = line(&tokens.0["market"], &never);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["code"], "grant_required", "{answer}");
    assert!(answer.to_string().contains("grants request"), "{answer}");
    // A malformed id is refused, naming the field.
    let (status, answer) = line(&tokens.0["health"], "33' OR 1=1");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("patient_id"), "{answer}");
}

/// Every bill's steps by its payer's habit, and nothing stored twice.
fn assert_once_and_by_habit(server: &Server, tokens: &Tokens, month: &Month) {
    let charges = sql(server, tokens, "SELECT visit_id FROM paylater.charges");
    let distinct: BTreeSet<&str> = charges
        .iter()
        .map(|r| r["visit_id"].as_str().unwrap())
        .collect();
    assert_eq!(charges.len(), distinct.len(), "a visit decided twice");
    assert_eq!(distinct.len(), month.visits.len(), "a visit not decided");
    let steps = sql(
        server,
        tokens,
        "SELECT step_id, bill_id, patient_id, step FROM paylater.bill_steps",
    );
    let ids: BTreeSet<&str> = steps
        .iter()
        .map(|r| r["step_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), steps.len(), "a step sent twice");
    let habit: HashMap<&str, Habit> = month.habits.iter().map(|(p, h)| (p.as_str(), *h)).collect();
    let mut bills: BTreeMap<&str, (Habit, BTreeSet<&str>)> = BTreeMap::new();
    for r in &steps {
        let h = habit[r["patient_id"].as_str().unwrap()];
        bills
            .entry(r["bill_id"].as_str().unwrap())
            .or_insert((h, BTreeSet::new()))
            .1
            .insert(r["step"].as_str().unwrap());
    }
    assert!(bills.len() > 500, "{} bills", bills.len());
    for (bill, (h, taken)) in &bills {
        let want: &[&str] = match h {
            Habit::Prompt => &["opened", "paid"],
            Habit::AfterReminder => &["opened", "paid", "reminded"],
            Habit::Late => &["opened", "overdue", "paid", "reminded"],
            Habit::Never => &["opened", "overdue", "reminded"],
            Habit::Uninsured | Habit::Refused => &[],
        };
        let taken: Vec<&str> = taken.iter().copied().collect();
        assert_eq!(taken, want, "bill {bill} of a {h:?} payer");
    }
}

/// The month published while the server is killed at pseudo-random moments, the rest sent
/// again after each restart: nothing decided or sent twice, nothing missing.
#[test]
fn a_kill_never_bills_or_reminds_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    let tokens = Tokens::new(&server);
    let (config, month) = month();
    let batches = std::sync::Arc::new(batches(&config, &month));
    let mut next = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..3 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = next + 2 + (seed % 10) as usize;
        let (base, from) = (server.base.clone(), next);
        let (sent, acknowledged) = std::sync::mpsc::channel::<usize>();
        let to_send = batches.clone();
        let tokens_copy = Tokens(tokens.0.clone());
        let sender = std::thread::spawn(move || {
            for (i, batch) in to_send.iter().enumerate().skip(from) {
                if publish(&base, &tokens_copy, batch).is_err() {
                    return; // the server is gone
                }
                let _ = sent.send(i);
            }
        });
        for i in acknowledged.iter() {
            next = i + 1;
            if i + 1 >= kill_after {
                break;
            }
        }
        server.kill9();
        sender.join().unwrap();
        while let Ok(i) = acknowledged.try_recv() {
            next = i + 1;
        }
        server = start(dir.path(), &[]);
        server.caught_up("paylater");
        println!(
            "kill {round}: {next} of {} batches acknowledged, {} charges stored",
            batches.len(),
            sql(&server, &tokens, "SELECT visit_id FROM paylater.charges").len()
        );
    }
    let mut last = Vec::new();
    for batch in &batches[next..] {
        last.push(publish(&server.base, &tokens, batch).unwrap());
    }
    server.applied("paylater", &last);
    assert_once_and_by_habit(&server, &tokens, &month);
    // And a clean restart changes nothing.
    let before = ledger(&server, &tokens);
    server.stop();
    let server = start(dir.path(), &[]);
    server.caught_up("paylater");
    assert_eq!(ledger(&server, &tokens), before);
}
