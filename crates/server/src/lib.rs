//! The HTTP API: authentication, dataset management, ingest and SQL over the hub.
//!
//! Key decision: the server is a thin async shell. CPU and disk work (decoding, fsync)
//! runs on blocking threads via the synchronous hub, so the async runtime only moves
//! bytes. [`run`] takes its listener and shutdown signal, so tests run the real server on
//! port 0 and stop it the same way SIGTERM does.
//!
//! Why this file is long (about 1,300 lines): the scenes' handlers (indices, parking,
//! signals, policy) still live here beside the hub's; issue 22 gives each scene its own
//! router behind the `Scene` trait, which takes them out.

mod cockpit;
mod error;
mod governance;
mod listen;
pub mod live;
pub mod live_alerts;
pub mod live_parking;
pub mod live_signals;
pub mod mqtt;
pub mod openapi;
pub mod policy;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use citybrain_core::{DatasetName, Timestamp};
use citybrain_gov::{Call, CallKind, Denial, Gov, GovError, Outcome, Principal, Touch};
use citybrain_hub::{DatasetDef, Format, Hub, OnError, SharingClass};
use citybrain_sql::{DataCall, Reader, ResultFormat, SqlEngine};
use serde::Deserialize;
use serde_json::json;

pub use cockpit::built as cockpit_built;
pub use error::ApiError;
pub use listen::ConnLimits;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub sql: SqlEngine,
    pub gov: Arc<Gov>,
    /// The live traffic indices, when the hub has passages to compute them from.
    pub live: Option<live::LiveIndices>,
    /// The live parking scene, when the hub has lots.
    pub parking: Option<live_parking::LiveParking>,
    /// The live signal scene, when `up` was given a network to control.
    pub signals: Option<live_signals::LiveSignals>,
    /// Policy delivery: the loaded policies, when there are any.
    pub policy: Option<Arc<policy::PolicyScene>>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// How many connections, and how slow a client may be.
    pub conn: ConnLimits,
}

/// The current time, read here at the edge and passed into the hub.
pub fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp(micros)
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/datasets", get(list_datasets).post(create_dataset))
        .route(
            "/datasets/{name}",
            get(get_dataset).put(update_dataset).delete(delete_dataset),
        )
        .route("/datasets/{name}/records", post(ingest).get(read_records))
        .route("/datasets/{name}/audit", get(governance::dataset_audit))
        .route("/sql", post(sql))
        .route("/whoami", get(governance::whoami))
        .route("/indices/traffic/live", get(traffic_live))
        .route("/indices/stream", get(indices_stream))
        .route("/alerts", get(alerts_active))
        .route("/parking/guide", get(parking_guide))
        .route("/parking/overdue", get(parking_overdue))
        .route("/signals/emergency", post(signals_emergency))
        .route("/policy/runs", post(policy_run))
        .route("/policy/policies", get(policy_list))
        .route("/policy/explain", post(policy_explain))
        .route(
            "/departments",
            get(governance::list_departments).post(governance::create_department),
        )
        .route(
            "/principals",
            get(governance::list_principals).post(governance::create_principal),
        )
        .route("/principals/{name}/tokens", post(governance::issue_token))
        .route("/tokens", get(governance::list_tokens))
        .route("/tokens/{id}", delete(governance::revoke_token))
        .route(
            "/grants",
            get(governance::list_grants).post(governance::request_grant),
        )
        .route("/grants/{id}/{decision}", post(governance::decide_grant))
        .route(
            "/linkages",
            get(governance::list_linkages).post(governance::propose_linkage),
        )
        .route(
            "/linkages/{name}/{decision}",
            post(governance::decide_linkage),
        );
    let authenticated = Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(governance::metrics))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/", get(cockpit::index))
        .route("/assets/{*path}", get(cockpit::asset))
        .merge(authenticated)
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// (and so in-flight batches, each fsynced before it is acknowledged) finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = state.hub.clone();
    let live = state.live.clone();
    let shutdown = async move {
        shutdown.await;
        if let Some(live) = live {
            live.close_streams();
        }
    };
    let limits = state.conn.clone();
    listen::serve(listener, router(state), limits, shutdown).await;
    tokio::task::spawn_blocking(move || hub.close()).await.ok();
    Ok(())
}

