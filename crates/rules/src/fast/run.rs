//! Running a plan: one policy over one block (the selection narrowed clause by clause, the
//! amount, the flagged rows handed to the interpreter), and the blocks over threads.

use std::collections::HashMap;

use citybrain_core::Fen;

use super::block::Block;
use super::compile::{ClauseKind, Program};
use super::node::{Cmp, Node};
use super::plan::Plan;
use super::sink::{BlockResult, Sink};
use super::table::Table;
use super::values::{BlockValues, Evaluated, Pool, pick, values};
use crate::batch::Outcome;
use crate::eval::{self, EvalError, Value};

/// Per-thread scratch space for one block.
#[derive(Default)]
pub(super) struct Scratch {
    pool: Pool,
    /// Block rows eligible so far (increasing), then eligible.
    sel: Vec<u32>,
    /// Block rows flagged for the interpreter (increasing, no repeats once sorted).
    flagged: Vec<u32>,
    /// Amounts of the rows in `sel`.
    amount: Vec<Option<Fen>>,
    errors: Vec<(usize, EvalError)>,
    /// Merging the interpreter's decisions in.
    merged: Vec<(u32, Option<Fen>)>,
    /// The selection (and whether it is still every row) after each narrowing clause of
    /// the previous policy, for the next to start from (see [`Plan`]'s `shared`).
    prefix: Vec<(Vec<u32>, bool)>,
}

/// Narrows `sel` by a clause of the shape `column OP constant`, `column` or `not column`
/// in one pass over the column; false (and nothing done) for any other clause.
pub(super) fn narrow_direct(
    node: &Node,
    block: &Block<'_, '_>,
    sel: &mut Vec<u32>,
    dense: bool,
) -> bool {
    let (col, op, c) = match node {
        Node::Cmp(op, a, b) => match (&**a, &**b) {
            (Node::Col(i), Node::Const(c)) => (*i, *op, *c),
            (Node::Const(c), Node::Col(i)) => (*i, op.swap(), *c),
            _ => return false,
        },
        Node::Col(i) => (*i, Cmp::Ne, 0),
        Node::Not(x) => match &**x {
            Node::Col(i) => (*i, Cmp::Eq, 0),
            _ => return false,
        },
        _ => return false,
    };
    let vals = &block.table.cols[col].vals[block.from..block.from + block.n];
    match op {
        Cmp::Eq => narrow_by(vals, sel, dense, |v| v == c),
        Cmp::Ne => narrow_by(vals, sel, dense, |v| v != c),
        Cmp::Lt => narrow_by(vals, sel, dense, |v| v < c),
        Cmp::Le => narrow_by(vals, sel, dense, |v| v <= c),
        Cmp::Gt => narrow_by(vals, sel, dense, |v| v > c),
        Cmp::Ge => narrow_by(vals, sel, dense, |v| v >= c),
    }
    true
}

#[inline(always)]
pub(super) fn narrow_by(vals: &[i64], sel: &mut Vec<u32>, dense: bool, keep: impl Fn(i64) -> bool) {
    if dense {
        sel.resize(vals.len(), 0);
        let mut k = 0;
        for (j, v) in vals.iter().enumerate() {
            sel[k] = j as u32;
            k += usize::from(keep(*v));
        }
        sel.truncate(k);
    } else {
        let mut k = 0;
        for j in 0..sel.len() {
            let row = sel[j];
            sel[k] = row;
            k += usize::from(keep(vals[row as usize]));
        }
        sel.truncate(k);
    }
}

pub(super) fn save_prefix(prefix: &mut Vec<(Vec<u32>, bool)>, k: usize, sel: &[u32], dense: bool) {
    if prefix.len() <= k {
        prefix.resize_with(k + 1, Default::default);
    }
    prefix[k].0.clear();
    prefix[k].0.extend_from_slice(sel);
    prefix[k].1 = dense;
}

/// Keeps the rows of `sel` whose value in `vs` (aligned with `sel`, or with the whole block
/// when `dense`) is not zero.
#[inline]
pub(super) fn narrow(sel: &mut Vec<u32>, vs: &[i64], dense: bool, n: usize) {
    if dense {
        sel.resize(n, 0);
        let mut k = 0;
        for (j, v) in vs.iter().enumerate().take(n) {
            sel[k] = j as u32;
            k += usize::from(*v != 0);
        }
        sel.truncate(k);
    } else {
        let mut k = 0;
        for j in 0..sel.len() {
            let keep = vs[j] != 0;
            sel[k] = sel[j];
            k += usize::from(keep);
        }
        sel.truncate(k);
    }
}

