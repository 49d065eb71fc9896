//! A dataset as a DataFusion table: the union of its Parquet segments and its tail.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
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
}

impl HubTable {
    pub fn new(snapshot: Snapshot) -> Self {
        Self { snapshot }
    }

    fn schema_ref(&self) -> SchemaRef {
        self.snapshot.schema.clone()
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
        if !self.snapshot.segments.is_empty() {
            let urls = self
                .snapshot
                .segments
                .iter()
                .map(|s| ListingTableUrl::parse(self.snapshot.dir.join(&s.path).to_string_lossy()))
                .collect::<Result<Vec<_>>>()?;
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
                partitions[i % n].push(batch.clone());
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