/// Establishes the calling principal from the bearer token. Tokens are looked up by
/// their SHA-256 hash, so the comparison never touches the secret itself.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(token) = token else {
        return ApiError::unauthorized().into_response();
    };
    // Compressed bodies are not decoded: say so rather than read them as garbage.
    if let Some(encoding) = request.headers().get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                format!(
                    "Content-Encoding '{encoding}' is not supported; send the body uncompressed"
                ),
            )
            .into_response();
        }
    }
    match state.gov.session(token, now()) {
        Ok(session) => {
            tracing::debug!(
                message = "Request.",
                principal = %session.principal.name,
                method = %request.method(),
                path = %request.uri().path()
            );
            request.extensions_mut().insert(session.principal.clone());
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme's name is
/// case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub(crate) fn dataset_name(text: &str) -> Result<DatasetName, ApiError> {
    DatasetName::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_dataset_name",
            e.to_string(),
        )
    })
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("worker failed: {e}"),
        )
    })?
}

/// The definition of a dataset the caller may know exists; 404 otherwise, the same as
/// for a dataset that does not exist.
pub(crate) fn known_definition(
    state: &AppState,
    me: &Principal,
    name: &DatasetName,
) -> Result<DatasetDef, ApiError> {
    let def = state.hub.definition(name)?;
    if def.sharing == SharingClass::None && def.owner != me.department && !me.is_hub_admin() {
        return Err(GovError::Denied(Denial::Unknown(name.clone())).into());
    }
    Ok(def)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    /// Also list the dead-letter datasets themselves (default: only their counts, as
    /// `rejected_rows` beside each dataset).
    #[serde(default)]
    rejected: bool,
}

async fn list_datasets(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let hub = state.hub.clone();
    let list = blocking(move || Ok(hub.list()?)).await?;
    let rejected_rows: std::collections::HashMap<String, u64> = list
        .iter()
        .filter(|d| d.def.name.is_rejected())
        .map(|d| (d.def.name.to_string(), d.rows))
        .collect();
    let visible: Vec<serde_json::Value> = list
        .into_iter()
        .filter(|d| {
            d.def.sharing != SharingClass::None || d.def.owner == me.department || me.is_hub_admin()
        })
        .filter(|d| params.rejected || !d.def.name.is_rejected())
        .map(|d| {
            let twin = rejected_rows.get(d.def.name.rejected().as_str()).copied();
            let mut v = serde_json::to_value(&d).expect("dataset info serializes");
            if let Some(n) = twin.filter(|_| !d.def.name.is_rejected()) {
                v["rejected_rows"] = json!(n);
            }
            v
        })
        .collect();
    Ok(Json(json!({ "datasets": visible })).into_response())
}

async fn get_dataset(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = dataset_name(&name)?;
    known_definition(&state, &me, &name)?;
    let hub = state.hub.clone();
    Ok(Json(blocking(move || Ok(hub.info(&name)?)).await?).into_response())
}

/// Records a management or ingest call in the audit trail.
fn audit(
    state: &AppState,
    me: &Principal,
    kind: CallKind,
    dataset: &DatasetDef,
    rows: u64,
    outcome: Outcome,
    detail: String,
) -> Result<(), ApiError> {
    let mut call = Call::new(now(), me.name.as_str(), me.department.as_str(), kind);
    call.datasets.push(Touch {
        dataset: dataset.name.clone(),
        fields: dataset.fields.iter().map(|f| f.name.clone()).collect(),
    });
    call.rows = rows;
    call.outcome = outcome;
    call.detail = detail;
    state.gov.record(call)?;
    Ok(())
}

/// Checks that the caller may define or write the datasets of `owner`.
fn check_publisher(state: &AppState, me: &Principal, def: &DatasetDef) -> Result<(), ApiError> {
    if !me.publishes_for(&def.owner) {
        return Err(GovError::Forbidden(format!(
            "{} ({} in {}) may not publish for {}; publishers and admins of {} may",
            me.name,
            me.role.name(),
            me.department,
            def.owner,
            def.owner
        ))
        .into());
    }
    if !state.gov.department_exists(&def.owner)? {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_department",
            format!(
                "department {} does not exist; a hub admin creates it with `citybrain departments create {}`",
                def.owner, def.owner
            ),
        ));
    }
    Ok(())
}

