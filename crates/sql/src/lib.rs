//! Read-only SQL over every dataset, with Apache DataFusion.
//!
//! Key decision: each query plans against a fresh snapshot of each dataset it may read
//! (sealed Parquet segments plus the in-memory unsealed tail), so a record is visible as
//! soon as its ingest call returned, and a seal running meanwhile changes nothing. This is
//! the only crate that depends on DataFusion; the hub knows nothing about SQL.

mod cancel;
mod encode;
mod governed;
mod int_key;
mod lift;
mod limits;
mod memory;
pub mod pg_catalog;
mod stream;
mod table;
mod xlsx;

/// Parameter values (`query_with_params_as`), so callers need no DataFusion of their own.
pub use datafusion::common::ScalarValue;
pub use encode::{Encoder, ResultFormat, encode};
pub use governed::{MaskExec, Reader, Touched};
pub use limits::ValueTooLarge;
pub use stream::{HOLD_ROWS, ResultStream};

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
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;

/// Sort inputs up to this size are sorted in one piece (`SqlEngine::context`).
const SORT_IN_PLACE_BYTES: usize = 64 << 20;

/// Limits applied to every statement (docs/security.md lists them with their reasons).
#[derive(Debug, Clone)]
pub struct SqlLimits {
    /// Wall time from the call to its last batch, waiting for a slot included; on expiry
    /// the statement's tasks are cancelled.
    pub timeout: Duration,
    /// Memory DataFusion's operators may reserve (sorts, joins, aggregations).
    pub memory_bytes: usize,
    /// Rows and bytes (Arrow, in memory) of a result handed back.
    pub max_result_rows: usize,
    pub max_result_bytes: usize,
    /// Text one call of a function like `repeat` or `lpad` may build for one batch.
    pub max_value_bytes: usize,
    /// Operators (and AND/OR/NOT) in one statement, and how deep an expression may nest.
    pub max_operators: usize,
    pub max_expression_depth: usize,
    /// Statements running at once; the rest wait (inside their timeout) for a slot.
    pub max_concurrent: usize,
    /// Statements one department may have running or waiting at once; one more is refused
    /// at once ([`SqlError::DepartmentBusy`]), so one department cannot fill every slot's
    /// queue. Internal statements (scenes, the system) are not counted.
    pub max_per_department: usize,
    /// Memory the operators of one department's statements in flight may reserve together
    /// ([`SqlError::DepartmentMemory`]). Internal statements are not counted.
    pub department_memory_bytes: usize,
    /// Segment footers and statistics kept across statements, together; each seal adds a
    /// file's worth, the oldest are dropped past this (DataFusion's defaults: 50 MiB of
    /// footers, 20 of statistics).
    pub cache_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            memory_bytes: 2 << 30,
            max_result_rows: 10_000_000,
            max_result_bytes: 512 << 20,
            max_value_bytes: 256 << 20,
            max_operators: 10_000,
            max_expression_depth: 256,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_per_department: 16,
            department_memory_bytes: 4 << 30,
            cache_bytes: 70 << 20,
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
    /// Too many operators, or expressions nested too deep, to plan safely.
    #[error("the statement is too complex: {0}")]
    TooComplex(String),
    /// A function would build more text than allowed.
    #[error("{0}; build smaller values")]
    ValueTooLarge(String),
    #[error(
        "the result exceeds the limit of {limit}; aggregate, filter or add LIMIT (sql max_result_rows / max_result_bytes)"
    )]
    ResultTooLarge { limit: String },
    #[error(
        "{department} already has {limit} statements running or waiting (sql max_per_department); wait for one to finish"
    )]
    DepartmentBusy { department: String, limit: usize },
    #[error(
        "the department's memory quota of {limit_bytes} bytes was hit by its statements in flight together (citybrain up --sql-department-memory-mib); wait for one to finish, aggregate or filter more: {detail}"
    )]
    DepartmentMemory { limit_bytes: usize, detail: String },
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

/// Where statements run: a runtime of their own, so a statement busy on every core
/// leaves the server's own workers (and `/health`) free, with stacks large enough for
/// DataFusion's recursive planning, and a fixed number of slots.
#[derive(Debug)]
struct SqlPool {
    runtime: Option<tokio::runtime::Runtime>,
    slots: Arc<tokio::sync::Semaphore>,
    /// Statements running or waiting, per calling department.
    in_flight: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Memory in use per calling department.
    quotas: memory::Quotas,
}

