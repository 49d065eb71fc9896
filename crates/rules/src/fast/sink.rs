//! Where decisions go: a [`Sink`] per thread receives each policy's [`BlockResult`];
//! [`Collect`] keeps every decision, [`Claims`] counts and totals per policy.

use std::collections::HashMap;

use citybrain_core::Fen;

use crate::batch::Outcome;
use crate::eval::EvalError;

/// One policy's decisions for one block of rows.
pub struct BlockResult<'a> {
    /// The policy's position in the plan.
    pub policy: usize,
    pub first_row: usize,
    pub rows: usize,
    /// The eligible rows (offsets from `first_row`, increasing).
    pub eligible: &'a [u32],
    /// Their amounts in fen, in the same order (`None`: the policy has no amount).
    pub amount: &'a [Option<Fen>],
    /// Rows whose decision is an error (they are not eligible above).
    pub errors: &'a [(usize, EvalError)],
}

/// Receives decisions block by block (one per thread).
pub trait Sink {
    fn block(&mut self, result: &BlockResult<'_>);
}

/// A sink that keeps every decision (tests and small tables).
#[derive(Debug, Default)]
pub struct Collect {
    /// (policy, row) → outcome, in no particular order.
    pub decisions: Vec<(usize, usize, Result<Outcome, EvalError>)>,
}

impl Sink for Collect {
    fn block(&mut self, r: &BlockResult<'_>) {
        let errors: HashMap<usize, &EvalError> = r.errors.iter().map(|(i, e)| (*i, e)).collect();
        let eligible: HashMap<usize, Option<Fen>> = r
            .eligible
            .iter()
            .zip(r.amount)
            .map(|(i, a)| (*i as usize, *a))
            .collect();
        for i in 0..r.rows {
            let row = r.first_row + i;
            let o = match errors.get(&row) {
                Some(e) => Err((*e).clone()),
                None => Ok(match eligible.get(&i) {
                    Some(a) => Outcome {
                        eligible: true,
                        amount: *a,
                    },
                    None => Outcome {
                        eligible: false,
                        amount: None,
                    },
                }),
            };
            self.decisions.push((r.policy, row, o));
        }
    }
}

/// One policy's decisions, summed, with the claims kept where asked for.
#[derive(Debug, Default, Clone)]
pub struct PolicyClaims {
    pub eligible: u64,
    /// Sum of the eligible amounts, in fen.
    pub asked: i128,
    pub errors: u64,
    /// Σ (row + 1) · amount over the eligible rows, modulo 2³¹ − 1: two runs (or two
    /// engines) that agree on it agree on every amount but with odds of about 1 in 2³¹.
    pub checksum: u64,
    /// The first error, with its row (for the message).
    pub first_error: Option<(usize, EvalError)>,
    /// (row, amount) of each eligible row, when kept; rows in order after [`Claims::merge`].
    pub claims: Vec<(u32, Fen)>,
}

pub(super) const CHECKSUM_MODULUS: u64 = (1 << 31) - 1;

/// A sink that counts and totals per policy, keeping the claims of the policies asked for
/// (to share a budget or write payouts): the rest cost no memory per enterprise.
#[derive(Debug, Default, Clone)]
pub struct Claims {
    pub keep: Vec<bool>,
    pub per_policy: Vec<PolicyClaims>,
}

impl Claims {
    pub fn new(keep: Vec<bool>) -> Self {
        let per_policy = vec![PolicyClaims::default(); keep.len()];
        Self { keep, per_policy }
    }

    /// Adds up the per-thread parts; claims end up in row order.
    pub fn merge(parts: Vec<Claims>) -> Claims {
        let mut parts = parts.into_iter();
        let Some(mut out) = parts.next() else {
            return Claims::default();
        };
        for p in parts {
            for (o, x) in out.per_policy.iter_mut().zip(p.per_policy) {
                o.eligible += x.eligible;
                o.asked += x.asked;
                o.errors += x.errors;
                o.checksum = (o.checksum + x.checksum) % CHECKSUM_MODULUS;
                o.first_error = match (o.first_error.take(), x.first_error) {
                    (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
                    (a, b) => a.or(b),
                };
                o.claims.extend(x.claims);
            }
        }
        for o in &mut out.per_policy {
            o.claims.sort_unstable_by_key(|c| c.0);
        }
        out
    }
}

impl Sink for Claims {
    fn block(&mut self, r: &BlockResult<'_>) {
        let keep = self.keep.get(r.policy).copied().unwrap_or(false);
        let t = &mut self.per_policy[r.policy];
        t.errors += r.errors.len() as u64;
        if let Some(first) = r.errors.first()
            && t.first_error.as_ref().is_none_or(|f| f.0 > first.0)
        {
            t.first_error = Some(first.clone());
        }
        let mut asked = 0i128;
        let count = r.eligible.len() as u64;
        // Exact within a block (|row · fen| < 2^95, 4,096 of them), reduced once.
        let mut weighted = 0i128;
        for (i, a) in r.eligible.iter().zip(r.amount) {
            let fen = a.unwrap_or(Fen(0));
            asked += i128::from(fen.0);
            weighted += (r.first_row + *i as usize + 1) as i128 * i128::from(fen.0);
            if keep {
                t.claims.push(((r.first_row + *i as usize) as u32, fen));
            }
        }
        t.eligible += count;
        t.asked += asked;
        let m = i128::from(CHECKSUM_MODULUS);
        t.checksum = ((i128::from(t.checksum) + weighted.rem_euclid(m)) % m) as u64;
    }
}
