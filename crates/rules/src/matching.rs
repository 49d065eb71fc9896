//! A matching run: every policy over every enterprise, each policy's budget shared, the
//! payouts in application order (the table's). Pure: the table comes in, payouts go out;
//! the ledger that makes them happen exactly once lives with the hub (server crate).

use citybrain_core::{Date, Fen};

use crate::budget::allocate;
use crate::eval::{self, EvalError, Value};
use crate::fast::{Claims, Plan, Table, run};
use crate::syntax::{BudgetRule, PolicyAst};

/// One policy's outcome over the table.
#[derive(Debug, Clone, Default)]
pub struct PolicyRun {
    pub eligible: u64,
    /// What the eligible enterprises qualified for, in all.
    pub asked: i128,
    /// What is paid, in all (the asked total, or the budget where it ran short).
    pub paid: i128,
    pub budget: Option<(Fen, BudgetRule)>,
    pub errors: u64,
    pub first_error: Option<(usize, EvalError)>,
    /// See [`crate::fast::PolicyClaims::checksum`].
    pub checksum: u64,
    /// (row, qualified, paid) per eligible enterprise, in row order, when kept.
    pub payouts: Vec<(u32, Fen, Fen)>,
}

/// A policy's budget, when it has one.
pub fn budget(ast: &PolicyAst) -> Option<(Fen, BudgetRule)> {
    let b = ast.budget.as_ref()?;
    match eval::constant(b).ok()? {
        Value::Num(r) if r.den == 1 => i64::try_from(r.num).ok().map(|f| (Fen(f), ast.budget_rule)),
        _ => None,
    }
}

/// The day a matching run decides a policy on: its first effective day.
pub fn decision_day(ast: &PolicyAst) -> Date {
    ast.effective.map_or(Date(0), |e| e.0)
}

/// Decides every policy for every row of `table` on `threads` threads and shares budgets.
/// Payouts are kept for the policies where `keep` says so (a budget needs them anyway).
pub fn run_all(
    policies: &[&PolicyAst],
    table: &Table,
    threads: usize,
    keep: impl Fn(usize) -> bool,
) -> (Vec<PolicyRun>, Vec<(String, String)>) {
    let plan = Plan::new(policies.iter().map(|p| (*p, decision_day(p))), table);
    let not_compiled = plan
        .not_compiled()
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let keep: Vec<bool> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| keep(i) || budget(p).is_some())
        .collect();
    let results = Claims::merge(run(&plan, table, threads, || Claims::new(keep.clone())));
    let runs = policies
        .iter()
        .zip(results.per_policy)
        .map(|(ast, r)| {
            let budget = budget(ast);
            let claims: Vec<Fen> = r.claims.iter().map(|c| c.1).collect();
            let paid = match budget {
                Some((b, rule)) => allocate(&claims, b, rule),
                None => claims.clone(),
            };
            let paid_total = if r.claims.is_empty() {
                r.asked
            } else {
                paid.iter().map(|f| i128::from(f.0)).sum()
            };
            PolicyRun {
                eligible: r.eligible,
                asked: r.asked,
                paid: paid_total,
                budget,
                errors: r.errors,
                first_error: r.first_error,
                checksum: r.checksum,
                payouts: r
                    .claims
                    .iter()
                    .zip(paid)
                    .map(|((row, q), p)| (*row, *q, p))
                    .collect(),
            }
        })
        .collect();
    (runs, not_compiled)
}