/// A department's place among its statements in flight, given back when dropped.
struct InFlight {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    department: String,
}

impl InFlight {
    fn take(pool: &SqlPool, department: &str, limit: usize) -> Result<Self, SqlError> {
        let mut counts = pool.in_flight.lock().expect("in-flight lock");
        let n = counts.entry(department.to_string()).or_default();
        if *n >= limit {
            return Err(SqlError::DepartmentBusy {
                department: department.to_string(),
                limit,
            });
        }
        *n += 1;
        Ok(Self {
            counts: pool.in_flight.clone(),
            department: department.to_string(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("in-flight lock");
        if let Some(n) = counts.get_mut(&self.department) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.department);
            }
        }
    }
}

impl SqlPool {
    fn new(limits: &SqlLimits) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("citybrain-sql")
            .thread_stack_size(16 << 20)
            .enable_all()
            .build()
            .expect("the SQL runtime starts");
        Self {
            runtime: Some(runtime),
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent.max(1))),
            in_flight: Default::default(),
            quotas: Default::default(),
        }
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("present until dropped")
            .handle()
    }
}

impl Drop for SqlPool {
    fn drop(&mut self) {
        // The last engine may be dropped inside an async task, where a blocking shutdown
        // would panic; statements still running are cancelled.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A statement's task, cancelled when its caller stops waiting (timeout, or a client
/// that went away): the task is aborted, and its operators stop at their next input batch
/// (see `cancel`), whether or not they yield.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>, cancel::CancelFlag);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.1.store(true, std::sync::atomic::Ordering::Relaxed);
        self.0.abort();
    }
}

/// Runs SQL over a hub.
#[derive(Debug, Clone)]
pub struct SqlEngine {
    hub: Arc<Hub>,
    gov: Option<Arc<Gov>>,
    limits: SqlLimits,
    pool: Arc<SqlPool>,
    int_key_grouping: bool,
    /// Segment footers and statistics, read once and kept across statements (a segment is
    /// never rewritten; an entry is checked against the file's size and time anyway).
    caches: Arc<CacheManager>,
    /// Where segments are read from besides this machine's files: in a cluster with
    /// segments in object storage, the bucket (`with_object_store`).
    stores: Arc<datafusion::execution::object_store::DefaultObjectStoreRegistry>,
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
        DataFusionError::External(e) if e.downcast_ref::<ValueTooLarge>().is_some() => {
            SqlError::ValueTooLarge(e.to_string())
        }
        DataFusionError::ResourcesExhausted(detail) if detail.contains(memory::QUOTA_REFUSED) => {
            SqlError::DepartmentMemory {
                limit_bytes: limits.department_memory_bytes,
                detail: detail.clone(),
            }
        }
        DataFusionError::ResourcesExhausted(detail) => SqlError::MemoryLimit {
            limit_bytes: limits.memory_bytes,
            detail: detail.clone(),
        },
        DataFusionError::SQL(..)
        | DataFusionError::Plan(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(..) => SqlError::Invalid(error.find_root().to_string()),
        DataFusionError::Execution(m) if m.contains("not supported") => {
            SqlError::NotReadOnly(m.clone())
        }
        // What the statement asked for cannot be computed (a bad cast, a division by zero,
        // an overflow, a bad pattern): the caller's to fix.
        DataFusionError::ArrowError(e, _)
            if matches!(
                e.as_ref(),
                arrow::error::ArrowError::CastError(_)
                    | arrow::error::ArrowError::DivideByZero
                    | arrow::error::ArrowError::ArithmeticOverflow(_)
                    | arrow::error::ArrowError::ComputeError(_)
                    | arrow::error::ArrowError::InvalidArgumentError(_)
                    | arrow::error::ArrowError::ParseError(_)
            ) =>
        {
            SqlError::Invalid(error.find_root().to_string())
        }
        DataFusionError::Execution(m) if is_callers_mistake(m) => {
            SqlError::Invalid(error.find_root().to_string())
        }
        _ => SqlError::Execution(error.to_string()),
    }
}

