//! A plan: every policy compiled for one table, each for its own day, with the work
//! neighbouring policies share (a common start of narrowing clauses, memoised values).

use citybrain_core::Date;

use super::BLOCK;
use super::compile::{ClauseKind, Program, compile};
use super::node::Node;
use super::share::share_subtrees;
use super::table::Table;
use crate::syntax::PolicyAst;

/// Policies compiled for one table, each for its own day.
pub struct Plan<'p> {
    pub(super) policies: Vec<(&'p PolicyAst, Program, Date)>,
    /// Per policy, how many of its first narrowing clauses are the previous policy's (a
    /// programme's variants of one template differ only in some parameters): within a
    /// block, their selection is taken from the previous policy instead of computed again.
    pub(super) shared: Vec<usize>,
    /// How many values several places compute, each once per block (see [`share_subtrees`]).
    pub(super) memos: usize,
    /// Rows per block ([`BLOCK`] unless set).
    pub(super) block_rows: usize,
}

/// The clauses that narrow a selection (those that cannot fail), in order.
pub(super) fn narrowing(p: &Program) -> Option<impl Iterator<Item = &Node>> {
    match p {
        Program::Fast { clauses, .. } => Some(
            clauses
                .iter()
                .filter(|c| c.1 == ClauseKind::Narrowing)
                .map(|c| &c.0),
        ),
        _ => None,
    }
}

impl<'p> Plan<'p> {
    /// Compiles every policy for `table`, each to be decided as on its day.
    pub fn new(policies: impl IntoIterator<Item = (&'p PolicyAst, Date)>, table: &Table) -> Self {
        let mut policies: Vec<_> = policies
            .into_iter()
            .map(|(p, on)| (p, compile(p, table, on), on))
            .collect();
        let memos = share_subtrees(&mut policies);
        // A decision does not depend on the order of clauses that cannot fail, so each
        // policy takes first the ones the previous policy also has, in its order: the
        // longer the common start, the more a block shares (see `shared`).
        for i in 1..policies.len() {
            let (before, after) = policies.split_at_mut(i);
            let prev: Vec<&Node> = match narrowing(&before[i - 1].1) {
                Some(it) => it.collect(),
                None => continue,
            };
            if let Program::Fast { clauses, .. } = &mut after[0].1 {
                let rank = |c: &(Node, ClauseKind)| match c.1 {
                    ClauseKind::MayFlag => usize::MAX,
                    ClauseKind::Narrowing => prev
                        .iter()
                        .position(|p| **p == c.0)
                        .unwrap_or(usize::MAX - 1),
                };
                // Stable: clauses not in the previous policy keep their order.
                clauses.sort_by_key(rank);
            }
        }
        let shared = (0..policies.len())
            .map(|i| {
                let prev = i.checked_sub(1).and_then(|j| narrowing(&policies[j].1));
                match (prev, narrowing(&policies[i].1)) {
                    (Some(a), Some(b)) => a.zip(b).take_while(|(x, y)| x == y).count(),
                    _ => 0,
                }
            })
            .collect();
        Self {
            policies,
            shared,
            memos,
            block_rows: BLOCK,
        }
    }
    /// Runs blocks of `rows` rows (at least one) instead of [`BLOCK`]: small blocks let a
    /// test cross block boundaries with few rows.
    pub fn with_block_rows(mut self, rows: usize) -> Self {
        self.block_rows = rows.max(1);
        self
    }
    /// How many distinct values the plan computes once per block for several places.
    pub fn shared_values(&self) -> usize {
        self.memos
    }
    /// Policies that run through the batch evaluator, and why.
    pub fn not_compiled(&self) -> Vec<(&str, &str)> {
        self.policies
            .iter()
            .filter_map(|(p, prog, _)| match prog {
                Program::Batch { why, .. } => Some((p.id.as_str(), why.0.as_str())),
                _ => None,
            })
            .collect()
    }
    pub fn len(&self) -> usize {
        self.policies.len()
    }
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}
