//! Grouping by one integer key: a slot per key, found without a general hash table.
//!
//! A city's questions group by checkpoints, districts, lots, lanes, hours: one integer key
//! with a few thousand values. DataFusion groups through a general hash table (hash every
//! key, probe control bytes, compare, then update each aggregate through the group index).
//! This rule replaces an aggregation's first step (`Partial`, or `Single` where there is
//! one step) by [`IntKeyAggregateExec`] when it groups by one integer (or date) expression
//! and folds only `count`, `sum` of signed integers and `min`/`max` of 64-bit integers: the
//! folds whose state is one 64-bit integer, the same in a partial and a final result.
//! Anything else keeps DataFusion's own operator.
//!
//! Why this file is long (about 800 lines): the rule (which aggregations qualify), the
//! operator and its group state (`Layout`, `KeyTable`, `Groups`) share the `Fold` set; kept
//! together for now, a split by those three is the way when it grows.
//!
//! Where a key's group lives (`Layout`): while the keys seen lie within [`MAX_SPAN`]
//! values, at its offset from the smallest (learnt from each batch's minimum and maximum);
//! beyond that, at its entry in a sparse open-addressing table of the keys themselves
//! (`KeyTable`), so a lookup is a multiply, a load and a compare, with no branch that
//! depends on the data. `count(*)` alone counts rows as it finds them. The answer never
//! depends on the layout, only the speed.
//!
//! It runs after DataFusion's rules have placed repartitions and before the plan's final
//! sanity check: the operator it replaces keeps its output partitioning, and every
//! operator above sees the same columns with the same values.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow::compute::{cast, max, min};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    PlanProperties, apply_expression_roots,
};
use futures::StreamExt;

/// The widest key range kept as slots (2 MiB per folded column): wider, and the keys go
/// to a hash table.
pub const MAX_SPAN: usize = 1 << 18;

#[derive(Debug, Default)]
pub struct IntegerKeyGrouping;

/// What one aggregate folds per group. Every state is one i64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fold {
    /// `count` of an argument that is never null (`count(*)`): the group's rows.
    Rows,
    /// `count(x)`: rows where `x` is not null.
    Count,
    /// `sum(x)`, wrapping on overflow as DataFusion's does; null for a group with no value.
    Sum,
    Min,
    Max,
}

#[derive(Clone, Debug)]
struct Fold1 {
    fold: Fold,
    arg: Arc<dyn PhysicalExpr>,
    name: String,
}

fn integer_key(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date32
    )
}

fn signed_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
    )
}

/// The key and folds of an aggregation this operator computes exactly as DataFusion
/// would, or None.
fn foldable(agg: &AggregateExec) -> Option<(Arc<dyn PhysicalExpr>, Vec<Fold1>)> {
    if !matches!(
        agg.mode(),
        AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
    ) || agg.limit_options().is_some()
        || !agg.dynamic_expressions_produced().is_empty()
        || !matches!(agg.input_order_mode(), InputOrderMode::Linear)
        || agg.input().boundedness().is_unbounded()
        || agg.filter_expr().iter().any(Option::is_some)
    {
        return None;
    }
    let group = agg.group_expr();
    if !group.is_single() || group.expr().len() != 1 || agg.aggr_expr().is_empty() {
        return None;
    }
    let input = agg.input().schema();
    let key = group.expr()[0].0.clone();
    let key_type = key.data_type(&input).ok()?;
    if !integer_key(&key_type) {
        return None;
    }
    let mut folds = Vec::new();
    for aggregate in agg.aggr_expr() {
        if aggregate.is_distinct() || !aggregate.order_bys().is_empty() {
            return None;
        }
        let args = aggregate.expressions();
        let [arg] = args.as_slice() else {
            return None;
        };
        let state = aggregate.state_fields().ok()?;
        let [state] = state.as_slice() else {
            return None;
        };
        if state.data_type() != &DataType::Int64 {
            return None;
        }
        let arg_type = arg.data_type(&input).ok()?;
        let fold = match aggregate.fun().name() {
            "count" => match arg.downcast_ref::<Literal>() {
                Some(literal) if !literal.value().is_null() => Fold::Rows,
                _ => Fold::Count,
            },
            "sum" if signed_integer(&arg_type) => Fold::Sum,
            "min" if arg_type == DataType::Int64 => Fold::Min,
            "max" if arg_type == DataType::Int64 => Fold::Max,
            _ => return None,
        };
        folds.push(Fold1 {
            fold,
            arg: arg.clone(),
            name: aggregate.name().to_string(),
        });
    }
    // The output must be the key and one i64 per fold, as this operator builds it.
    let out = agg.schema();
    let shape_holds = out.fields().len() == 1 + folds.len()
        && out.field(0).data_type() == &key_type
        && out
            .fields()
            .iter()
            .skip(1)
            .all(|f| f.data_type() == &DataType::Int64);
    shape_holds.then_some((key, folds))
}

