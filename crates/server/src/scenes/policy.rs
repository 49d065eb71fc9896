//! Policy delivery's payouts (亲清在线): a matching run decides every loaded policy for every
//! enterprise in `market.enterprises` and writes what each is paid to `policy.payouts`.
//!
//! Exactly once: a payout's id is fixed by what it pays for (policy, the policy's period,
//! enterprise), never by the run, and a run first reads the ids already stored and writes
//! only the others, in batches the hub fsyncs before it answers. A run killed at any point
//! has stored whole batches only (the hub drops a torn tail on restart), so running it again
//! pays exactly the enterprises it had not yet paid, and a second run of a finished one pays
//! nobody. One run at a time per server (a second gets 409), since two at once would both
//! see an id as unpaid. The decisions are computed again on a rerun, deterministically from
//! the same table: if the table changed between the two, payouts already made stand as made.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Int64Type};
use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{Format, Hub, OnError};
use citybrain_rules::fast::Table;
use citybrain_rules::syntax::{PolicyAst, Type};
use serde::Serialize;

mod api;
pub use api::{PolicyDelivery, load, run_payouts};

/// The payout ledger's dataset.
pub const DEFINITIONS: &[(&str, &str)] = &[(
    "policy.payouts.toml",
    r#"name = "policy.payouts"
owner = "market"
sharing = "conditional"
description = "Every enterprise a matching run found eligible, with what it qualified for and what it is paid (less where a budget ran short). payout_id (policy/period/enterprise) is written once, ever."
event_time = "decided_at"

[[fields]]
name = "payout_id"
type = "string"

[[fields]]
name = "run"
type = "string"

[[fields]]
name = "policy"
type = "string"

[[fields]]
name = "period_start"
type = "date"

[[fields]]
name = "enterprise_id"
type = "string"

[[fields]]
name = "qualified"
type = "money"

[[fields]]
name = "paid"
type = "money"

[[fields]]
name = "decided_at"
type = "timestamp"
"#,
)];

/// Payouts per fsynced batch: a kill loses at most one unacknowledged batch, which the
/// next run writes.
pub const BATCH: usize = 2_000;

/// The loaded policies and the one-run-at-a-time lock.
#[derive(Debug)]
pub struct PolicyScene {
    pub policies: Vec<PolicyAst>,
    pub running: tokio::sync::Mutex<()>,
}

impl PolicyScene {
    /// Loads policy files' texts (name, text); the first problem is the error.
    pub fn load<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut policies = Vec::new();
        for (name, text) in files {
            let p = citybrain_rules::load(text).map_err(|d| {
                format!(
                    "{name}:{}:{}: {} (run `citybrain policy check` on it)",
                    d[0].pos.line, d[0].pos.col, d[0].message
                )
            })?;
            policies.push(p.ast);
        }
        Ok(Self {
            policies,
            running: tokio::sync::Mutex::new(()),
        })
    }
}

/// What a run did, per policy and in all.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub run: String,
    pub enterprises: usize,
    pub policies: usize,
    pub eligible: u64,
    /// Payouts written by this run.
    pub paid_now: u64,
    /// Payouts this run found already written (by an earlier or interrupted run).
    pub already_paid: u64,
    pub total_paid_fen: i64,
    pub per_policy: Vec<PolicyLine>,
}

#[derive(Debug, Serialize)]
pub struct PolicyLine {
    pub policy: String,
    pub eligible: u64,
    pub qualified_fen: i64,
    pub paid_fen: i64,
    pub errors: u64,
}

