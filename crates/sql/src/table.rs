//! A dataset as a DataFusion table: the union of its Parquet segments and its tail.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use citybrain_hub::store::Snapshot;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

/// A snapshot of one dataset, planned as segments ∪ tail.
#[derive(Debug)]
pub struct HubTable {
    snapshot: Snapshot,
    schema: SchemaRef,
}

/// The types SQL works on: text as `Utf8View`. A short string (a plate, an id) sits inside
/// its 16-byte view, so grouping, joining and comparing text mostly compare views without
/// following an offset into a separate buffer: `COUNT(DISTINCT plate)` over 50 million
/// passages took 5.3–5.7 s with `Utf8` and 2.9–3.3 s with views. Results leave as `Utf8`
/// (`SqlEngine::run`), so clients see the dataset's own types.
pub fn sql_schema(schema: &Schema) -> SchemaRef {
    retyped(schema, |t| match t {
        DataType::Utf8 => DataType::Utf8View,
        other => other.clone(),
    })
}

/// The types results leave in: text back as `Utf8` (and binary as `Binary`).
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    retyped(schema, |t| match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    })
}

/// `schema` with each field's type mapped by `to`, names, nullability and metadata kept.
fn retyped(schema: &Schema, to: impl Fn(&DataType) -> DataType) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(to(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

impl HubTable {
    pub fn new(snapshot: Snapshot) -> Self {
        let schema = sql_schema(&snapshot.schema);
        Self { snapshot, schema }
    }

    fn schema_ref(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[async_trait::async_trait]
impl TableProvider for HubTable {
    fn schema(&self) -> SchemaRef {
        self.schema_ref()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune Parquet row groups; DataFusion still applies them on top.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema_ref();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        // A listing table reads all its paths from the first path's object store: segments
        // on this machine and segments in a bucket (other nodes', in a cluster) are listed
        // as one table per store.
        let mut by_store: Vec<(String, Vec<ListingTableUrl>)> = Vec::new();
        for location in self.snapshot.segment_locations() {
            let url = ListingTableUrl::parse(location)?;
            let store = url.object_store().as_str().to_string();
            match by_store.iter_mut().find(|(s, _)| *s == store) {
                Some((_, urls)) => urls.push(url),
                None => by_store.push((store, vec![url])),
            }
        }
        for (_, urls) in by_store {
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema.clone());
            // Segment statistics come from the engine's cache, kept across statements.
            let segments = ListingTable::try_new(config)?
                .with_cache(state.runtime_env().cache_manager.get_file_statistic_cache());
            inputs.push(segments.scan(state, projection, filters, limit).await?);
        }
        if !self.snapshot.tail.is_empty() {
            // Spread the tail over the cores: one partition per core, batches dealt round-robin.
            let n = state.config().target_partitions().max(1);
            let mut partitions = vec![Vec::new(); n];
            for (i, batch) in self.snapshot.tail.iter().enumerate() {
                partitions[i % n].push(cast_to(batch, &schema)?);
            }
            partitions.retain(|p| !p.is_empty());
            let tail = MemTable::try_new(schema.clone(), partitions)?;
            inputs.push(tail.scan(state, projection, filters, limit).await?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

/// `batch` with each column cast to `schema`'s type for it (the same columns, other
/// encodings): tail batches into the SQL types, results back out of them.
pub(crate) fn cast_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
