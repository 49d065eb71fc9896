//! Read-only SQL over every dataset, with Apache DataFusion.
//!
//! Key decision: each query plans against a fresh snapshot of each dataset it may read
//! (sealed Parquet segments plus the in-memory unsealed tail), so a record is visible as
//! soon as its ingest call returned, and a seal running meanwhile changes nothing. This is
//! the only crate that depends on DataFusion; the hub knows nothing about SQL.

mod governed;
mod int_key;
mod lift;
mod table;

pub use governed::{MaskExec, Reader, Touched};

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use citybrain_core::Timestamp;
use citybrain_gov::{Call, CallKind, Gov, Outcome, Touch};
use citybrain_hub::Hub;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;

/// Limits applied to every statement.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            memory_bytes: 2 << 30,
        }
    }
}

/// Why a statement did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    // The caller's fault.
    #[error("{0}")]
    Denied(String),
    #[error("only read-only queries are allowed: {0}")]
    NotReadOnly(String),
    #[error("the query is invalid: {0}")]
    Invalid(String),
    #[error("the statement timeout of {0:?} was hit; add filters or raise the timeout")]
    Timeout(Duration),
    #[error(
        "the memory limit of {limit_bytes} bytes was hit; aggregate or filter more, or raise the limit: {detail}"
    )]
    MemoryLimit { limit_bytes: usize, detail: String },
    // Ours or the environment's.
    #[error("the query failed while running: {0}")]
    Execution(String),
}