/// Execution errors DataFusion raises for what a statement asked (not for a fault of ours).
fn is_callers_mistake(message: &str) -> bool {
    [
        "Cannot cast",
        "cannot cast",
        "Divide by zero",
        "divide by zero",
        "Overflow",
        "overflow",
        "Invalid argument",
        "invalid argument",
        "Regular expression",
        "regex",
        "Error parsing",
        "not valid",
        "out of range",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

impl SqlEngine {
    pub fn new(hub: Arc<Hub>, limits: SqlLimits) -> Self {
        let caches = CacheManager::try_new(
            &CacheManagerConfig::default()
                .with_metadata_cache_limit(limits.cache_bytes / 7 * 5)
                .with_file_statistics_cache_limit(limits.cache_bytes / 7 * 2),
        )
        .expect("the caches build");
        Self {
            hub,
            gov: None,
            pool: Arc::new(SqlPool::new(&limits)),
            limits,
            int_key_grouping: true,
            caches,
            stores: Arc::new(
                datafusion::execution::object_store::DefaultObjectStoreRegistry::new(),
            ),
        }
    }

    /// Reads segment locations under `url` (`s3://bucket`) from `store`: the other nodes'
    /// segments in a cluster whose segments are in object storage.
    pub fn with_object_store(
        self,
        url: &str,
        store: Arc<dyn datafusion::object_store::ObjectStore>,
    ) -> Result<Self, SqlError> {
        use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
        let url = ObjectStoreUrl::parse(url).map_err(|e| SqlError::Execution(e.to_string()))?;
        self.stores.register_store(url.as_ref(), store);
        Ok(self)
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

    fn context(
        &self,
        scope: Arc<governed::QueryScope>,
        cancel: &cancel::CancelFlag,
    ) -> Result<SessionContext, SqlError> {
        let caches = CacheManagerConfig::default()
            .with_file_statistics_cache(self.caches.get_file_statistic_cache())
            .with_file_metadata_cache(Some(self.caches.get_file_metadata_cache()));
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(caches)
            .with_object_store_registry(self.stores.clone())
            .with_memory_pool(Arc::new(memory::StatementPool::new(
                self.limits.memory_bytes,
                match &scope.reader {
                    Reader::Principal(p) => Some(
                        self.pool
                            .quotas
                            .of(p.department.as_str(), self.limits.department_memory_bytes),
                    ),
                    Reader::System => None,
                },
            )))
            .build_arc()
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
            // A sort whose input fits in this many bytes concatenates it and sorts it once.
            // Above DataFusion's 1 MiB default it sorts each input batch and merges them
            // all, and an operator that emits a few rows per batch (a cross join) then
            // makes tens of thousands of runs: a three-column ORDER BY over 240,000 rows
            // took 21.4 s so, 0.29 s with this (docs/benchmarks.md, 2026-12-04).
            .set_usize(
                "datafusion.execution.sort_in_place_threshold_bytes",
                SORT_IN_PLACE_BYTES,
            );
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
        // Last, over the final plan: every operator's inputs stop when the caller is gone.
        rules.push(Arc::new(cancel::WrapInputs {
            flag: cancel.clone(),
        }));
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        // Functions that can build far more text than they read are bounded (`limits`).
        for name in limits::EXPANDING {
            let inner = ctx.state().scalar_functions().get(*name).cloned();
            if let Some(inner) = inner {
                ctx.register_udf(limits::Bounded::wrap(inner, self.limits.max_value_bytes));
            }
        }
        // What PostgreSQL clients call while they browse (`pg_catalog`); `version()` says
        // which PostgreSQL the wire protocol speaks for.
        for function in pg_catalog::functions() {
            ctx.register_udf(function);
        }
        // Tables resolve lazily through governance: only the datasets a query names are
        // looked up and snapshotted.
        ctx.register_catalog("datafusion", Arc::new(governed::GovernedCatalog { scope }));
        Ok(ctx)
    }

    /// Runs one statement as citybrain itself: everything raw, nothing audited. For the
    /// platform's own computations and for benchmarks of the ungoverned baseline.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, SqlError> {
        self.run(sql, Vec::new(), Reader::System, Timestamp(0))
            .await
            .0
    }

    /// The columns a statement would return and the types of its `$n` parameters (None
    /// where nothing in the statement decides one), without running it: for clients that
    /// prepare statements (the Postgres wire's Parse and Describe). Not audited: nothing
    /// is read; running the statement is.
    pub async fn describe_as(&self, sql: &str, call: &DataCall) -> Result<Described, SqlError> {
        let scope = self.scope(call.reader.clone(), call.now);
        check_read_only(sql)?;
        let _in_flight = self.in_flight(&scope.reader)?;
        let flag = cancel::CancelFlag::default();
        let ctx = self.context(scope, &flag)?;
        let plan = plan_statement(&ctx, &self.limits, sql).await?;
        let types = plan
            .get_parameter_types()
            .map_err(|e| classify(e, &self.limits))?;
        let mut parameters = Vec::new();
        for (id, data_type) in types {
            let index: usize = id
                .trim_start_matches('$')
                .parse()
                .map_err(|_| SqlError::Invalid(format!("parameter {id}: use $1, $2, ...")))?;
            if index == 0 {
                return Err(SqlError::Invalid("parameters count from $1".into()));
            }
            if parameters.len() < index {
                parameters.resize(index, None);
            }
            parameters[index - 1] = data_type;
        }
        let schema = table::plain_schema(plan.schema().as_arrow());
        Ok(Described { schema, parameters })
    }

    /// Runs one statement for a caller: through its grants and masks, and recorded in the
    /// audit trail (durably, before the result is returned) whatever the outcome.
    pub async fn query_as(&self, sql: &str, call: &DataCall) -> Result<QueryResult, SqlError> {
        self.query_with_params_as(sql, Vec::new(), call).await
    }

    /// `query_as` for a statement with `$1, $2, ...` placeholders and their values (each
    /// of the type `describe_as` gave, or one that converts to it).
    pub async fn query_with_params_as(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        call: &DataCall,
    ) -> Result<QueryResult, SqlError> {
        citybrain_gov::check_purpose(&call.purpose)
            .map_err(|e| SqlError::Invalid(e.to_string()))?;
        let (result, touched) = self.run(sql, params, call.reader.clone(), call.now).await;
        let outcome = match &result {
            Ok(r) => Ok(r.rows() as u64),
            Err(e) => Err(e),
        };
        // Fail closed: a read that cannot be recorded is not served.
        audit(self.gov.as_deref(), call, sql, &touched, outcome, None)?;
        result
    }

    async fn run(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        reader: Reader,
        now: Timestamp,
    ) -> (Result<QueryResult, SqlError>, Touched) {
        let scope = self.scope(reader, now);
        let result = self.execute(sql, params, scope.clone()).await;
        let touched = std::mem::take(&mut *scope.touched.lock().expect("touched lock"));
        (result, touched)
    }

    /// What one statement of `reader` sees and gathers for its audit record.
    fn scope(&self, reader: Reader, now: Timestamp) -> Arc<governed::QueryScope> {
        Arc::new(governed::QueryScope {
            hub: self.hub.clone(),
            gov: self.gov.clone(),
            reader,
            now,
            touched: Default::default(),
        })
    }

    /// The caller's department's place among its statements in flight (none for the
    /// system's own statements).
    fn in_flight(&self, reader: &Reader) -> Result<Option<InFlight>, SqlError> {
        match reader {
            Reader::Principal(p) => Ok(Some(InFlight::take(
                &self.pool,
                p.department.as_str(),
                self.limits.max_per_department.max(1),
            )?)),
            Reader::System => Ok(None),
        }
    }

    async fn execute(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        scope: Arc<governed::QueryScope>,
    ) -> Result<QueryResult, SqlError> {
        check_read_only(sql)?;
        let _in_flight = self.in_flight(&scope.reader)?;
        let flag = cancel::CancelFlag::default();
        let ctx = self.context(scope, &flag)?;
        let limits = self.limits.clone();
        let sql = sql.to_string();
        let slots = self.pool.slots.clone();
        // The task holds no engine: the pool must never be dropped on its own runtime.
        let task = self.pool.handle().spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .expect("the slots are never closed");
            plan_and_collect(ctx, &limits, &sql, params).await
        });
        let mut task = AbortOnDrop(task, flag);
        match tokio::time::timeout(self.limits.timeout, &mut task.0).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(SqlError::Execution(format!(
                "the statement's task failed: {e}"
            ))),
            // Dropping `task` cancels the statement.
            Err(_) => Err(SqlError::Timeout(self.limits.timeout)),
        }
    }
}