/// The columns the policies read, from query results, as the fast evaluator's table; and
/// the enterprise ids.
pub fn table_from_batches(
    batches: &[RecordBatch],
    policies: &[&PolicyAst],
) -> Result<(Vec<String>, Table), String> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut table = Table::new(rows);
    let strings = |name: &str| -> Result<Vec<String>, String> {
        let mut out = Vec::with_capacity(rows);
        for b in batches {
            let col = b
                .column_by_name(name)
                .ok_or_else(|| format!("the inputs have no column {name}"))?;
            let col = arrow::compute::cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
            let s = col.as_string::<i32>();
            out.extend((0..s.len()).map(|i| s.value(i).to_string()));
        }
        Ok(out)
    };
    let ids = strings("enterprise_id")?;
    let mut done: HashSet<&str> = HashSet::new();
    for p in policies {
        for input in &p.inputs {
            if !done.insert(input.name.as_str()) {
                continue;
            }
            let name = input.name.as_str();
            let column = |want: &DataType| -> Result<Vec<arrow::array::ArrayRef>, String> {
                batches
                    .iter()
                    .map(|b| {
                        let c = b.column_by_name(name).ok_or_else(|| {
                            format!("the inputs have no column {name} (policy {})", p.id)
                        })?;
                        if c.null_count() > 0 {
                            return Err(format!(
                                "the inputs' {name} has missing values (policy {} needs every one)",
                                p.id
                            ));
                        }
                        if c.data_type() != want {
                            return Err(format!(
                                "the inputs' {name} is {}, policy {} reads it as {}",
                                c.data_type(),
                                p.id,
                                input.ty.name()
                            ));
                        }
                        Ok(c.clone())
                    })
                    .collect()
            };
            let ints = |cols: Vec<arrow::array::ArrayRef>| -> Vec<i64> {
                cols.iter()
                    .flat_map(|c| c.as_primitive::<Int64Type>().values().to_vec())
                    .collect()
            };
            let added = match input.ty {
                Type::Int => table.add_int(name, ints(column(&DataType::Int64)?)),
                Type::Money | Type::MoneyExact => {
                    table.add_money(name, ints(column(&DataType::Int64)?))
                }
                Type::Bool => table.add_bool(
                    name,
                    column(&DataType::Boolean)?
                        .iter()
                        .flat_map(|c| c.as_boolean().iter().map(|v| v.unwrap_or(false)))
                        .collect(),
                ),
                Type::Date => table.add_date(
                    name,
                    column(&DataType::Date32)?
                        .iter()
                        .flat_map(|c| c.as_primitive::<Date32Type>().values().to_vec())
                        .collect(),
                ),
                Type::Text => {
                    let v = strings(name)?;
                    table.add_text(name, &v)
                }
                Type::Rate => {
                    return Err(format!(
                        "policy {} reads {name} as a rate: the hub has no rate type yet (store it as a decimal string in an int of basis points)",
                        p.id
                    ));
                }
            };
            added.map_err(|e| e.to_string())?;
        }
    }
    Ok((ids, table))
}

/// A payout's id: what it pays for.
pub fn payout_id(policy: &PolicyAst, enterprise: &str) -> String {
    let period = policy
        .effective
        .map_or_else(|| "always".to_string(), |e| e.0.to_string());
    format!("{}/{period}/{enterprise}", policy.id)
}

#[derive(Serialize)]
struct PayoutRow<'a> {
    payout_id: String,
    run: &'a str,
    policy: &'a str,
    period_start: Option<String>,
    enterprise_id: &'a str,
    qualified: i64,
    paid: i64,
    decided_at: String,
}