/// Cap for request bodies that carry a definition or a query, not records.
pub(crate) const SMALL_BODY_LIMIT: usize = 1 << 20;

/// How much of an over-limit body is still read (and discarded) so the client, which is
/// usually still sending, gets the 413 instead of a reset connection.
const DRAIN_CAP: usize = 64 << 20;

/// Reads a body as a stream, up to the limit; past it, answers 413 naming the limit.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    read_body_sized(body, limit, None).await
}

/// Longest wait for the next piece of a body, and longest a whole body may take: a
/// client trickling bytes must not hold a connection for ever.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
const BODY_TOTAL: std::time::Duration = std::time::Duration::from_secs(600);

/// [`read_body`] with the length the client announced, so a large body is received into
/// one buffer instead of one that doubles (copying what came so far) as it grows.
pub(crate) async fn read_body_sized(
    body: Body,
    limit: usize,
    announced: Option<usize>,
) -> Result<bytes::Bytes, ApiError> {
    use axum::body::HttpBody;
    use futures::StreamExt;
    // A length announced far over the limit is refused before a byte of the body is read.
    // A little over, the body is read and dropped so a client that sends it whole before
    // reading (most do, without `Expect: 100-continue`) sees the 413, not a broken pipe.
    if body.size_hint().lower() > (limit + DRAIN_CAP) as u64 {
        return Err(ApiError::too_large(limit));
    }
    let deadline = tokio::time::Instant::now() + BODY_TOTAL;
    let mut stream = body.into_data_stream();
    let mut buffer = bytes::BytesMut::with_capacity(announced.unwrap_or(0).min(limit));
    let mut seen = 0usize;
    loop {
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(BODY_IDLE);
        let Ok(next) = tokio::time::timeout(wait, stream.next()).await else {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive in time (at most {} s between pieces, {} s in all); send it at once",
                    BODY_IDLE.as_secs(),
                    BODY_TOTAL.as_secs()
                ),
            ));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("the body could not be read: {e}"),
            )
        })?;
        seen += chunk.len();
        if seen > limit {
            if seen > limit + DRAIN_CAP {
                break;
            }
            buffer.clear();
            continue;
        }
        buffer.extend_from_slice(&chunk);
    }
    if seen > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(buffer.freeze())
}

fn parse_definition(headers: &HeaderMap, body: &[u8]) -> Result<DatasetDef, ApiError> {
    let is_toml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("toml"));
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_definition",
            "the definition is not UTF-8",
        )
    })?;
    DatasetDef::from_file_text(if is_toml { "body.toml" } else { "body.json" }, text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_definition", e))
}

/// Namespaces that name SQL's own schemas or the platform's: a dataset there would
/// shadow or impersonate them.
const RESERVED_NAMESPACES: &[&str] = &[
    "information_schema",
    "pg_catalog",
    "datafusion",
    "public",
    "system",
    "citybrain",
];

/// A dataset's namespace belongs to one department: the department of that name, or
/// else the department whose datasets are already there (`parking.*` is transport's).
/// So no department publishes under another's name.
fn check_namespace(state: &AppState, def: &DatasetDef) -> Result<(), ApiError> {
    let namespace = def.name.namespace();
    let refuse = |why: String| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "namespace_not_yours",
            format!("{}: {why}", def.name),
        ))
    };
    if RESERVED_NAMESPACES.contains(&namespace) {
        return refuse(format!(
            "the namespace '{namespace}' is reserved; name the dataset {}.{}",
            def.owner,
            def.name.table()
        ));
    }
    if def
        .name
        .table()
        .ends_with(citybrain_core::ids::REJECTED_SUFFIX)
    {
        return refuse(format!(
            "names ending in '{}' are the hub's dead-letter datasets",
            citybrain_core::ids::REJECTED_SUFFIX
        ));
    }
    let named_department = citybrain_core::DepartmentId::parse(namespace)
        .ok()
        .filter(|d| state.gov.department_exists(d).unwrap_or(false));
    if let Some(department) = named_department {
        if department != def.owner {
            return refuse(format!(
                "the namespace '{namespace}' is department {department}'s; name the dataset {}.{}",
                def.owner,
                def.name.table()
            ));
        }
        return Ok(());
    }
    let others: Vec<String> = state
        .hub
        .names()
        .iter()
        .filter(|n| n.namespace() == namespace)
        .filter_map(|n| state.hub.definition(n).ok())
        .filter(|d| d.owner != def.owner)
        .map(|d| d.owner.to_string())
        .collect();
    if let Some(owner) = others.first() {
        return refuse(format!(
            "the namespace '{namespace}' holds department {owner}'s datasets; name the dataset {}.{}",
            def.owner,
            def.name.table()
        ));
    }
    Ok(())
}