/// What a statement returns and takes, before it runs (`SqlEngine::describe_as`).
#[derive(Debug, Clone)]
pub struct Described {
    pub schema: arrow::datatypes::SchemaRef,
    /// The type of `$1`, `$2`, ...; None where the statement leaves it open.
    pub parameters: Vec<Option<arrow::datatypes::DataType>>,
}

/// Records a principal's data call in the audit trail, durably (nothing for the system's
/// own statements, or without governance): `outcome` is the rows returned or the error.
/// `closes` names the call a streamed result's closing record ends. Returns the record's
/// sequence number.
fn audit(
    gov: Option<&Gov>,
    call: &DataCall,
    sql: &str,
    touched: &Touched,
    outcome: Result<u64, &SqlError>,
    note: Option<(&str, Option<u64>)>,
) -> Result<Option<u64>, SqlError> {
    let (Reader::Principal(principal), Some(gov)) = (&call.reader, gov) else {
        return Ok(None);
    };
    let mut record = Call::new(
        call.now,
        principal.name.as_str(),
        principal.department.as_str(),
        call.kind,
    );
    record.datasets = touched
        .fields
        .iter()
        .map(|(dataset, fields)| Touch {
            dataset: dataset.clone(),
            fields: fields.iter().cloned().collect(),
        })
        .collect();
    record.purpose = if call.purpose.is_empty() {
        touched
            .purposes
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        call.purpose.clone()
    };
    record.detail = sql.to_string();
    match outcome {
        Ok(rows) => record.rows = rows,
        Err(e) => {
            record.outcome = match e {
                SqlError::Denied(_) => Outcome::Denied,
                _ => Outcome::Failed,
            };
            record.detail = format!("{sql}\n-- {e}");
        }
    }
    if let Some((note, closes)) = note {
        record.detail.push_str("\n-- ");
        record.detail.push_str(note);
        record.closes = closes;
    }
    gov.record(record)
        .map(Some)
        .map_err(|e| SqlError::Execution(format!("the call could not be audited: {e}")))
}

