//! Governance inside the query plan.
//!
//! Tables are resolved lazily, per query, through [`GovernedCatalog`]: a dataset the caller
//! may not know about resolves to nothing (the same "not found" as a dataset that does not
//! exist), one that needs a missing grant fails planning with the grant named, and any
//! other becomes a [`GovernedTable`] exposing only the view's columns. Its scan wraps the
//! dataset's scan in [`MaskExec`], so masked values replace raw ones at the leaves of the
//! physical plan: every projection, predicate, join key, aggregate, sort and subquery above
//! operates on masked values only. Filters on masked columns are never pushed into the
//! Parquet scan (where they would compare raw values), and MaskExec reports no statistics
//! for masked columns, so MIN/MAX cannot be answered from raw Parquet statistics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder, new_null_array};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use citybrain_core::{DatasetName, Timestamp};
use citybrain_gov::{Denial, Gov, GovError, Masker, Principal, View, mask};
use citybrain_hub::{Hub, MaskKind};
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::StreamExt;

use crate::table::HubTable;

/// Who reads: a principal through governance, or citybrain itself (index computations,
/// benchmarks of the ungoverned baseline), which sees everything raw and is not audited.
#[derive(Debug, Clone)]
pub enum Reader {
    System,
    Principal(Principal),
}

/// What one query touched, gathered while it is planned, for the audit trail.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub fields: BTreeMap<DatasetName, BTreeSet<String>>,
    pub purposes: BTreeSet<String>,
}

/// Per-query state shared by the catalog, its schemas and its tables.
#[derive(Debug)]
pub struct QueryScope {
    pub hub: Arc<Hub>,
    pub gov: Option<Arc<Gov>>,
    pub reader: Reader,
    pub now: Timestamp,
    pub touched: Mutex<Touched>,
}

/// A denial carried through DataFusion's error type back to the caller.
#[derive(Debug)]
pub struct DeniedError(pub Denial);

impl fmt::Display for DeniedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DeniedError {}

impl QueryScope {
    /// Whether this reader may know `name` and read it, without recording anything: for
    /// listings (`information_schema`, `SHOW TABLES`), which are not reads of each dataset.
    /// Recording them made every owner's audit show other departments' schema queries.
    fn readable(&self, name: &DatasetName) -> bool {
        let Ok(def) = self.hub.definition(name) else {
            return false;
        };
        match (&self.reader, &self.gov) {
            (Reader::System, _) => true,
            (Reader::Principal(_), None) => false,
            (Reader::Principal(p), Some(gov)) => gov.view(&def, p, self.now).is_ok(),
        }
    }

    /// Every dataset this reader may read, with the columns it sees (masked columns typed
    /// as the mask makes them): for the catalogs clients browse (`pg_catalog`). Like
    /// `readable`, a listing, not a read: nothing is recorded.
    pub(crate) fn listing(&self) -> Vec<(DatasetName, String, Vec<Field>)> {
        let mut out = Vec::new();
        let mut names = self.hub.names();
        names.sort();
        for name in names {
            let Ok(def) = self.hub.definition(&name) else {
                continue;
            };
            let view = match (&self.reader, &self.gov) {
                (Reader::System, _) => View::full(&def),
                (Reader::Principal(_), None) => continue,
                (Reader::Principal(p), Some(gov)) => match gov.view(&def, p, self.now) {
                    Ok(view) => view,
                    Err(_) => continue,
                },
            };
            let schema = def.arrow_schema();
            let fields = view
                .columns
                .iter()
                .filter_map(|c| {
                    let field = schema.field_with_name(&c.name).ok()?;
                    Some(masked_field(field, c.mask))
                })
                .collect();
            out.push((name, def.description.clone(), fields));
        }
        out
    }