async fn create_dataset(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, SMALL_BODY_LIMIT).await?;
    let def = parse_definition(&headers, &body)?;
    check_publisher(&state, &me, &def)?;
    check_namespace(&state, &def)?;
    let hub = state.hub.clone();
    let created = def.clone();
    let info = blocking(move || Ok(hub.create_dataset(created, now())?)).await?;
    audit(
        &state,
        &me,
        CallKind::Manage,
        &def,
        0,
        Outcome::Ok,
        "create dataset".into(),
    )?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn update_dataset(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = dataset_name(&name)?;
    let body = read_body(body, SMALL_BODY_LIMIT).await?;
    let def = parse_definition(&headers, &body)?;
    if def.name != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name_mismatch",
            format!(
                "the path names {name} but the definition names {}",
                def.name
            ),
        ));
    }
    let old = known_definition(&state, &me, &name)?;
    check_publisher(&state, &me, &old)?;
    let hub = state.hub.clone();
    let updated = def.clone();
    let info = blocking(move || Ok(hub.update_dataset(updated, now())?)).await?;
    audit(
        &state,
        &me,
        CallKind::Manage,
        &def,
        0,
        Outcome::Ok,
        "update dataset".into(),
    )?;
    Ok(Json(info).into_response())
}

/// Deletes a dataset and its records: its owner's admins (or the hub's), audited.
async fn delete_dataset(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = dataset_name(&name)?;
    let def = known_definition(&state, &me, &name)?;
    if !me.administers(&def.owner) {
        return Err(GovError::Forbidden(format!(
            "only admins of {} delete its datasets",
            def.owner
        ))
        .into());
    }
    let hub = state.hub.clone();
    let deleted = name.clone();
    let result = blocking(move || Ok(hub.delete_dataset(&deleted)?)).await;
    let (rows, outcome) = match &result {
        Ok(rows) => (*rows, Outcome::Ok),
        Err(_) => (0, Outcome::Failed),
    };
    audit(
        &state,
        &me,
        CallKind::Manage,
        &def,
        rows,
        outcome,
        "delete dataset".into(),
    )?;
    let rows = result?;
    Ok(Json(json!({ "deleted": name, "rows": rows })).into_response())
}

#[derive(Debug, Deserialize)]
struct IngestParams {
    on_error: Option<String>,
}

async fn ingest(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(name): Path<String>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = dataset_name(&name)?;
    let on_error = match params.on_error.as_deref() {
        None | Some("reject") => OnError::Reject,
        Some("skip") => OnError::Skip,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_on_error",
                format!("on_error must be 'reject' (the default) or 'skip', not '{other}'"),
            ));
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = Format::from_content_type(content_type).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            format!(
                "Content-Type '{content_type}' is not supported; use application/x-ndjson, text/csv or application/vnd.apache.parquet"
            ),
        )
    })?;
    let def = known_definition(&state, &me, &name)?;
    check_publisher(&state, &me, &def)?;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = read_body_sized(body, state.body_limit, announced).await?;
    let hub = state.hub.clone();
    let started = std::time::Instant::now();
    let result =
        blocking(move || Ok(hub.ingest_bytes(&name, format, body, on_error, now())?)).await;
    let (rows, outcome, detail) = match &result {
        Ok(r) => (
            r.accepted as u64,
            Outcome::Ok,
            format!("{} records accepted, {} rejected", r.accepted, r.rejected),
        ),
        Err(e) => (
            0,
            Outcome::Failed,
            format!("batch refused: {}", e.message()),
        ),
    };
    audit(&state, &me, CallKind::Ingest, &def, rows, outcome, detail)?;
    let mut report = result?;
    for stored in std::mem::take(&mut report.stored) {
        match def.name.as_str() {
            live::PASSAGES => {
                if let Some(live) = &state.live {
                    live.feed(stored);
                }
            }
            live_parking::GATE_EVENTS | live_parking::SENSOR_EVENTS => {
                if let Some(parking) = &state.parking {
                    parking.feed(stored);
                }
            }
            _ => {}
        }
    }
    tracing::debug!(
        message = "Batch stored.",
        accepted = report.accepted,
        rejected = report.rejected,
        elapsed_ms = started.elapsed().as_millis() as u64
    );
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    sql: String,
    /// Why the data is read; recorded by the audit trail (governance issue).
    #[serde(default)]
    purpose: String,
    format: Option<String>,
}

