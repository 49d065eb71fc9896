//! Pseudonymise after grouping, not before.
//!
//! A pseudonym is a keyed, deterministic and (to 2^-64 odds per pair) injective function of
//! the raw value, so grouping rows by a pseudonymised column forms exactly the groups that
//! grouping by the raw column forms. When an aggregation's only use of a pseudonymised
//! column is as a plain grouping key, this rule lets the aggregation group the raw values
//! and pseudonymises its output keys instead: one pseudonym per group (500,000 plates)
//! rather than one per row (10 million passages). Nothing raw leaves the aggregation: the
//! mask moves from just above the scan to just above the aggregation's final step, and
//! everything between (the partial aggregation, the repartition by key, the final
//! aggregation) only compares and hashes keys.
//!
//! The rule refuses (leaves the plan as it is) whenever anything else touches a masked
//! column: an aggregate's argument, ordering or filter, a grouping expression that is more
//! than the column itself, grouping sets, or any operator between the mask and the
//! aggregation other than ones that only move rows. Masks that are not injective (plates
//! shown as `浙A·***45`, redaction) are never moved.
//!
//! It runs first among the physical optimizer's rules, before distribution is enforced, so
//! the repartitioning DataFusion adds afterwards hashes the raw keys below the final step
//! and pseudonyms above it, each where it is used.

use std::sync::Arc;

use citybrain_hub::MaskKind;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::repartition::RepartitionExec;

use crate::governed::{Apply, MaskExec};

#[derive(Debug, Default)]
pub struct LiftPseudonyms;

/// Operators that only move rows between partitions: raw keys may pass through them.
fn passes_rows(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<CoalescePartitionsExec>().is_some()
}

/// Follows single-child row movers down from `plan`; returns the chain and what is below.
fn through_movers(
    plan: &Arc<dyn ExecutionPlan>,
) -> (Vec<Arc<dyn ExecutionPlan>>, Arc<dyn ExecutionPlan>) {
    let mut chain = Vec::new();
    let mut at = plan.clone();
    while passes_rows(&at) && at.children().len() == 1 {
        let next = at.children()[0].clone();
        chain.push(at);
        at = next;
    }
    (chain, at)
}

/// `node` over a new only child, its properties recomputed.
fn replace_child(
    node: &Arc<dyn ExecutionPlan>,
    child: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    node.clone().replace_children(
        vec![child],
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// Rebuilds `chain` (top first) over a new bottom.
fn rebuild(
    chain: &[Arc<dyn ExecutionPlan>],
    bottom: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut plan = bottom;
    for node in chain.iter().rev() {
        plan = replace_child(node, plan)?;
    }
    Ok(plan)
}

/// For an aggregation reading `mask` directly: which of its grouping keys may group raw
/// values (their positions in the group list, and their columns in the mask's output), or
/// None when the aggregation uses a masked column in any other way.
fn liftable(agg: &AggregateExec, mask: &MaskExec) -> Option<Vec<(usize, usize)>> {
    if !agg.group_expr().is_single() || agg.group_expr().expr().is_empty() {
        return None;
    }
    let masked = |index: usize| {
        mask.applies()
            .get(index)
            .is_some_and(|a| !matches!(a, Apply::Keep))
    };
    // Aggregate arguments, orderings and filters must not touch a masked column.
    for aggr in agg.aggr_expr() {
        let all = aggr.all_expressions();
        for expr in all.args.iter().chain(all.order_by_exprs.iter()) {
            if collect_columns(expr).iter().any(|c| masked(c.index())) {
                return None;
            }
        }
    }
    for filter in agg.filter_expr().iter().flatten() {
        if collect_columns(filter).iter().any(|c| masked(c.index())) {
            return None;
        }
    }
    let mut lifted = Vec::new();
    for (position, (expr, _)) in agg.group_expr().expr().iter().enumerate() {
        let columns = collect_columns(expr);
        if !columns.iter().any(|c| masked(c.index())) {
            continue;
        }
        // Only the bare column, and only when its mask is a pseudonym.
        let column = expr.downcast_ref::<Column>()?;
        match mask.applies().get(column.index()) {
            Some(Apply::Mask(MaskKind::Pseudonym)) => lifted.push((position, column.index())),
            _ => return None,
        }
    }
    (!lifted.is_empty()).then_some(lifted)
}

/// If `node` is an aggregation that reads a mask (through row movers) and may group raw
/// values: `node` rebuilt over the scan with those keys raw, the mask, and the positions of
/// the keys in the aggregation's output.
type OverRaw = (
    Arc<dyn ExecutionPlan>,
    Arc<dyn ExecutionPlan>,
    Vec<(usize, usize)>,
);

fn over_raw(node: &Arc<dyn ExecutionPlan>) -> Result<Option<OverRaw>> {
    let Some(agg) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let (chain, bottom) = through_movers(agg.input());
    let Some(mask) = bottom.downcast_ref::<MaskExec>() else {
        return Ok(None);
    };
    let Some(lifted) = liftable(agg, mask) else {
        return Ok(None);
    };
    let raw = mask.with_raw_text(lifted.iter().map(|(_, c)| *c))?;
    let rebuilt = replace_child(node, rebuild(&chain, raw)?)?;
    Ok(Some((rebuilt, bottom, lifted)))
}

impl LiftPseudonyms {
    /// Rewrites one final (or single-step) aggregation, if it qualifies.
    fn lift(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(top) = plan.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let (aggregate, mask, keys) = match top.mode() {
            AggregateMode::Single | AggregateMode::SinglePartitioned => match over_raw(plan)? {
                Some(found) => found,
                None => return Ok(None),
            },
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                let (upper, below) = through_movers(top.input());
                let partial_step = below
                    .downcast_ref::<AggregateExec>()
                    .is_some_and(|p| matches!(p.mode(), AggregateMode::Partial));
                if !partial_step {
                    return Ok(None);
                }
                let Some((partial, mask, keys)) = over_raw(&below)? else {
                    return Ok(None);
                };
                // The final step's keys come first in its output, in the partial's order.
                (replace_child(plan, rebuild(&upper, partial)?)?, mask, keys)
            }
            _ => return Ok(None),
        };
        let Some(mask) = mask.downcast_ref::<MaskExec>() else {
            return Ok(None);
        };
        Ok(Some(mask.pseudonymise_output(aggregate, keys)?))
    }
}

impl PhysicalOptimizerRule for LiftPseudonyms {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            Ok(match self.lift(&node)? {
                // The rewritten node's aggregation is not visited again: its mask is now
                // above it and its input has raw keys only it may see.
                Some(rewritten) => Transformed::new(
                    rewritten,
                    true,
                    datafusion::common::tree_node::TreeNodeRecursion::Jump,
                ),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lift_pseudonyms_above_grouping"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
