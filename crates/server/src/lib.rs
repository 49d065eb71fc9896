//! The HTTP API: authentication, dataset management, ingest and SQL over the hub.
//!
//! Key decision: the server is a thin async shell. CPU and disk work (decoding, fsync)
//! runs on blocking threads via the synchronous hub, so the async runtime only moves
//! bytes. [`run`] takes its listener and shutdown signal, so tests run the real server on
//! port 0 and stop it the same way SIGTERM does.
//!
//! Why this file is long (about 920 lines): the scenes' handlers moved to `scenes/`, and
//! cockpits and briefings have their own modules, but
//! the hub's own routes (datasets: define, ingest, read, SQL) are still here beside the
//! router and the auth middleware; they are the next to move, to a `datasets.rs`.

pub mod briefing;
mod city;
mod cockpit;
pub mod cockpits;
mod error;
mod extract;
mod governance;
mod listen;
pub mod mqtt;
pub mod openapi;
pub mod scene;
pub mod scenes;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use citybrain_core::{DatasetName, Timestamp};
use citybrain_gov::{Call, CallKind, Denial, Gov, GovError, Outcome, Principal, Touch};
use citybrain_hub::{DatasetDef, Format, Hub, OnError, SharingClass};
use citybrain_sql::{DataCall, Reader, ResultFormat, SqlEngine};
use extract::{Json, Path, Query};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use cockpit::built as cockpit_built;
pub use error::{ApiError, ErrorCode};
pub use listen::ConnLimits;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub sql: SqlEngine,
    pub gov: Arc<Gov>,
    /// The scenes, running or not (see [`scene`]).
    pub scenes: Arc<scene::Scenes>,
    /// The city's event stream: index windows, alerts, parking, emergency runs (SSE).
    pub events: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Set at shutdown, so open event streams end and the graceful shutdown completes.
    pub closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// How many connections, and how slow a client may be.
    pub conn: ConnLimits,
    /// The city profile (`GET /api/v1/city`).
    pub city: Arc<citybrain_core::CityProfile>,
}

/// The current time, read here at the edge and passed into the hub.
pub fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp(micros)
}

impl AppState {
    /// The server's state with every scene started (see [`scene::Scenes::start`]).
    pub async fn start(
        hub: Arc<Hub>,
        sql: SqlEngine,
        gov: Arc<Gov>,
        config: scene::SceneConfig,
        body_limit: usize,
        conn: ConnLimits,
    ) -> Self {
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let alerts = scenes::alerts::LiveAlerts::new(
            hub.clone(),
            events.clone(),
            citybrain_alerts::AlertRules::default(),
        );
        let city = Arc::new(config.city.clone());
        let ctx = scene::SceneContext {
            hub: hub.clone(),
            sql: sql.clone(),
            gov: gov.clone(),
            events: events.clone(),
            alerts,
            config,
        };
        let scenes = Arc::new(scene::Scenes::new(scenes::all()));
        scenes.start(&ctx).await;
        Self {
            hub,
            sql,
            gov,
            scenes,
            events,
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            body_limit,
            conn,
            city,
        }
    }

    /// Resolves when event streams are to end (at shutdown).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.closing.subscribe();
        async move {
            let _ = receiver.wait_for(|closing| *closing).await;
        }
    }
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes(&state.scenes).split_for_parts();
    let doc = Arc::new(openapi::finish(doc));
    let authenticated = api
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/", get(cockpit::index))
        .route("/assets/{*path}", get(cockpit::asset))
        .merge(authenticated)
        .with_state(state)
}

/// Every authenticated route with its OpenAPI operation: `routes!` adds both, so the
/// document cannot leave a route out.
pub fn api_routes(scenes: &scene::Scenes) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(list_datasets, create_dataset))
        .routes(routes!(get_dataset, update_dataset, delete_dataset))
        .routes(routes!(ingest, read_records))
        .routes(routes!(governance::dataset_audit))
        .routes(routes!(sql))
        .routes(routes!(governance::whoami))
        .routes(routes!(city::profile))
        .routes(routes!(scene::list))
        .routes(routes!(cockpits::list))
        .routes(routes!(cockpits::get, cockpits::put, cockpits::delete))
        .routes(routes!(cockpits::panel))
        .routes(routes!(briefing::get))
        .routes(routes!(
            governance::list_departments,
            governance::create_department
        ))
        .routes(routes!(
            governance::list_principals,
            governance::create_principal
        ))
        .routes(routes!(governance::issue_token))
        .routes(routes!(governance::list_tokens))
        .routes(routes!(governance::revoke_token))
        .routes(routes!(governance::list_grants, governance::request_grant))
        .routes(routes!(governance::decide_grant))
        .routes(routes!(
            governance::list_linkages,
            governance::propose_linkage
        ))
        .routes(routes!(governance::decide_linkage))
        .merge(scenes.routes());
    OpenApiRouter::new()
        .nest("/api/v1", api)
        .routes(routes!(governance::metrics))
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// (and so in-flight batches, each fsynced before it is acknowledged) finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (hub, scenes, closing) = (
        state.hub.clone(),
        state.scenes.clone(),
        state.closing.clone(),
    );
    let shutdown = async move {
        shutdown.await;
        closing.send_replace(true);
    };
    let limits = state.conn.clone();
    briefing::schedule(state.clone());
    listen::serve(listener, router(state), limits, shutdown).await;
    // The feed closes, each scene applies what was queued and stops, then seals finish.
    tokio::task::spawn_blocking(move || {
        hub.close();
        scenes.stop();
    })
    .await
    .ok();
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
                ErrorCode::UnsupportedContentEncoding,
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
            ErrorCode::InvalidDatasetName,
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
            ErrorCode::Internal,
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Also list the dead-letter datasets themselves (default: only their counts, as
    /// `rejected_rows` beside each dataset).
    #[serde(default)]
    rejected: bool,
}