async fn sql(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, SMALL_BODY_LIMIT).await?;
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_sql_request",
            format!("expected {{\"sql\": .., \"purpose\": ..}}: {e}"),
        )
    })?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(ResultFormat::parse);
    let format = match request.format.as_deref() {
        Some(text) => ResultFormat::parse(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_format",
                "format must be json, csv or arrow",
            )
        })?,
        None => accept.unwrap_or(ResultFormat::Json),
    };
    let call = DataCall {
        reader: Reader::Principal(me),
        purpose: request.purpose,
        kind: CallKind::Sql,
        now: now(),
    };
    let result = state.sql.query_as(&request.sql, &call).await?;
    let bytes = citybrain_sql::encode(&result, format)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], bytes).into_response())
}

#[derive(Debug, Deserialize)]
struct ReadParams {
    /// At most this many records (default 100 for JSON; every record for CSV and Arrow).
    limit: Option<u64>,
    /// json (a read), csv or arrow (an export).
    format: Option<String>,
    #[serde(default)]
    purpose: String,
}

/// Reads or exports a dataset's records, through the same grants, masks and audit as SQL.
async fn read_records(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(name): Path<String>,
    Query(params): Query<ReadParams>,
) -> Result<Response, ApiError> {
    let name = dataset_name(&name)?;
    let format = match params.format.as_deref() {
        None => ResultFormat::Json,
        Some(text) => ResultFormat::parse(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_format",
                "format must be json, csv or arrow",
            )
        })?,
    };
    let (kind, limit) = match format {
        ResultFormat::Json => (CallKind::Read, Some(params.limit.unwrap_or(100))),
        _ => (CallKind::Export, params.limit),
    };
    // The name is a validated `namespace.table`, so it is safe to place in SQL.
    let mut sql = format!("SELECT * FROM {name}");
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let call = DataCall {
        reader: Reader::Principal(me),
        purpose: params.purpose,
        kind,
        now: now(),
    };
    let result = state.sql.query_as(&sql, &call).await.map_err(|e| match e {
        // Through SQL an unknown table is "invalid"; as a resource it is not found.
        citybrain_sql::SqlError::Invalid(m) if m.contains("not found") => {
            ApiError::from(citybrain_hub::HubError::NotFound(name.clone()))
        }
        other => other.into(),
    })?;
    let bytes = citybrain_sql::encode(&result, format)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], bytes).into_response())
}

/// Records a read of the live indices (aggregates, no personal data) in the audit trail.
/// A read of aggregate datasets (no personal fields) by `me`, for the audit trail.
fn read_call(me: &Principal, datasets: &[&str], detail: &str) -> Call {
    let mut call = Call::new(
        now(),
        me.name.as_str(),
        me.department.as_str(),
        CallKind::Read,
    );
    for name in datasets {
        call.datasets.push(Touch {
            dataset: DatasetName::parse(name).expect("valid name"),
            fields: Vec::new(),
        });
    }
    call.detail = detail.to_string();
    call
}

async fn audit_index_read(state: &AppState, me: &Principal, detail: &str) -> Result<(), ApiError> {
    let call = read_call(me, &["indices.on_road", "indices.census_daily"], detail);
    // The append waits for its fsync: off the async workers.
    let gov = state.gov.clone();
    blocking(move || {
        gov.record(call)?;
        Ok(())
    })
    .await
}

fn live_of(state: &AppState) -> Result<&live::LiveIndices, ApiError> {
    state.live.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "indices_unavailable",
            "live indices are not running (start `citybrain up` with the transport datasets)",
        )
    })
}

/// The live traffic view: the stream's time, vehicles on the road, today's census so far.
async fn traffic_live(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let live = live_of(&state)?;
    audit_index_read(&state, &me, "GET /api/v1/indices/traffic/live").await?;
    Ok(Json(json!({ "live": live.latest() })).into_response())
}