    /// The view of `name` for this reader: None when the reader may not know it exists.
    fn view(&self, name: &DatasetName) -> Result<Option<View>> {
        let Ok(def) = self.hub.definition(name) else {
            return Ok(None);
        };
        match (&self.reader, &self.gov) {
            (Reader::System, _) => Ok(Some(View::full(&def))),
            (Reader::Principal(_), None) => Err(DataFusionError::Execution(
                "governance is not configured".into(),
            )),
            (Reader::Principal(p), Some(gov)) => match gov.view(&def, p, self.now) {
                Ok(view) => Ok(Some(view)),
                Err(GovError::Denied(Denial::Unknown(_))) => Ok(None),
                Err(GovError::Denied(denial)) => {
                    // Recorded so the audit trail names what was refused.
                    self.touched
                        .lock()
                        .expect("touched lock")
                        .fields
                        .entry(name.clone())
                        .or_default();
                    Err(DataFusionError::External(Box::new(DeniedError(denial))))
                }
                Err(other) => Err(DataFusionError::External(Box::new(other))),
            },
        }
    }
}

/// The `datafusion` catalog: every schema name resolves, so an unknown namespace and a
/// hidden one give the same "table not found".
#[derive(Debug)]
pub struct GovernedCatalog {
    pub scope: Arc<QueryScope>,
}

impl CatalogProvider for GovernedCatalog {
    fn schema_names(&self) -> Vec<String> {
        let names: BTreeSet<String> = self
            .scope
            .hub
            .names()
            .iter()
            .filter(|n| self.scope.readable(n))
            .map(|n| n.namespace().to_string())
            .collect();
        names.into_iter().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        // PostgreSQL finds `pg_catalog` tables unqualified (it is always on the search
        // path): DataFusion looks unqualified names up in `public`, which is theirs unless
        // a dataset's namespace is called that.
        let public_is_free = || !self.scope.hub.names().iter().any(|n| n.namespace() == name);
        if name == crate::pg_catalog::SCHEMA || (name == "public" && public_is_free()) {
            return Some(Arc::new(crate::pg_catalog::PgCatalog::new(
                self.scope.clone(),
            )));
        }
        Some(Arc::new(GovernedSchema {
            scope: self.scope.clone(),
            namespace: name.to_string(),
        }))
    }
}

#[derive(Debug)]
struct GovernedSchema {
    scope: Arc<QueryScope>,
    namespace: String,
}