#[utoipa::path(get, path = "/datasets", tag = "datasets", params(ListParams), responses((status = 200, description = "The datasets you may see, with size, freshness and rejected_rows", body = Object)))]
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

#[utoipa::path(get, path = "/datasets/{name}", tag = "datasets", params(("name" = String, Path, description = "The dataset, namespace.table")), responses((status = 200, description = "The definition and statistics", body = Object)))]
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
            ErrorCode::UnknownDepartment,
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
                ErrorCode::BodyTimeout,
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
                ErrorCode::BodyUnreadable,
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
            ErrorCode::InvalidDefinition,
            "the definition is not UTF-8",
        )
    })?;
    DatasetDef::from_file_text(if is_toml { "body.toml" } else { "body.json" }, text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidDefinition, e))
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
            ErrorCode::NamespaceNotYours,
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

#[utoipa::path(post, path = "/datasets", tag = "datasets", request_body(content = Object, description = "A dataset definition (JSON, or TOML with Content-Type application/toml)", content_type = "application/json"), responses((status = 201, description = "Created", body = Object)))]
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

#[utoipa::path(put, path = "/datasets/{name}", tag = "datasets", params(("name" = String, Path, description = "The dataset, namespace.table")), request_body(content = Object, description = "The changed definition; only changes that keep stored data readable", content_type = "application/json"), responses((status = 200, description = "Updated", body = Object)))]
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
            ErrorCode::NameMismatch,
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
#[utoipa::path(delete, path = "/datasets/{name}", tag = "datasets", params(("name" = String, Path, description = "The dataset, namespace.table")), responses((status = 200, description = "Deleted, with the rows it held", body = Object)))]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct IngestParams {
    on_error: Option<String>,
    /// A feed mapping the dataset declares: the body is in the feed's shape (its column
    /// names, time format and zone), and refused records name the feed's columns.
    mapping: Option<String>,
}

#[utoipa::path(post, path = "/datasets/{name}/records", tag = "datasets", params(("name" = String, Path, description = "The dataset, namespace.table"), IngestParams), request_body(content = String, description = "Records as NDJSON (also text/csv or application/vnd.apache.parquet)", content_type = "application/x-ndjson"), responses((status = 200, description = "Stored and fsynced: accepted, rejected, problems, and the batch's position in the change feed", body = Object)))]
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
                ErrorCode::InvalidOnError,
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
            ErrorCode::UnsupportedContentType,
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
    let mapping = params.mapping;
    let result = blocking(move || {
        Ok(match &mapping {
            None => hub.ingest_bytes(&name, format, body, on_error, now())?,
            Some(m) => hub.ingest_mapped(&name, format, m, &body, on_error, now())?,
        })
    })
    .await;
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
    let report = result?;
    tracing::debug!(
        message = "Batch stored.",
        accepted = report.accepted,
        rejected = report.rejected,
        elapsed_ms = started.elapsed().as_millis() as u64
    );
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SqlRequest {
    sql: String,
    /// Why the data is read; recorded by the audit trail (governance issue).
    #[serde(default)]
    purpose: String,
    format: Option<String>,
}

#[utoipa::path(post, path = "/sql", tag = "sql", request_body(content = SqlRequest, content_type = "application/json"), responses((status = 200, description = "Rows through grants and masks (a JSON array; csv, excel, arrow or geojson with format or Accept)", body = Object)))]
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
            ErrorCode::InvalidSqlRequest,
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
                ErrorCode::InvalidFormat,
                "format must be json, csv, excel (CSV with a UTF-8 byte-order mark), arrow or geojson",
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReadParams {
    /// At most this many records (default 100 for JSON; every record for CSV and Arrow).
    limit: Option<u64>,
    /// json (a read), or an export: csv, excel (CSV with a UTF-8 byte-order mark), arrow or
    /// geojson (the first point column as geometry).
    format: Option<String>,
    #[serde(default)]
    purpose: String,
}

/// Reads or exports a dataset's records, through the same grants, masks and audit as SQL.
#[utoipa::path(get, path = "/datasets/{name}/records", tag = "datasets", params(("name" = String, Path, description = "The dataset, namespace.table"), ReadParams), responses((status = 200, description = "Records through grants and masks (JSON rows; csv, excel, arrow or geojson with ?format=)", body = Object)))]
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
                ErrorCode::InvalidFormat,
                "format must be json, csv, excel (CSV with a UTF-8 byte-order mark), arrow or geojson",
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
pub(crate) fn read_call(me: &Principal, datasets: &[&str], detail: &str) -> Call {
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

/// Records a data call; the append waits for its fsync, so off the async workers.
pub(crate) async fn record(state: &AppState, call: Call) -> Result<(), ApiError> {
    let gov = state.gov.clone();
    blocking(move || {
        gov.record(call)?;
        Ok(())
    })
    .await
}

/// Records a scene's write into one of its datasets as a data call of the principal who
/// asked for it.
pub(crate) fn record_write(
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
pub(crate) fn needs_writer(me: &Principal, message: &str) -> Result<(), ApiError> {
    if me.role == citybrain_gov::Role::Reader {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            message,
        ));
    }
    Ok(())
}
