//! Values several policies of a plan compute, found once when the plan is made and
//! wrapped in [`Node::Memo`], so a block computes each of them once for all.

use std::collections::HashMap;

use citybrain_core::Date;

use super::compile::Program;
use super::node::{Node, Place, children_mut};
use crate::syntax::PolicyAst;

/// A value worth computing once for several places: two operations or more (one is as cheap
/// as copying its result).
pub(super) const MEMO_COST: usize = 2;

/// Cross-policy common subexpressions: a programme's policies are mostly variants of a few
/// templates that differ in some parameters, so most of what a variant computes (a layoff
/// rate compared with 5.5%, insurance paid times 60%) another policy has computed for the
/// same block already. Every value subtree found in two places or more (of any policies) is
/// wrapped in a [`Node::Memo`] at its largest; returns how many distinct ones.
pub(super) fn share_subtrees(policies: &mut [(&PolicyAst, Program, Date)]) -> usize {
    fn roots(p: &mut Program) -> Vec<&mut Node> {
        match p {
            Program::Fast {
                clauses,
                amount,
                exceptions,
                ..
            } => clauses
                .iter_mut()
                .map(|c| &mut c.0)
                .chain(amount.iter_mut())
                .chain(exceptions.iter_mut().flat_map(|(w, x)| [w, x]))
                .collect(),
            _ => Vec::new(),
        }
    }
    /// Counts the subtrees worth sharing; returns the operations in `node` (leaves are free).
    fn count(node: &mut Node, place: Place, seen: &mut HashMap<Node, usize>) -> usize {
        let mut cost = usize::from(!matches!(node, Node::Col(_) | Node::Const(_)));
        children_mut(node, place, &mut |c, at| cost += count(c, at, seen));
        if place == Place::Value && cost >= MEMO_COST {
            *seen.entry(node.clone()).or_default() += 1;
        }
        cost
    }
    fn wrap(
        node: &mut Node,
        place: Place,
        seen: &HashMap<Node, usize>,
        ids: &mut HashMap<Node, usize>,
    ) {
        if place == Place::Value && seen.get(node).is_some_and(|n| *n >= 2) {
            let next = ids.len();
            let id = *ids.entry(node.clone()).or_insert(next);
            let inner = std::mem::replace(node, Node::Const(0));
            *node = Node::Memo(id, Box::new(inner));
            return;
        }
        children_mut(node, place, &mut |c, at| wrap(c, at, seen, ids));
    }
    let mut seen = HashMap::new();
    for (_, p, _) in policies.iter_mut() {
        for r in roots(p) {
            count(r, Place::Value, &mut seen);
        }
    }
    let mut ids = HashMap::new();
    for (_, p, _) in policies.iter_mut() {
        for r in roots(p) {
            wrap(r, Place::Value, &seen, &mut ids);
        }
    }
    ids.len()
}