/// A query's result: batches and their schema (kept even when there are no rows).
#[derive(Debug)]
pub struct QueryResult {
    pub schema: arrow::datatypes::SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// A result with text as `Utf8`, whatever view types the plan used inside
    /// (`table::sql_schema`): clients and encoders get the dataset's own types.
    fn plain(
        schema: &arrow::datatypes::Schema,
        batches: Vec<RecordBatch>,
    ) -> Result<Self, SqlError> {
        let schema = table::plain_schema(schema);
        let batches = batches
            .iter()
            .map(|batch| table::cast_to(batch, &schema))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        Ok(Self { schema, batches })
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Runs SQL over a hub.
#[derive(Debug, Clone)]
pub struct SqlEngine {
    hub: Arc<Hub>,
    gov: Option<Arc<Gov>>,
    limits: SqlLimits,
    int_key_grouping: bool,
    /// Segment footers and statistics, read once and kept across statements (a segment is
    /// never rewritten; an entry is checked against the file's size and time anyway).
    caches: Arc<CacheManager>,
}

/// One governed data call: who reads, why, and as what kind of call it is audited.
#[derive(Debug, Clone)]
pub struct DataCall {
    pub reader: Reader,
    pub purpose: String,
    pub kind: CallKind,
    pub now: Timestamp,
}

fn classify(error: DataFusionError, limits: &SqlLimits) -> SqlError {
    match error.find_root() {
        DataFusionError::External(e) if e.downcast_ref::<governed::DeniedError>().is_some() => {
            SqlError::Denied(e.to_string())
        }
        DataFusionError::ResourcesExhausted(detail) => SqlError::MemoryLimit {
            limit_bytes: limits.memory_bytes,
            detail: detail.clone(),
        },
        DataFusionError::SQL(..) | DataFusionError::Plan(..) | DataFusionError::SchemaError(..) => {
            SqlError::Invalid(error.find_root().to_string())
        }
        DataFusionError::Execution(m) if m.contains("not supported") => {
            SqlError::NotReadOnly(m.clone())
        }
        _ => SqlError::Execution(error.to_string()),
    }
}

impl SqlEngine {
    pub fn new(hub: Arc<Hub>, limits: SqlLimits) -> Self {
        Self {
            hub,
            gov: None,
            limits,
            int_key_grouping: true,
            caches: CacheManager::try_new(&CacheManagerConfig::default())
                .expect("the default caches build"),
        }
    }

    /// Leaves every aggregation to DataFusion's own grouping (see `int_key`): for tests that
    /// compare the two, and for measuring what the integer-key operator gains.
    pub fn without_int_key_grouping(mut self) -> Self {
        self.int_key_grouping = false;
        self
    }

    /// Governs principals' queries with `gov` (grants, masks, audit).
    pub fn with_gov(mut self, gov: Arc<Gov>) -> Self {
        self.gov = Some(gov);
        self
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn context(&self, scope: Arc<governed::QueryScope>) -> Result<SessionContext, SqlError> {
        let caches = CacheManagerConfig::default()
            .with_file_statistics_cache(self.caches.get_file_statistic_cache())
            .with_file_metadata_cache(Some(self.caches.get_file_metadata_cache()));
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(caches)
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
        // Pseudonyms are computed after grouping where that is safe (see `lift`): the rule
        // goes first, before DataFusion places its repartitions.
        let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> =
            vec![Arc::new(lift::LiftPseudonyms)];
        rules.extend(PhysicalOptimizer::new().rules);
        // Integer-key grouping replaces aggregations in place once repartitions are placed, and
        // before the final sanity check looks the plan over.
        if self.int_key_grouping {
            let at = rules
                .iter()
                .position(|r| r.name() == "SanityCheckPlan")
                .unwrap_or(rules.len());
            rules.insert(at, Arc::new(int_key::IntegerKeyGrouping));
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        // Tables resolve lazily through governance: only the datasets a query names are
        // looked up and snapshotted.
        ctx.register_catalog("datafusion", Arc::new(governed::GovernedCatalog { scope }));
        Ok(ctx)
    }

    /// Runs one statement as citybrain itself: everything raw, nothing audited. For the
    /// platform's own computations and for benchmarks of the ungoverned baseline.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, SqlError> {
        self.run(sql, Reader::System, Timestamp(0)).await.0
    }

    /// Runs one statement for a caller: through its grants and masks, and recorded in the
    /// audit trail (durably, before the result is returned) whatever the outcome.
    pub async fn query_as(&self, sql: &str, call: &DataCall) -> Result<QueryResult, SqlError> {
        let (result, touched) = self.run(sql, call.reader.clone(), call.now).await;
        let (Reader::Principal(principal), Some(gov)) = (&call.reader, &self.gov) else {
            return result;
        };
        let mut record = Call::new(
            call.now,
            principal.name.as_str(),
            principal.department.as_str(),
            call.kind,
        );
        record.datasets = touched
            .fields
            .into_iter()
            .map(|(dataset, fields)| Touch {
                dataset,
                fields: fields.into_iter().collect(),
            })
            .collect();
        record.purpose = if call.purpose.is_empty() {
            touched.purposes.into_iter().collect::<Vec<_>>().join("; ")
        } else {
            call.purpose.clone()
        };
        record.detail = sql.to_string();
        match &result {
            Ok(r) => record.rows = r.rows() as u64,
            Err(e) => {
                record.outcome = match e {
                    SqlError::Denied(_) => Outcome::Denied,
                    _ => Outcome::Failed,
                };
                record.detail = format!("{sql}\n-- {e}");
            }
        }
        // Fail closed: a read that cannot be recorded is not served.
        gov.record(record)
            .map_err(|e| SqlError::Execution(format!("the call could not be audited: {e}")))?;
        result
    }

    async fn run(
        &self,
        sql: &str,
        reader: Reader,
        now: Timestamp,
    ) -> (Result<QueryResult, SqlError>, Touched) {
        let scope = Arc::new(governed::QueryScope {
            hub: self.hub.clone(),
            gov: self.gov.clone(),
            reader,
            now,
            touched: Default::default(),
        });
        let result = self.execute(sql, scope.clone()).await;
        let touched = std::mem::take(&mut *scope.touched.lock().expect("touched lock"));
        (result, touched)
    }

    async fn execute(
        &self,
        sql: &str,
        scope: Arc<governed::QueryScope>,
    ) -> Result<QueryResult, SqlError> {
        // DataFusion's SQLOptions below are the enforcement; this gives the clearer error.
        let first_word = sql
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if !matches!(
            first_word.as_str(),
            "select" | "with" | "values" | "explain" | "show" | "describe" | ""
        ) {
            return Err(SqlError::NotReadOnly(format!(
                "'{first_word}' statements are refused; citybrain's SQL is read-only (SELECT, WITH, VALUES, EXPLAIN, SHOW, DESCRIBE)"
            )));
        }
        let ctx = self.context(scope)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let run = async {
            let frame = ctx.sql_with_options(sql, options).await.map_err(|e| {
                let text = e.to_string();
                if matches!(e.find_root(), DataFusionError::External(_)) {
                    classify(e, &self.limits)
                } else if text.contains("not supported") || text.contains("Only") {
                    SqlError::NotReadOnly(e.find_root().to_string())
                } else {
                    classify(e, &self.limits)
                }
            })?;
            let schema = frame.schema().as_arrow().clone();
            let batches = frame
                .collect()
                .await
                .map_err(|e| classify(e, &self.limits))?;
            QueryResult::plain(&schema, batches)
        };
        match tokio::time::timeout(self.limits.timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(SqlError::Timeout(self.limits.timeout)),
        }
    }
}

/// Result encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    Json,
    Csv,
    ArrowIpc,
}

impl ResultFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "json" | "application/json" => Some(Self::Json),
            "csv" | "text/csv" => Some(Self::Csv),
            "arrow" | "application/vnd.apache.arrow.stream" => Some(Self::ArrowIpc),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv",
            Self::ArrowIpc => "application/vnd.apache.arrow.stream",
        }
    }
}

