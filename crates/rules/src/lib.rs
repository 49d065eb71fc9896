//! Rules as code for policy delivery (亲清在线): subsidy policies as files an official can
//! read and a developer can review, checked before they run.
//!
//! The key decision: a small language of our own rather than a general one. It has the types
//! of the domain (money in fen, decimal rates, dates) and refuses, when a file is loaded,
//! what would go wrong at payout time: money compared with a date, an unknown field, a
//! division with no guard, an amount that may fall between fen without a rounding rule. A
//! policy's eligibility is its named clauses, all of which must hold, so a decision explains
//! itself clause by clause; an exception overrides the base amount when its condition holds
//! (default logic, as in Catala). Tests live in the file. See docs/adr/2026-11-23-rule-language.md.

pub mod batch;
pub mod budget;
pub mod check;
pub mod eval;
pub mod fast;
pub mod matching;
pub mod shipped;
pub mod syntax;

use std::collections::HashMap;

pub use eval::{Decision, EvalError, Value, decide};
pub use syntax::{Diagnostic, PolicyAst, Pos};

/// A policy that parsed and type-checked.
#[derive(Debug, Clone)]
pub struct Policy {
    pub ast: PolicyAst,
}

/// Loads a policy file's text: the policy, or every problem found (sorted by position).
pub fn load(text: &str) -> Result<Policy, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let ast = syntax::parse(text, &mut diags);
    diags.extend(check::check(&ast));
    diags.sort_by_key(|d| d.pos);
    diags.dedup();
    if diags.is_empty() {
        Ok(Policy { ast })
    } else {
        Err(diags)
    }
}

/// A failed in-file test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestFailure {
    pub test: String,
    pub pos: Pos,
    pub message: String,
}

impl Policy {
    /// Runs the tests in the file.
    pub fn run_tests(&self) -> Vec<TestFailure> {
        let mut failures = Vec::new();
        for test in &self.ast.tests {
            let fail = |message: String| TestFailure {
                test: test.name.clone(),
                pos: test.pos,
                message,
            };
            let facts: Result<HashMap<String, Value>, EvalError> = test
                .given
                .iter()
                .map(|(n, e)| eval::constant(e).map(|v| (n.clone(), v)))
                .collect();
            let on = test
                .on
                .or(self.ast.effective.map(|e| e.0))
                .unwrap_or(citybrain_core::Date(0));
            let decision = match facts.and_then(|f| decide(&self.ast, &f, on)) {
                Ok(d) => d,
                Err(e) => {
                    failures.push(fail(e.to_string()));
                    continue;
                }
            };
            for expect in &test.expect {
                match expect {
                    syntax::Expect::Eligible(want) if decision.eligible != *want => {
                        let failed: Vec<&str> = decision.failed().collect();
                        failures.push(fail(format!(
                            "expected {}eligible, got {}eligible (failed: {})",
                            if *want { "" } else { "not " },
                            if decision.eligible { "" } else { "not " },
                            failed.join(", ")
                        )));
                    }
                    syntax::Expect::FailedClause(c) if !decision.failed().any(|f| f == c) => {
                        failures.push(fail(format!("expected clause {c} to fail; it held")));
                    }
                    syntax::Expect::Amount(e) => {
                        let want = eval::constant(e).ok();
                        let got = decision
                            .amount
                            .map(|f| Value::Num(eval::Ratio::int(i128::from(f.0))));
                        if want != got {
                            failures.push(fail(format!(
                                "expected amount {} fen, got {}",
                                want.map_or("?".into(), |v| v.to_string()),
                                decision
                                    .amount
                                    .map_or("none (not eligible)".into(), |f| format!(
                                        "{} fen",
                                        f.0
                                    ))
                            )));
                        }
                    }
                    _ => {}
                }
            }
        }
        failures
    }
}