pub(super) fn run_policy<S: Sink>(
    plan: &Plan<'_>,
    index: usize,
    block: &Block<'_, '_>,
    s: &mut Scratch,
    sink: &mut S,
) {
    let (policy, program, on) = &plan.policies[index];
    let on = *on;
    let n = block.n;
    s.sel.clear();
    s.flagged.clear();
    s.amount.clear();
    s.errors.clear();
    match program {
        Program::Fails(e) => {
            s.errors.extend((0..n).map(|i| (block.from + i, e.clone())));
        }
        Program::Batch { inputs, .. } => {
            let cols = block.table.slice(inputs, block.from, block.from + n);
            match crate::batch::decide_all(policy, &cols, on, 1) {
                Ok(outcomes) => {
                    for (i, o) in outcomes.into_iter().enumerate() {
                        match o {
                            Ok(Outcome { eligible, amount }) => {
                                if eligible {
                                    s.sel.push(i as u32);
                                    s.amount.push(amount);
                                }
                            }
                            Err(e) => s.errors.push((block.from + i, e)),
                        }
                    }
                }
                Err(e) => {
                    s.errors.extend((0..n).map(|i| (block.from + i, e.clone())));
                }
            }
        }
        Program::Fast {
            clauses,
            amount,
            amount_scale,
            exceptions,
            inputs,
        } => {
            // Clauses that cannot fail run on the rows still eligible only (a selection
            // that narrows clause by clause); a clause that can fail runs on every row,
            // since its error decides even a row another clause rules out. The order of
            // clauses does not change a decision, so the narrowing ones go first. All the
            // bookkeeping is per selected row, so a selective policy costs little.
            let mut sel = std::mem::take(&mut s.sel);
            let mut dense = true;
            let share = plan.shared[index];
            let next_shares = plan.shared.get(index + 1).copied().unwrap_or(0);
            if share > 0 {
                let (from, was_dense) = &s.prefix[share - 1];
                sel.clear();
                sel.extend_from_slice(from);
                dense = *was_dense;
            }
            for (k, (node, _)) in clauses
                .iter()
                .filter(|c| c.1 == ClauseKind::Narrowing)
                .enumerate()
            {
                if k < share {
                    continue;
                }
                if !dense && sel.is_empty() {
                    for k2 in k..next_shares {
                        save_prefix(&mut s.prefix, k2, &sel, dense);
                    }
                    break;
                }
                // The commonest clauses (a column against a constant, a yes/no column)
                // narrow the selection directly, in one pass.
                if narrow_direct(node, block, &mut sel, dense) {
                    dense = false;
                    if k < next_shares {
                        save_prefix(&mut s.prefix, k, &sel, dense);
                    }
                    continue;
                }
                // Gathering the selected rows pays only when it leaves out many: a
                // selection of more than half the block is evaluated whole, then picked.
                let whole = dense || sel.len() * 2 > n;
                let r = if whole {
                    block.eval(&mut s.pool, node)
                } else {
                    block.select(&sel).eval(&mut s.pool, node)
                };
                // The analysis proved no row can be flagged here (the property test checks
                // it); were one flagged anyway, the interpreter still decides it.
                debug_assert!(
                    r.flags.as_ref().is_none_or(|f| !f.contains(&true)),
                    "a clause that cannot fail flagged a row: {node:?}"
                );
                if let Some(f) = &r.flags {
                    if dense {
                        s.flagged.extend((0..n as u32).filter(|j| f[*j as usize]));
                    } else {
                        for (j, row) in sel.iter().enumerate() {
                            if f[if whole { *row as usize } else { j }] {
                                s.flagged.push(*row);
                            }
                        }
                    }
                }
                match &r.values {
                    BlockValues::Const(c) => {
                        if *c == 0 {
                            sel.clear();
                            dense = false;
                        }
                    }
                    v if whole && !dense => {
                        let vs = values(v);
                        sel.retain(|i| vs[*i as usize] != 0);
                    }
                    v => {
                        narrow(&mut sel, values(v), dense, n);
                        dense = false;
                    }
                }
                s.pool.give(r);
                if k < next_shares {
                    save_prefix(&mut s.prefix, k, &sel, dense);
                }
            }
            if dense {
                sel.clear();
                sel.extend(0..n as u32);
            }
            for (node, _) in clauses.iter().filter(|c| c.1 == ClauseKind::MayFlag) {
                let r = block.eval(&mut s.pool, node);
                match &r.values {
                    BlockValues::Const(c) => {
                        if *c == 0 {
                            sel.clear();
                        }
                    }
                    v => {
                        let vs = values(v);
                        sel.retain(|i| vs[*i as usize] != 0);
                    }
                }
                if let Some(f) = &r.flags {
                    s.flagged.extend((0..n as u32).filter(|i| f[*i as usize]));
                }
                s.pool.give(r);
            }
            if !s.flagged.is_empty() {
                s.flagged.sort_unstable();
                s.flagged.dedup();
                let flagged = &s.flagged;
                sel.retain(|i| flagged.binary_search(i).is_err());
            }
            // The amount, for the rows eligible and not flagged only.
            match amount {
                None => s.amount.resize(sel.len(), None),
                Some(_) if sel.is_empty() => {}
                Some(base) => {
                    let m = sel.len();
                    // As for clauses: a dense selection is evaluated whole, then picked.
                    let whole = m * 2 > n;
                    let sub = if whole {
                        block.select(&[])
                    } else {
                        block.select(&sel)
                    };
                    let on_rows = if whole { block } else { &sub };
                    let at = |j: usize| if whole { sel[j] as usize } else { j };
                    let den = 10i64.pow(*amount_scale);
                    let picked = whole.then_some(&sel[..]);
                    let r = on_rows.eval(&mut s.pool, base);
                    let mut vals: Vec<i64> = s.pool.vals(m);
                    pick(&r.values, picked, &mut vals);
                    let mut flags = r.flags;
                    if let BlockValues::Buf(b) = r.values {
                        s.pool.vals.push(b);
                    }
                    if !exceptions.is_empty() {
                        let mut decided = s.pool.flags(m);
                        let (mut wv, mut xv) = (s.pool.vals(m), s.pool.vals(m));
                        for (when, value) in exceptions {
                            let w = on_rows.eval(&mut s.pool, when);
                            let x = on_rows.eval(&mut s.pool, value);
                            pick(&w.values, picked, &mut wv);
                            pick(&x.values, picked, &mut xv);
                            for j in 0..m {
                                let take = !decided[j] & (wv[j] != 0);
                                decided[j] |= take;
                                vals[j] = if take { xv[j] } else { vals[j] };
                            }
                            // Conservative: any flag of an exception sends the row to the
                            // interpreter, which knows which exceptions it reached.
                            flags = s.pool.union(flags, w.flags);
                            flags = s.pool.union(flags, x.flags);
                            s.pool.give(Evaluated {
                                values: w.values,
                                flags: None,
                            });
                            s.pool.give(Evaluated {
                                values: x.values,
                                flags: None,
                            });
                        }
                        s.pool.flags.push(decided);
                        s.pool.vals.push(wv);
                        s.pool.vals.push(xv);
                    }
                    if den == 1 {
                        s.amount.extend(vals.iter().map(|v| Some(Fen(*v))));
                    } else {
                        // Between fen: as the interpreter, no amount.
                        s.amount
                            .extend(vals.iter().map(|v| (v % den == 0).then(|| Fen(v / den))));
                    }
                    if let Some(f) = &flags {
                        // Rows whose amount could not be computed go to the interpreter.
                        let bad: Vec<bool> = (0..m).map(|j| f[at(j)]).collect();
                        let mut k = 0;
                        for j in 0..m {
                            if bad[j] {
                                s.flagged.push(sel[j]);
                            } else {
                                sel[k] = sel[j];
                                s.amount[k] = s.amount[j];
                                k += 1;
                            }
                        }
                        sel.truncate(k);
                        s.amount.truncate(k);
                        s.flagged.sort_unstable();
                        s.flagged.dedup();
                    }
                    s.pool.give_flags(flags);
                    s.pool.vals.push(vals);
                }
            }
            if !s.flagged.is_empty() {
                // The interpreter decides the flagged rows; merge them in, in row order.
                s.merged.clear();
                s.merged
                    .extend(sel.iter().copied().zip(s.amount.iter().copied()));
                for i in &s.flagged {
                    let row = block.from + *i as usize;
                    let facts: HashMap<String, Value> = inputs
                        .iter()
                        .map(|(name, c)| (name.clone(), block.table.value(*c, row)))
                        .collect();
                    match eval::decide(policy, &facts, on) {
                        Ok(d) if d.eligible => s.merged.push((*i, d.amount)),
                        Ok(_) => {}
                        Err(e) => s.errors.push((row, e)),
                    }
                }
                s.merged.sort_unstable_by_key(|m| m.0);
                sel.clear();
                s.amount.clear();
                for (i, a) in &s.merged {
                    sel.push(*i);
                    s.amount.push(*a);
                }
            }
            s.sel = sel;
        }
    }
    sink.block(&BlockResult {
        policy: index,
        first_row: block.from,
        rows: n,
        eligible: &s.sel,
        amount: &s.amount,
        errors: &s.errors,
    });
}

/// Runs every policy of `plan` over every row of `table`, block by block, on `threads`
/// threads (each with its own sink from `make_sink`; returned in thread order).
pub fn run<S: Sink + Send>(
    plan: &Plan<'_>,
    table: &Table,
    threads: usize,
    make_sink: impl Fn() -> S + Sync,
) -> Vec<S> {
    let rows_per_block = plan.block_rows;
    let blocks = table.rows.div_ceil(rows_per_block);
    let threads = threads.clamp(1, 64).min(blocks.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                let make_sink = &make_sink;
                sc.spawn(move || {
                    let mut sink = make_sink();
                    let mut scratch = Scratch::default();
                    loop {
                        // Blocks are handed out one at a time, so a slow block (many
                        // flagged rows) does not leave the other thread idle.
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if b >= blocks {
                            break;
                        }
                        let from = b * rows_per_block;
                        let block = Block {
                            table,
                            from,
                            n: rows_per_block.min(table.rows - from),
                            sel: None,
                        };
                        for p in 0..plan.policies.len() {
                            run_policy(plan, p, &block, &mut scratch, &mut sink);
                        }
                    }
                    sink
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a matching thread panicked"))
            .collect()
    })
}
