//! Stopping a statement that no one waits for any more.
//!
//! Key decision: aborting a statement's task is not enough. A task is only cancelled when
//! it next yields, and DataFusion operators that find little to output (a nested loop join
//! whose filter matches almost nothing, an aggregation over a long input) can compute for
//! tens of seconds inside one poll: the probe saw a cross join keep a core busy for two
//! minutes after its 408. So every operator's input is wrapped in [`CancelExec`], which
//! checks the statement's flag each time a batch is asked for and ends the stream with an
//! error once it is set. The granularity is one input batch of the busiest operator.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::StreamExt;

/// Set when the statement's caller stopped waiting.
pub(crate) type CancelFlag = Arc<AtomicBool>;

/// The error a cancelled statement's streams end with (no one reads it).
fn cancelled() -> DataFusionError {
    DataFusionError::Execution("the statement was cancelled".into())
}

/// Passes batches through until the flag is set.
#[derive(Debug)]
pub(crate) struct CancelExec {
    input: Arc<dyn ExecutionPlan>,
    flag: CancelFlag,
}

impl DisplayAs for CancelExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CancelExec")
    }
}

impl ExecutionPlan for CancelExec {
    fn name(&self) -> &str {
        "CancelExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("CancelExec has one child".into()))?;
        Ok(Arc::new(CancelExec {
            input,
            flag: self.flag.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if self.flag.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let flag = self.flag.clone();
        // Operators stop at their first error, so one is enough to end the statement.
        let stream = input.map(move |batch| {
            if flag.load(Ordering::Relaxed) {
                Err(cancelled())
            } else {
                batch
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Wraps every operator's inputs in [`CancelExec`]; runs last, after the plan is final.
#[derive(Debug)]
pub(crate) struct WrapInputs {
    pub flag: CancelFlag,
}

impl PhysicalOptimizerRule for WrapInputs {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.children().is_empty() || node.name() == "CancelExec" {
                return Ok(Transformed::no(node));
            }
            let children = node
                .children()
                .into_iter()
                .map(|child| {
                    Arc::new(CancelExec {
                        input: child.clone(),
                        flag: self.flag.clone(),
                    }) as Arc<dyn ExecutionPlan>
                })
                .collect();
            // The wrappers have their inputs' properties, so the node's stand.
            Ok(Transformed::yes(node.replace_children(
                children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
            )?))
        })
        .data()
    }

    fn name(&self) -> &str {
        "WrapInputs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