/// The open alerts (worst first per kind) with the rules that open and close them; their
/// history is the dataset `alerts.events`.
async fn alerts_active(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let live = live_of(&state)?;
    let call = read_call(&me, &[citybrain_alerts::DATASET], "GET /api/v1/alerts");
    let gov = state.gov.clone();
    blocking(move || {
        gov.record(call)?;
        Ok(())
    })
    .await?;
    let alerts = live.alerts().active();
    let rules = live.alerts().rules();
    Ok(Json(json!({
        "at": live.latest().map(|l| l.at),
        "alerts": alerts,
        "rules": {
            "congestion": format!(
                "delay index >= {} for {} bins of 15 minutes with >= {} traversals each; closes under {}",
                rules.congestion_open, rules.congestion_bins, rules.min_traversals, rules.congestion_close
            ),
            "lot_full": format!("parking index >= {}; closes under {}", rules.lot_open, rules.lot_close),
        },
    }))
    .into_response())
}

/// Server-Sent Events: `live` after every ingested batch, `rows` as index windows close.
async fn indices_stream(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let live = live_of(&state)?;
    audit_index_read(&state, &me, "GET /api/v1/indices/stream").await?;
    let first = live
        .latest()
        .map(|l| json!({"type": "live", "live": l}).to_string());
    let receiver = live.subscribe();
    let updates = futures::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(text) => return Some((text.to_string(), rx)),
                // A slow client skips what it missed; the datasets keep everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt;
    let stream = futures::stream::iter(first)
        .chain(updates)
        .take_until(live.closed())
        .map(|text| Ok::<_, std::convert::Infallible>(Event::default().data(text)));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Debug, Deserialize)]
struct GuideParams {
    lat: f64,
    lon: f64,
    #[serde(default = "default_radius")]
    radius_m: f64,
    #[serde(default)]
    arrive_in_min: u32,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_radius() -> f64 {
    2_500.0
}

fn default_limit() -> usize {
    10
}

/// Lots near a place, most likely to have a free berth on arrival first.
async fn parking_guide(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<GuideParams>,
) -> Result<Response, ApiError> {
    let parking = state.parking.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "parking_unavailable",
            "the parking scene is not running (it starts with `citybrain up` when parking.lots has lots)",
        )
    })?;
    let at = citybrain_core::GeoPoint::new(params.lon, params.lat).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_location",
            format!("lat/lon: {e}"),
        )
    })?;
    if !(params.radius_m > 0.0 && params.radius_m <= 20_000.0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_radius",
            "radius_m must be above 0 and at most 20000",
        ));
    }
    let query = citybrain_parking::GuideQuery {
        at,
        radius_m: params.radius_m,
        arrive_in_min: params.arrive_in_min.min(24 * 60),
        limit: params.limit.clamp(1, 100),
    };
    // The audit append waits for its group commit (an fsync): off the async workers, so a
    // wait does not hold up other requests.
    let (parking, gov) = (parking.clone(), state.gov.clone());
    let lots = blocking(move || {
        let lots = parking.guide(&query);
        let mut call = read_call(
            &me,
            &["parking.lots", "parking.index"],
            "GET /api/v1/parking/guide",
        );
        call.rows = lots.len() as u64;
        gov.record(call)?;
        Ok(lots)
    })
    .await?;
    Ok(Json(json!({ "lots": lots })).into_response())
}

#[derive(Debug, Deserialize)]
struct EmergencyRequest {
    /// The edges the emergency vehicle will take, in order.
    route: Vec<String>,
    #[serde(default = "default_priority")]
    priority: u8,
}

fn default_priority() -> u8 {
    1
}

/// Starts an emergency run (一键护航): the vehicle leaves now along `route` and every light
/// ahead turns green for it in time. Its progress streams on `/api/v1/indices/stream`
/// (`type: "emergency"`); the finished run lands in `signals.emergency_runs`.
async fn signals_emergency(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<EmergencyRequest>,
) -> Result<Response, ApiError> {
    let signals = state.signals.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "signals_unavailable",
            "the signal scene is not running (start `citybrain up --signals-net NET --signals-routes ROUTES`)",
        )
    })?;
    needs_writer(
        &me,
        "starting an emergency run needs a publisher or admin role (a reader may only watch)",
    )?;
    if request.route.len() < 2 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_route",
            "route: give at least two edges, in driving order",
        ));
    }
    let gov = state.gov.clone();
    let who = me.name.as_str().to_string();
    let run_id = blocking(move || {
        let outcome = signals.emergency(request.route, request.priority, &who);
        record_write(
            &gov,
            &me,
            "signals.emergency_runs",
            "POST /api/v1/signals/emergency".into(),
            0,
            outcome.is_ok(),
        )?;
        outcome.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_route",
                format!("route: {e}"),
            )
        })
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run_id": run_id }))).into_response())
}