/// The clear error for a statement that is not a read. DataFusion's SQLOptions are the
/// enforcement (`plan_statement`).
fn check_read_only(sql: &str) -> Result<(), SqlError> {
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
    Ok(())
}

/// Checks the statement's size and depth, plans it and collects its result within the
/// result limits. Runs on the SQL runtime.
async fn plan_and_collect(
    ctx: SessionContext,
    limits: &SqlLimits,
    sql: &str,
    params: Vec<ScalarValue>,
) -> Result<QueryResult, SqlError> {
    use futures::StreamExt;
    let mut plan = plan_statement(&ctx, limits, sql).await?;
    if !params.is_empty() {
        plan = plan
            .with_param_values(params)
            .map_err(|e| classify(e, limits))?;
    }
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| classify(e, limits))?;
    let schema = frame.schema().as_arrow().clone();
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| classify(e, limits))?;
    let mut count = stream::Count::default();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| classify(e, limits))?;
        count.add(&batch, limits)?;
        batches.push(batch);
    }
    QueryResult::plain(&schema, batches)
}

/// Checks the statement's size and depth and plans it as a read.
async fn plan_statement(
    ctx: &SessionContext,
    limits: &SqlLimits,
    sql: &str,
) -> Result<LogicalPlan, SqlError> {
    let operators = limits::operator_count(sql).map_err(SqlError::Invalid)?;
    if operators > limits.max_operators {
        return Err(SqlError::TooComplex(format!(
            "it has {operators} operators, over the limit of {} (sql max_operators); split it or use IN (...) lists",
            limits.max_operators
        )));
    }
    let planning = |e: DataFusionError| {
        let text = e.to_string();
        if matches!(e.find_root(), DataFusionError::External(_)) {
            classify(e, limits)
        } else if text.contains("not supported") || text.contains("Only") {
            SqlError::NotReadOnly(e.find_root().to_string())
        } else {
            classify(e, limits)
        }
    };
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = state.sql_to_statement(sql, &dialect).map_err(planning)?;
    pg_catalog::drop_oid_casts(&mut statement);
    pg_catalog::backslash_escapes(&mut statement);
    if limits::exceeds_depth(&statement, limits.max_expression_depth) {
        return Err(SqlError::TooComplex(format!(
            "an expression nests more than {} levels deep (sql max_expression_depth); use IN (...) instead of long OR chains, or split it",
            limits.max_expression_depth
        )));
    }
    let plan = state.statement_to_plan(statement).await.map_err(planning)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(planning)?;
    Ok(plan)
}

/// The bytes a batch's rows take (its slices, not the buffers they may share).
fn batch_bytes(batch: &RecordBatch) -> usize {
    use arrow::array::Array;
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}