/// Decides every policy for every enterprise and writes the payouts not yet written, in
/// fsynced batches. `paid` holds the ids already in `policy.payouts`.
pub fn pay(
    hub: &Hub,
    scene: &PolicyScene,
    run: &str,
    ids: &[String],
    table: &Table,
    paid: &HashSet<String>,
    now: Timestamp,
) -> Result<RunReport, String> {
    let policies: Vec<&PolicyAst> = scene.policies.iter().collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (results, _) = citybrain_rules::matching::run_all(&policies, table, threads, |_| true);
    let dataset = DatasetName::parse("policy.payouts").expect("a valid name");
    let mut report = RunReport {
        run: run.to_string(),
        enterprises: table.rows(),
        policies: policies.len(),
        eligible: 0,
        paid_now: 0,
        already_paid: 0,
        total_paid_fen: 0,
        per_policy: Vec::new(),
    };
    let decided_at = now.to_string();
    let mut batch = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<u8>| -> Result<(), String> {
        if !batch.is_empty() {
            hub.ingest(&dataset, Format::Ndjson, batch, OnError::Reject, now)
                .map_err(|e| format!("writing policy.payouts: {e}"))?;
            batch.clear();
        }
        Ok(())
    };
    let mut pending = 0usize;
    for (ast, r) in policies.iter().zip(&results) {
        report.eligible += r.eligible;
        report.total_paid_fen += r.paid as i64;
        report.per_policy.push(PolicyLine {
            policy: ast.id.clone(),
            eligible: r.eligible,
            qualified_fen: r.asked as i64,
            paid_fen: r.paid as i64,
            errors: r.errors,
        });
        let period_start = ast.effective.map(|e| e.0.to_string());
        for (row, qualified, pay) in &r.payouts {
            let enterprise = ids[*row as usize].as_str();
            let id = payout_id(ast, enterprise);
            if paid.contains(&id) {
                report.already_paid += 1;
                continue;
            }
            let line = PayoutRow {
                payout_id: id,
                run,
                policy: &ast.id,
                period_start: period_start.clone(),
                enterprise_id: enterprise,
                qualified: qualified.0,
                paid: pay.0,
                decided_at: decided_at.clone(),
            };
            serde_json::to_writer(&mut batch, &line).map_err(|e| e.to_string())?;
            batch.push(b'\n');
            pending += 1;
            report.paid_now += 1;
            if pending == BATCH {
                flush(&mut batch)?;
                pending = 0;
            }
        }
    }
    flush(&mut batch)?;
    Ok(report)
}

/// One enterprise's facts (the first row of `batches`) as the interpreter takes them.
pub fn facts_from_row(
    batches: &[RecordBatch],
    policies: &[&PolicyAst],
) -> Result<std::collections::HashMap<String, citybrain_rules::Value>, String> {
    use citybrain_rules::Value;
    use citybrain_rules::eval::Ratio;
    let mut facts = std::collections::HashMap::new();
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or("no such enterprise")?;
    for p in policies {
        for input in &p.inputs {
            let name = input.name.as_str();
            if facts.contains_key(name) {
                continue;
            }
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| format!("the inputs have no column {name}"))?;
            let v = match input.ty {
                Type::Int | Type::Money | Type::MoneyExact => Value::Num(Ratio::int(i128::from(
                    col.as_primitive::<Int64Type>().value(0),
                ))),
                Type::Bool => Value::Bool(col.as_boolean().value(0)),
                Type::Date => Value::Date(citybrain_core::Date(
                    col.as_primitive::<Date32Type>().value(0),
                )),
                Type::Text => {
                    let c =
                        arrow::compute::cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
                    Value::Text(c.as_string::<i32>().value(0).to_string())
                }
                Type::Rate => return Err(format!("{name}: the hub has no rate type yet")),
            };
            facts.insert(name.to_string(), v);
        }
    }
    Ok(facts)
}

/// Every policy's decision for one enterprise, explained clause by clause (amounts in fen).
pub fn explain(
    scene: &PolicyScene,
    facts: &std::collections::HashMap<String, citybrain_rules::Value>,
) -> Vec<serde_json::Value> {
    scene
        .policies
        .iter()
        .map(|p| {
            let on = citybrain_rules::matching::decision_day(p);
            match citybrain_rules::decide(p, facts, on) {
                Ok(d) => serde_json::json!({
                    "policy": p.id,
                    "title": p.title,
                    "department": p.department,
                    "decided_on": on.to_string(),
                    "eligible": d.eligible,
                    "clauses": d.clauses.iter().map(|c| serde_json::json!({
                        "clause": c.name,
                        "held": c.held,
                        "values": c.values.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "base_amount_fen": d.base_amount.map(|f| f.0),
                    "exception": d.exception,
                    "amount_fen": d.amount.map(|f| f.0),
                }),
                Err(e) => serde_json::json!({"policy": p.id, "title": p.title, "error": e.to_string()}),
            }
        })
        .collect()
}