/// Records a scene's write into one of its datasets as a data call of the principal who
/// asked for it.
fn record_write(
    gov: &Gov,
    me: &Principal,
    dataset: &str,
    detail: String,
    rows: u64,
    succeeded: bool,
) -> Result<(), ApiError> {
    let mut call = Call::new(
        now(),
        me.name.as_str(),
        me.department.as_str(),
        CallKind::Ingest,
    );
    call.datasets.push(Touch {
        dataset: DatasetName::parse(dataset).expect("scene dataset names are valid"),
        fields: Vec::new(),
    });
    call.detail = detail;
    call.rows = rows;
    if !succeeded {
        call.outcome = Outcome::Failed;
    }
    gov.record(call)?;
    Ok(())
}

/// Actions that change the city (start a run, pay) are for publishers and admins.
fn needs_writer(me: &Principal, message: &str) -> Result<(), ApiError> {
    if me.role == citybrain_gov::Role::Reader {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message));
    }
    Ok(())
}

fn policy_scene(state: &AppState) -> Result<Arc<policy::PolicyScene>, ApiError> {
    state.policy.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "policy_unavailable",
            "no policies are loaded (start `citybrain up --policies DIR`)",
        )
    })
}

/// The loaded policies: id, title, issuing department, legal basis, effective dates (the
/// texts are published rules, so any authenticated caller may list them).
async fn policy_list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let scene = policy_scene(&state)?;
    let policies: Vec<_> = scene
        .policies
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "title": p.title,
                "department": p.department,
                "basis": p.basis,
                "effective": p.effective.map(|(from, to)| json!({"from": from.to_string(), "to": to.to_string()})),
            })
        })
        .collect();
    Ok(Json(json!({ "policies": policies })).into_response())
}

#[derive(Debug, Deserialize)]
struct ExplainRequest {
    enterprise_id: String,
    #[serde(default)]
    purpose: String,
    /// As for a run (default: `market.enterprises`).
    #[serde(default)]
    inputs: Option<String>,
}