#[async_trait::async_trait]
impl SchemaProvider for GovernedSchema {
    fn table_names(&self) -> Vec<String> {
        self.scope
            .hub
            .names()
            .into_iter()
            .filter(|n| n.namespace() == self.namespace)
            .filter(|n| self.scope.readable(n))
            .map(|n| n.table().to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Ok(dataset) = DatasetName::parse(&format!("{}.{name}", self.namespace)) else {
            return Ok(None);
        };
        let Some(view) = self.scope.view(&dataset)? else {
            return Ok(None);
        };
        let snapshot = self
            .scope
            .hub
            .snapshot(&dataset)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let inner = HubTable::new(snapshot);
        Ok(Some(Arc::new(GovernedTable::new(
            inner,
            view,
            self.scope.gov.as_ref().map(|g| g.masker().clone()),
            self.scope.clone(),
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        DatasetName::parse(&format!("{}.{name}", self.namespace))
            .is_ok_and(|d| self.scope.readable(&d))
    }
}

/// One dataset as one reader sees it.
#[derive(Debug)]
pub struct GovernedTable {
    inner: HubTable,
    view: View,
    /// For each of our columns, its index in the dataset's schema.
    source: Vec<usize>,
    schema: SchemaRef,
    masker: Option<Masker>,
    scope: Arc<QueryScope>,
}

/// The type a masked column has: masks turn any string encoding into plain strings.
fn masked_field(field: &Field, mask: Option<MaskKind>) -> Field {
    match mask {
        None => field.clone(),
        Some(MaskKind::Plate | MaskKind::Pseudonym) => {
            Field::new(field.name(), DataType::Utf8, field.is_nullable())
        }
        Some(MaskKind::Redact) => Field::new(field.name(), field.data_type().clone(), true),
    }
}

impl GovernedTable {
    fn new(
        inner: HubTable,
        view: View,
        masker: Option<Masker>,
        scope: Arc<QueryScope>,
    ) -> Result<Self> {
        let full = inner.schema();
        let mut source = Vec::new();
        let mut fields = Vec::new();
        for column in &view.columns {
            let index = full.index_of(&column.name)?;
            source.push(index);
            fields.push(masked_field(full.field(index), column.mask));
        }
        Ok(Self {
            inner,
            schema: Arc::new(Schema::new(fields)),
            source,
            view,
            masker,
            scope,
        })
    }

    fn is_masked(&self, column: &str) -> bool {
        self.view
            .columns
            .iter()
            .any(|c| c.name == column && c.mask.is_some())
    }
}

#[async_trait::async_trait]
impl TableProvider for GovernedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A filter on a masked column must see masked values, so it stays above the mask.
        Ok(filters
            .iter()
            .map(|f| {
                if f.column_refs().iter().any(|c| self.is_masked(&c.name)) {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ours: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.source.len()).collect(),
        };
        {
            let mut touched = self.scope.touched.lock().expect("touched lock");
            let fields = touched.fields.entry(self.view.dataset.clone()).or_default();
            for &i in &ours {
                fields.insert(self.view.columns[i].name.clone());
            }
            touched.purposes.extend(self.view.purposes.iter().cloned());
        }
        let inner_projection: Vec<usize> = ours.iter().map(|&i| self.source[i]).collect();
        let plan = self
            .inner
            .scan(state, Some(&inner_projection), filters, limit)
            .await?;
        let masks: Vec<Apply> = ours
            .iter()
            .map(|&i| self.view.columns[i].mask.map_or(Apply::Keep, Apply::Mask))
            .collect();
        if masks.iter().all(|m| matches!(m, Apply::Keep)) {
            return Ok(plan);
        }
        let masker = self.masker.clone().ok_or_else(|| {
            DataFusionError::Execution("masking needs governance to be configured".into())
        })?;
        // Each pseudonymised column under its linkage domain's key (`citybrain_gov::linkage`).
        let maskers: Vec<Masker> =
            ours.iter()
                .map(|&i| {
                    let column = &self.view.columns[i];
                    if column.mask == Some(MaskKind::Pseudonym) {
                        let domain = column.domain.clone().unwrap_or_else(|| {
                            format!("column:{}.{}", self.view.dataset, column.name)
                        });
                        masker.for_domain(&domain)
                    } else {
                        masker.clone()
                    }
                })
                .collect();
        let schema = Arc::new(self.schema.project(&ours)?);
        Ok(Arc::new(MaskExec::new(plan, masks, maskers, schema)))
    }
}

/// What [`MaskExec`] does to one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    Keep,
    Mask(MaskKind),
    /// The raw value as text: only below an aggregation that groups by it and whose output
    /// keys are pseudonymised (see [`crate::lift`]).
    RawText,
}

/// Replaces personal columns by their masks, batch by batch.
#[derive(Debug)]
pub struct MaskExec {
    input: Arc<dyn ExecutionPlan>,
    masks: Arc<Vec<Apply>>,
    /// One per column: a pseudonymised column's is its linkage domain's.
    maskers: Arc<Vec<Masker>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl MaskExec {
    /// What is done to each column.
    pub fn applies(&self) -> &[Apply] {
        &self.masks
    }

    /// The same scan with the pseudonyms of `columns` left raw (as text, the type the
    /// masks give), for an aggregation that pseudonymises its keys instead.
    pub fn with_raw_text(
        &self,
        columns: impl IntoIterator<Item = usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut masks = self.masks.as_ref().clone();
        for c in columns {
            if masks.get(c) != Some(&Apply::Mask(MaskKind::Pseudonym)) {
                return Err(DataFusionError::Internal(format!(
                    "column {c} is not pseudonymised; it cannot be left raw"
                )));
            }
            masks[c] = Apply::RawText;
        }
        Ok(Arc::new(MaskExec::new(
            self.input.clone(),
            masks,
            self.maskers.as_ref().clone(),
            self.schema.clone(),
        )))
    }

    /// Pseudonymises columns of `plan`'s output, each `(output, source)` with the key of
    /// this mask's column `source`.
    pub fn pseudonymise_output(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        columns: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = plan.schema();
        let mut masks = vec![Apply::Keep; schema.fields().len()];
        let mut maskers = vec![self.maskers[0].clone(); schema.fields().len()];
        for (c, source) in columns {
            maskers[c] = self.maskers[source].clone();
            if schema.field(c).data_type() != &DataType::Utf8 {
                return Err(DataFusionError::Internal(format!(
                    "output column {c} is not text; it cannot be pseudonymised"
                )));
            }
            masks[c] = Apply::Mask(MaskKind::Pseudonym);
        }
        Ok(Arc::new(MaskExec::new(plan, masks, maskers, schema)))
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        masks: Vec<Apply>,
        maskers: Vec<Masker>,
        schema: SchemaRef,
    ) -> Self {
        // No ordering or partitioning of the raw input holds for masked values.
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Self {
            input,
            masks: Arc::new(masks),
            maskers: Arc::new(maskers),
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for MaskExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked: Vec<String> = self
            .schema
            .fields()
            .iter()
            .zip(self.masks.iter())
            .filter_map(|(field, m)| match m {
                Apply::Keep => None,
                Apply::Mask(m) => Some(format!("{}={}", field.name(), m.name())),
                Apply::RawText => Some(format!("{}=raw until grouped", field.name())),
            })
            .collect();
        write!(f, "MaskExec: {}", masked.join(", "))
    }
}

/// Masks one string column.
fn mask_strings(column: &ArrayRef, kind: MaskKind, masker: &Masker) -> Result<ArrayRef> {
    let strings = arrow::compute::cast(column, &DataType::Utf8)?;
    let strings = strings
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("a masked column is not text".into()))?;
    if kind == MaskKind::Pseudonym {
        return Ok(pseudonym_column(strings, masker));
    }
    let mut out = StringBuilder::with_capacity(strings.len(), strings.len() * 20);
    let mut buffer = String::with_capacity(32);
    for value in strings.iter() {
        match value {
            None => out.append_null(),
            Some(value) => {
                buffer.clear();
                mask::plate_into(value, &mut buffer);
                out.append_value(&buffer);
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Pseudonyms are fixed-length, so the column is built directly: one values buffer, offsets
/// stepping by the pseudonym length, the input's null mask.
fn pseudonym_column(strings: &StringArray, masker: &Masker) -> ArrayRef {
    let present: Vec<&[u8]> = strings.iter().flatten().map(str::as_bytes).collect();
    let mut values = Vec::with_capacity(present.len() * mask::PSEUDONYM_LEN);
    masker.pseudonyms_into(&present, &mut values);
    let mut offsets = Vec::with_capacity(strings.len() + 1);
    let mut end = 0i32;
    offsets.push(end);
    for i in 0..strings.len() {
        if strings.is_valid(i) {
            end += mask::PSEUDONYM_LEN as i32;
        }
        offsets.push(end);
    }
    Arc::new(StringArray::new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(values),
        strings.nulls().cloned(),
    ))
}

fn mask_batch(
    batch: RecordBatch,
    masks: &[Apply],
    maskers: &[Masker],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    for ((column, mask), masker) in batch.columns().iter().zip(masks).zip(maskers) {
        columns.push(match mask {
            Apply::Keep => column.clone(),
            Apply::RawText => arrow::compute::cast(column, &DataType::Utf8)?,
            Apply::Mask(MaskKind::Redact) => new_null_array(column.data_type(), column.len()),
            Apply::Mask(kind) => mask_strings(column, *kind, masker)?,
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl ExecutionPlan for MaskExec {
    fn name(&self) -> &str {
        "MaskExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("MaskExec has one child".into()))?;
        Ok(Arc::new(MaskExec::new(
            input,
            self.masks.as_ref().clone(),
            self.maskers.as_ref().clone(),
            self.schema.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let masks = self.masks.clone();
        let maskers = self.maskers.clone();
        let schema = self.schema.clone();
        let out_schema = schema.clone();
        let stream = input.map(move |batch| mask_batch(batch?, &masks, &maskers, &schema));
        Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, stream)))
    }
}