/// CSV has no nested values: a point (`{lon, lat}`) becomes `POINT(lon lat)`, the text form
/// ingest takes back; any other nested column becomes Arrow's display text.
fn csv_cells(batch: &RecordBatch) -> Result<RecordBatch, SqlError> {
    use arrow::array::{Array, AsArray, StringBuilder};
    use arrow::datatypes::{DataType, Field, Float64Type, Schema};
    if !batch.columns().iter().any(|c| c.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let err =
        |e: arrow::error::ArrowError| SqlError::Execution(format!("encoding the result: {e}"));
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !column.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let mut text = StringBuilder::new();
        let point = match column.data_type() {
            DataType::Struct(members)
                if members.len() == 2
                    && members[0].name() == "lon"
                    && members[1].name() == "lat"
                    && members.iter().all(|m| m.data_type() == &DataType::Float64) =>
            {
                let s = column.as_struct();
                Some((
                    s.column(0).as_primitive::<Float64Type>().clone(),
                    s.column(1).as_primitive::<Float64Type>().clone(),
                ))
            }
            _ => None,
        };
        if let Some((lon, lat)) = point {
            for i in 0..column.len() {
                if column.is_valid(i) {
                    text.append_value(format!("POINT({} {})", lon.value(i), lat.value(i)));
                } else {
                    text.append_null();
                }
            }
        } else {
            let display = arrow::util::display::ArrayFormatter::try_new(
                column.as_ref(),
                &arrow::util::display::FormatOptions::default(),
            )
            .map_err(err)?;
            for i in 0..column.len() {
                if column.is_valid(i) {
                    text.append_value(display.value(i).to_string());
                } else {
                    text.append_null();
                }
            }
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(err)
}

/// Encodes a result: JSON as an array of row objects, CSV with a header, or an Arrow IPC stream.
pub fn encode(result: &QueryResult, format: ResultFormat) -> Result<Vec<u8>, SqlError> {
    let err =
        |e: arrow::error::ArrowError| SqlError::Execution(format!("encoding the result: {e}"));
    let mut out = Vec::new();
    match format {
        ResultFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            for batch in &result.batches {
                writer.write(batch).map_err(err)?;
            }
            writer.finish().map_err(err)?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
        }
        ResultFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if result.batches.is_empty() {
                let header: Vec<&str> = result
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                drop(writer);
                out.extend_from_slice(header.join(",").as_bytes());
                out.push(b'\n');
            } else {
                for batch in &result.batches {
                    writer.write(&csv_cells(batch)?).map_err(err)?;
                }
            }
        }
        ResultFormat::ArrowIpc => {
            let mut writer =
                arrow::ipc::writer::StreamWriter::try_new(&mut out, &result.schema).map_err(err)?;
            for batch in &result.batches {
                writer.write(batch).map_err(err)?;
            }
            writer.finish().map_err(err)?;
        }
    }
    Ok(out)
}