/// One enterprise against every loaded policy (the enterprise-facing page, an auditor's
/// question): eligible or not, clause by clause with the values read, the amount and any
/// exception. The enterprise's row is read with the caller's grants and audited.
async fn policy_explain(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<ExplainRequest>,
) -> Result<Response, ApiError> {
    let scene = policy_scene(&state)?;
    let call = DataCall {
        reader: Reader::Principal(me),
        purpose: if request.purpose.is_empty() {
            format!("explain policies for {}", request.enterprise_id)
        } else {
            request.purpose.clone()
        },
        kind: CallKind::Sql,
        now: now(),
    };
    let sql = format!(
        "SELECT * FROM ({}) AS facts WHERE enterprise_id = '{}' LIMIT 1",
        policy_inputs(request.inputs.as_deref()),
        request.enterprise_id.replace('\'', "''")
    );
    let row = state.sql.query_as(&sql, &call).await?;
    let id = request.enterprise_id.clone();
    let decisions = blocking(move || {
        let policies: Vec<&citybrain_rules::syntax::PolicyAst> = scene.policies.iter().collect();
        let facts = policy::facts_from_row(&row.batches, &policies).map_err(|e| {
            let status = if e == "no such enterprise" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            ApiError::new(status, "cannot_explain", format!("enterprise {id}: {e}"))
        })?;
        Ok(policy::explain(&scene, &facts))
    })
    .await?;
    Ok(Json(json!({
        "enterprise_id": request.enterprise_id,
        "decisions": decisions,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct PolicyRunRequest {
    /// The run's name (e.g. "2025-annual"): recorded with each payout.
    run: String,
    #[serde(default)]
    purpose: String,
    /// The facts as SQL over the hub (joins, aggregations: kilograms of tea bought from
    /// farmers last year), one row per enterprise with `enterprise_id`; read with the
    /// caller's grants. Default: `SELECT * FROM market.enterprises`.
    #[serde(default)]
    inputs: Option<String>,
}

/// The facts policies read, as SQL: the request's, or `market.enterprises`.
fn policy_inputs(inputs: Option<&str>) -> String {
    inputs.map_or_else(
        || "SELECT * FROM market.enterprises".to_string(),
        |sql| sql.trim().trim_end_matches(';').to_string(),
    )
}

/// A matching run (亲清在线): every loaded policy against every enterprise in
/// `market.enterprises` (read with the caller's grants, audited), payouts written to
/// `policy.payouts` exactly once per policy, period and enterprise (see [`policy`]).
async fn policy_run(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<PolicyRunRequest>,
) -> Result<Response, ApiError> {
    let scene = policy_scene(&state)?;
    needs_writer(&me, "a payout run needs a publisher or admin role")?;
    let run = request.run.trim().to_string();
    if run.is_empty()
        || run.len() > 100
        || !run
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.:/".contains(c))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_run",
            "run: give a name of 1 to 100 letters, digits and - _ . : / (e.g. 2025-annual)",
        ));
    }
    let _one_at_a_time = scene.running.try_lock().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "run_in_progress",
            "a payout run is in progress; run again when it has finished (it will pay only who is left)",
        )
    })?;
    let call = DataCall {
        reader: Reader::Principal(me.clone()),
        purpose: if request.purpose.is_empty() {
            format!("policy payout run {run}")
        } else {
            request.purpose.clone()
        },
        kind: CallKind::Sql,
        now: now(),
    };
    let enterprises = state
        .sql
        .query_as(&policy_inputs(request.inputs.as_deref()), &call)
        .await?;
    // The ledger reads itself: every id ever paid.
    let mut paid = std::collections::HashSet::new();
    for batch in state
        .sql
        .query("SELECT payout_id FROM policy.payouts")
        .await?
        .batches
    {
        use arrow::array::{Array, AsArray};
        let col = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
        let s = col.as_string::<i32>();
        paid.extend((0..s.len()).map(|i| s.value(i).to_string()));
    }
    let (hub, gov, worker) = (state.hub.clone(), state.gov.clone(), scene.clone());
    let report = blocking(move || {
        let policies: Vec<&citybrain_rules::syntax::PolicyAst> = worker.policies.iter().collect();
        let outcome = policy::table_from_batches(&enterprises.batches, &policies)
            .and_then(|(ids, table)| policy::pay(&hub, &worker, &run, &ids, &table, &paid, now()));
        record_write(
            &gov,
            &me,
            "policy.payouts",
            format!("POST /api/v1/policy/runs {run}"),
            outcome.as_ref().map_or(0, |r| r.paid_now),
            outcome.is_ok(),
        )?;
        outcome.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "run_failed", e))
    })
    .await?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize)]
struct OverdueParams {
    /// Hours a driver has to pay after leaving (default 48).
    #[serde(default = "default_grace")]
    grace_hours: u32,
    #[serde(default)]
    purpose: String,
}

fn default_grace() -> u32 {
    48
}

/// Bills with no payment once the grace period after the exit has passed: the follow-up
/// list. A governed SQL call as the caller, so plates are masked unless a grant says
/// otherwise, and the call is audited.
async fn parking_overdue(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<OverdueParams>,
) -> Result<Response, ApiError> {
    let grace = params.grace_hours.min(24 * 365);
    let at = now();
    let sql = format!(
        "SELECT b.bill_id, b.lot_id, b.plate, b.entry, b.exit, b.amount \
           FROM parking.bills b LEFT JOIN parking.payments p ON b.bill_id = p.bill_id \
          WHERE p.bill_id IS NULL AND b.exit + INTERVAL '{grace} hours' < TIMESTAMP '{at}' \
          ORDER BY b.exit"
    );
    let call = DataCall {
        reader: Reader::Principal(me),
        purpose: if params.purpose.is_empty() {
            format!("parking bills unpaid {grace} hours after exit")
        } else {
            params.purpose
        },
        kind: CallKind::Read,
        now: at,
    };
    let result = state.sql.query_as(&sql, &call).await?;
    let bytes = citybrain_sql::encode(&result, ResultFormat::Json)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