impl PhysicalOptimizerRule for IntegerKeyGrouping {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(agg) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some((key, folds)) = foldable(agg) else {
                return Ok(Transformed::no(node));
            };
            let dense = IntKeyAggregateExec::new(agg, key, folds);
            Ok(Transformed::yes(Arc::new(dense) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "integer_key_grouping"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[derive(Debug)]
pub struct IntKeyAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    key_name: String,
    folds: Vec<Fold1>,
    mode: AggregateMode,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl IntKeyAggregateExec {
    fn new(agg: &AggregateExec, key: Arc<dyn PhysicalExpr>, folds: Vec<Fold1>) -> Self {
        let schema = agg.schema();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            agg.properties().partitioning.clone(),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input: agg.input().clone(),
            key,
            key_name: agg.group_expr().expr()[0].1.clone(),
            folds,
            mode: *agg.mode(),
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    fn with_input(&self, input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            input,
            key: self.key.clone(),
            key_name: self.key_name.clone(),
            folds: self.folds.clone(),
            mode: self.mode,
            schema: self.schema.clone(),
            properties: self.properties.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for IntKeyAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let folds: Vec<&str> = self.folds.iter().map(|f| f.name.as_str()).collect();
        write!(
            f,
            "IntKeyAggregateExec: mode={:?}, gby=[{} as {}], aggr=[{}]",
            self.mode,
            self.key,
            self.key_name,
            folds.join(", ")
        )
    }
}

impl ExecutionPlan for IntKeyAggregateExec {
    fn name(&self) -> &str {
        "IntKeyAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(
            std::iter::once(&self.key).chain(self.folds.iter().map(|f| &f.arg)),
            f,
        )
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("IntKeyAggregateExec has one child".into()))?;
        Ok(Arc::new(self.with_input(input)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context.clone())?;
        let reservation = MemoryConsumer::new(format!("IntKeyAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let batch_size = context.session_config().batch_size();
        let key = self.key.clone();
        let folds = self.folds.clone();
        let schema = self.schema.clone();
        let out_schema = schema.clone();
        // `count(*)` alone needs no slot per row: rows are counted as their keys are found.
        let rows_only = folds.iter().all(|f| f.fold == Fold::Rows);
        let run = async move {
            let mut groups = Groups::new(&folds, reservation);
            let mut slots = Vec::new();
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let _timer = baseline.elapsed_compute().timer();
                let keys = as_i64(&key.evaluate(&batch)?.into_array(batch.num_rows())?)?;
                if rows_only && keys.null_count() == 0 {
                    groups.count_keys(&keys)?;
                    continue;
                }
                groups.slots_of(&keys, &mut slots)?;
                for (at, fold) in folds.iter().enumerate() {
                    let values = match fold.fold {
                        Fold::Rows => None,
                        _ => Some(fold.arg.evaluate(&batch)?.into_array(batch.num_rows())?),
                    };
                    groups.fold(at, values.as_ref(), &slots)?;
                }
                groups.count_rows(&slots);
            }
            let _timer = baseline.elapsed_compute().timer();
            let batches = groups.emit(&schema, batch_size)?;
            for b in &batches {
                baseline.record_output(b.num_rows());
            }
            baseline.done();
            Ok::<_, DataFusionError>(batches)
        };
        let stream = futures::stream::once(run).flat_map(|result| {
            futures::stream::iter(match result {
                Ok(batches) => batches.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, stream)))
    }
}

/// Keys as i64 (every supported key type converts exactly).
fn as_i64(keys: &ArrayRef) -> Result<Int64Array> {
    let keys = if keys.data_type() == &DataType::Int64 {
        keys.clone()
    } else {
        cast(keys, &DataType::Int64)?
    };
    keys.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("values did not convert to Int64".into()))
}

/// One folded column: a value per group, and for sum/min/max how many non-null values
/// went into it (a group without any is null, as in SQL).
struct Column {
    fold: Fold,
    values: Vec<i64>,
    seen: Vec<i64>,
}

impl Column {
    fn start(fold: Fold) -> i64 {
        match fold {
            Fold::Min => i64::MAX,
            Fold::Max => i64::MIN,
            _ => 0,
        }
    }

    /// Whether the fold keeps a count of non-null values (sum, min, max).
    fn folds_values(fold: Fold) -> bool {
        !matches!(fold, Fold::Rows | Fold::Count)
    }
}

/// `old`'s values at new slots (`moves`: old slot → new slot), in `slots` slots.
fn moved(old: &[i64], moves: &[(usize, usize)], slots: usize, fill: i64) -> Vec<i64> {
    let mut next = vec![fill; slots];
    for &(from, to) in moves {
        next[to] = old[from];
    }
    next
}

/// A key's first entry in a table of 2^(64 - shift) entries. Fibonacci hashing: the top
/// bits of the product, so close ids spread out.
fn home(key: i64, shift: u32) -> usize {
    ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

/// An empty entry. The key `i64::MIN` itself always lives at its own first entry, which no
/// other key takes: so a lookup never needs a second test for emptiness.
const EMPTY: i64 = i64::MIN;

/// Keys to entries: open addressing with linear probing, keys compared directly, and a
/// key's group is its entry (no second load to find it). Sparse while keys are few, so
/// that nearly every key sits at its first or second entry: a key further away costs a
/// mispredicted branch on every one of its rows. A city's few thousand checkpoint ids fit
/// in L1/L2.
struct KeyTable {
    keys: Vec<i64>,
    shift: u32,
    /// Keys stored, `EMPTY` not counted.
    len: usize,
}

impl KeyTable {
    /// How many keys a table of `size` entries takes.
    fn capacity(size: usize) -> usize {
        if size <= 1 << 16 { size / 4 } else { size / 2 }
    }

    /// A table for at least `keys` keys.
    fn for_keys(keys: usize) -> Self {
        let mut size = 1024;
        while Self::capacity(size) < keys {
            size *= 2;
        }
        Self {
            keys: vec![EMPTY; size],
            shift: 64 - size.trailing_zeros(),
            len: 0,
        }
    }

    fn size(&self) -> usize {
        self.keys.len()
    }

    fn reserved(&self) -> usize {
        home(EMPTY, self.shift)
    }

    /// The entry of `key` if it sits at its first or second one. No branch on the way.
    #[inline]
    fn near(&self, key: i64) -> Option<usize> {
        let at = home(key, self.shift);
        let at = (at + usize::from(self.keys[at] != key)) & (self.size() - 1);
        (self.keys[at] == key).then_some(at)
    }

    /// The entry of `key`, further on or newly taken; None when the table is full (grow it
    /// and look again).
    fn find_or_take(&mut self, key: i64) -> Option<usize> {
        let reserved = self.reserved();
        if key == EMPTY {
            return Some(reserved);
        }
        let mask = self.size() - 1;
        let mut at = home(key, self.shift);
        loop {
            let k = self.keys[at];
            if k == key {
                return Some(at);
            }
            if k == EMPTY && at != reserved {
                if self.len >= Self::capacity(self.size()) {
                    return None;
                }
                self.keys[at] = key;
                self.len += 1;
                return Some(at);
            }
            at = (at + 1) & mask;
        }
    }
}

/// Where each group lives.
enum Layout {
    /// Slot 0 is the null key, slot `1 + key - base` the key, for `span` keys.
    Dense { base: i64, span: usize },
    /// A key's slot is its entry in the table; slot `size` is the null key.
    Hashed(KeyTable),
}

impl Layout {
    fn slots(&self) -> usize {
        match self {
            Layout::Dense { span, .. } => 1 + span,
            Layout::Hashed(table) => table.size() + 1,
        }
    }

    fn null_slot(&self) -> usize {
        match self {
            Layout::Dense { .. } => 0,
            Layout::Hashed(table) => table.size(),
        }
    }

    /// The slot of a key this layout has room for.
    fn place(&mut self, key: i64) -> usize {
        match self {
            Layout::Dense { base, .. } => 1 + (key - *base) as usize,
            Layout::Hashed(table) => table
                .find_or_take(key)
                .expect("a table sized for every present key"),
        }
    }

    fn key_of(&self, slot: usize) -> Option<i64> {
        match self {
            Layout::Dense { .. } if slot == 0 => None,
            Layout::Dense { base, .. } => Some(base + (slot as i64 - 1)),
            Layout::Hashed(table) if slot == table.size() => None,
            Layout::Hashed(table) => Some(table.keys[slot]),
        }
    }
}

/// The groups seen so far: a row count and one column per fold, by slot. A slot with no
/// rows holds no group.
struct Groups {
    layout: Layout,
    rows: Vec<i64>,
    columns: Vec<Column>,
    reservation: MemoryReservation,
}

impl Groups {
    fn new(folds: &[Fold1], reservation: MemoryReservation) -> Self {
        let column = |fold| Column {
            fold,
            values: vec![Column::start(fold); 1],
            seen: if Column::folds_values(fold) {
                vec![0]
            } else {
                Vec::new()
            },
        };
        Self {
            layout: Layout::Dense { base: 0, span: 0 },
            rows: vec![0],
            columns: folds.iter().map(|f| column(f.fold)).collect(),
            reservation,
        }
    }

    fn present(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rows.len()).filter(|&s| self.rows[s] > 0)
    }

    /// Moves every group to its slot in `layout`.
    fn relayout(&mut self, mut layout: Layout) -> Result<()> {
        let present: Vec<usize> = self.present().collect();
        let moves: Vec<(usize, usize)> = present
            .iter()
            .map(|&from| match self.layout.key_of(from) {
                None => (from, layout.null_slot()),
                Some(key) => (from, layout.place(key)),
            })
            .collect();
        let slots = layout.slots();
        self.rows = moved(&self.rows, &moves, slots, 0);
        for c in &mut self.columns {
            c.values = moved(&c.values, &moves, slots, Column::start(c.fold));
            if Column::folds_values(c.fold) {
                c.seen = moved(&c.seen, &moves, slots, 0);
            }
        }
        self.layout = layout;
        let table = match &self.layout {
            Layout::Hashed(t) => t.size() * 8,
            Layout::Dense { .. } => 0,
        };
        self.reservation
            .try_resize(table + slots * 8 * (1 + 2 * self.columns.len()))
    }

    /// The layout a batch with keys in `lo..=hi` needs, if the dense one does not cover
    /// them: a wider dense one, or a table once the range is too wide.
    fn dense_for(&self, lo: i64, hi: i64) -> Option<Layout> {
        let Layout::Dense { base, span } = self.layout else {
            return None;
        };
        let (lo, hi) = if span == 0 {
            (lo, hi)
        } else {
            (lo.min(base), hi.max(base + (span as i64 - 1)))
        };
        if span != 0 && lo == base && hi == base + (span as i64 - 1) {
            return None;
        }
        let wide = i128::from(hi) - i128::from(lo) + 1;
        Some(if wide <= MAX_SPAN as i128 {
            Layout::Dense {
                base: lo,
                span: wide as usize,
            }
        } else {
            Layout::Hashed(KeyTable::for_keys(self.present().count()))
        })
    }

    /// Widens the dense layout to cover a batch's keys, or leaves it for a table when they
    /// spread too wide.
    fn cover(&mut self, keys: &Int64Array) -> Result<()> {
        if !matches!(self.layout, Layout::Dense { .. }) || keys.null_count() == keys.len() {
            return Ok(());
        }
        if let (Some(lo), Some(hi)) = (min(keys), max(keys))
            && let Some(layout) = self.dense_for(lo, hi)
        {
            self.relayout(layout)?;
        }
        Ok(())
    }

    /// A table with room for more keys than this one.
    fn grown(table: &KeyTable) -> Layout {
        Layout::Hashed(KeyTable::for_keys(table.len + 1 + table.len / 2))
    }

    /// The slot of each row's key, widening or growing the layout as needed.
    fn slots_of(&mut self, keys: &Int64Array, slots: &mut Vec<u32>) -> Result<()> {
        self.cover(keys)?;
        let values = keys.values();
        slots.clear();
        loop {
            let full = match &mut self.layout {
                Layout::Dense { base, .. } => {
                    let base = *base;
                    // Null rows' values are arbitrary: wrapping, and overwritten below.
                    slots.extend(values.iter().map(|&k| k.wrapping_sub(base) as u32 + 1));
                    None
                }
                Layout::Hashed(table) => {
                    slots.resize(values.len(), 0);
                    let mut full = None;
                    for (slot, &k) in slots.iter_mut().zip(values.iter()) {
                        match table.near(k).or_else(|| table.find_or_take(k)) {
                            Some(at) => *slot = at as u32,
                            None => {
                                full = Some(Self::grown(table));
                                break;
                            }
                        }
                    }
                    full
                }
            };
            match full {
                // Every slot is looked up again in the bigger table.
                Some(layout) => self.relayout(layout)?,
                None => break,
            }
        }
        // A null row's value is arbitrary: whatever slot it got, it belongs to the null key.
        if let Some(nulls) = keys.nulls() {
            let null = self.layout.null_slot() as u32;
            for (slot, valid) in slots.iter_mut().zip(nulls.iter()) {
                if !valid {
                    *slot = null;
                }
            }
        }
        Ok(())
    }

    /// Counts each row in its key's group, for aggregations that only count rows: one
    /// pass, no slot list. Keys must have no nulls.
    fn count_keys(&mut self, keys: &Int64Array) -> Result<()> {
        debug_assert_eq!(keys.null_count(), 0);
        self.cover(keys)?;
        let mut values = keys.values().as_ref();
        loop {
            let rows = &mut self.rows;
            let full = match &mut self.layout {
                Layout::Dense { base, .. } => {
                    let base = *base;
                    for &k in values {
                        rows[(k - base) as usize + 1] += 1;
                    }
                    None
                }
                Layout::Hashed(table) => {
                    let mut full = None;
                    for (i, &k) in values.iter().enumerate() {
                        match table.near(k).or_else(|| table.find_or_take(k)) {
                            Some(at) => rows[at] += 1,
                            None => {
                                full = Some((i, Self::grown(table)));
                                break;
                            }
                        }
                    }
                    full
                }
            };
            match full {
                Some((counted, layout)) => {
                    self.relayout(layout)?;
                    values = &values[counted..];
                }
                None => return Ok(()),
            }
        }
    }

    fn count_rows(&mut self, slots: &[u32]) {
        for &s in slots {
            self.rows[s as usize] += 1;
        }
    }

    fn fold(&mut self, at: usize, values: Option<&ArrayRef>, slots: &[u32]) -> Result<()> {
        let column = &mut self.columns[at];
        let Some(values) = values else {
            return Ok(()); // Rows: counted once for all folds in `count_rows`.
        };
        if column.fold == Fold::Count {
            for (i, &s) in slots.iter().enumerate() {
                column.values[s as usize] += i64::from(values.is_valid(i));
            }
            return Ok(());
        }
        let values = as_i64(values)?;
        let all_valid = values.null_count() == 0;
        let update: fn(i64, i64) -> i64 = match column.fold {
            Fold::Sum => i64::wrapping_add,
            Fold::Min => i64::min,
            _ => i64::max,
        };
        for (i, (&s, &v)) in slots.iter().zip(values.values().iter()).enumerate() {
            if all_valid || values.is_valid(i) {
                let s = s as usize;
                column.values[s] = update(column.values[s], v);
                column.seen[s] += 1;
            }
        }
        Ok(())
    }

    /// The groups seen, in batches of at most `batch_size` rows of `schema`.
    fn emit(&self, schema: &SchemaRef, batch_size: usize) -> Result<Vec<RecordBatch>> {
        let present: Vec<usize> = self.present().collect();
        let key_type = schema.field(0).data_type();
        let mut batches = Vec::new();
        for chunk in present.chunks(batch_size.max(1)) {
            let keys: Int64Array = chunk.iter().map(|&s| self.layout.key_of(s)).collect();
            let keys: ArrayRef = Arc::new(keys);
            let mut columns = vec![if key_type == &DataType::Int64 {
                keys
            } else {
                cast(&keys, key_type)?
            }];
            for c in &self.columns {
                let values: Int64Array = match c.fold {
                    Fold::Rows => chunk.iter().map(|&s| Some(self.rows[s])).collect(),
                    Fold::Count => chunk.iter().map(|&s| Some(c.values[s])).collect(),
                    _ => chunk
                        .iter()
                        .map(|&s| (c.seen[s] > 0).then_some(c.values[s]))
                        .collect(),
                };
                columns.push(Arc::new(values));
            }
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_finds_every_key_it_took_even_the_empty_marker() {
        let mut table = KeyTable::for_keys(10);
        let keys: Vec<i64> = (0..100)
            .map(|i| i * 1_000_003 - 7)
            .chain([EMPTY, 0, i64::MAX])
            .collect();
        let mut taken = Vec::new();
        for &k in &keys {
            match table.find_or_take(k) {
                Some(at) => taken.push(at),
                None => {
                    // Full: a bigger table takes every key again.
                    let mut bigger = KeyTable::for_keys(2 * table.len + 2);
                    taken = keys
                        .iter()
                        .take_while(|&&x| x != k)
                        .chain([&k])
                        .map(|&x| bigger.find_or_take(x).unwrap())
                        .collect();
                    table = bigger;
                }
            }
        }
        assert_eq!(taken.len(), keys.len());
        let distinct: std::collections::BTreeSet<_> = taken.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "each key its own entry");
        for (&k, &at) in keys.iter().zip(&taken) {
            assert_eq!(table.find_or_take(k), Some(at));
            if let Some(near) = table.near(k) {
                assert_eq!(near, at);
            }
        }
        assert_eq!(table.near(EMPTY), Some(table.reserved()));
        assert_eq!(table.len, keys.len() - 1);
    }
}
