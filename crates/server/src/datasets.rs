//! The hub's own routes: datasets defined, changed and deleted, records ingested and read
//! back, and SQL, each through grants, masks and the audit trail; and reading request
//! bodies within their limits.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use citybrain_core::DatasetName;
use citybrain_gov::{Call, CallKind, Denial, GovError, Outcome, Principal, Touch};
use citybrain_hub::{DatasetDef, Format, OnError, SharingClass};
use citybrain_sql::{DataCall, Reader, ResultFormat};
use serde::Deserialize;
use serde_json::json;

use crate::error::ErrorCode;
use crate::extract::{Json, Path, Query};
use crate::{ApiError, AppState, blocking, dataset_name, now};

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
pub(crate) struct ListParams {
    /// Also list the dead-letter datasets themselves (default: only their counts, as
    /// `rejected_rows` beside each dataset).
    #[serde(default)]
    rejected: bool,
}

#[utoipa::path(get, path = "/datasets", tag = "datasets", params(ListParams), responses((status = 200, description = "The datasets you may see, with size, freshness and rejected_rows", body = Object)))]
pub(crate) async fn list_datasets(
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
pub(crate) async fn get_dataset(
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
pub(crate) fn audit(
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
pub(crate) fn check_publisher(
    state: &AppState,
    me: &Principal,
    def: &DatasetDef,
) -> Result<(), ApiError> {
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
pub(crate) const DRAIN_CAP: usize = 64 << 20;

/// Reads a body as a stream, up to the limit; past it, answers 413 naming the limit.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    read_body_sized(body, limit, None).await
}

/// Longest wait for the next piece of a body, and longest a whole body may take: a
/// client trickling bytes must not hold a connection for ever.
pub(crate) const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
pub(crate) const BODY_TOTAL: std::time::Duration = std::time::Duration::from_secs(600);

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

pub(crate) fn parse_definition(headers: &HeaderMap, body: &[u8]) -> Result<DatasetDef, ApiError> {
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
pub(crate) const RESERVED_NAMESPACES: &[&str] = &[
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
pub(crate) fn check_namespace(state: &AppState, def: &DatasetDef) -> Result<(), ApiError> {
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
pub(crate) async fn create_dataset(
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
pub(crate) async fn update_dataset(
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
    // Its entity type or id field may have changed: the index is built again.
    state.ngsi_ids.reset(def.name.as_str());
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
pub(crate) async fn delete_dataset(
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
    state.ngsi_ids.reset(name.as_str());
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
pub(crate) struct IngestParams {
    on_error: Option<String>,
    /// A feed mapping the dataset declares: the body is in the feed's shape (its column
    /// names, time format and zone), and refused records name the feed's columns.
    mapping: Option<String>,
}

#[utoipa::path(post, path = "/datasets/{name}/records", tag = "datasets", params(("name" = String, Path, description = "The dataset, namespace.table"), IngestParams), request_body(content = String, description = "Records as NDJSON (also text/csv or application/vnd.apache.parquet). With an `Idempotency-Key` header (1 to 200 visible ASCII characters), a call sent again with the same key within a day stores nothing twice and answers what the first stored, with `replayed: true`.", content_type = "application/x-ndjson"), responses((status = 200, description = "Stored and fsynced: accepted, rejected, problems, and the batch's position in the change feed", body = Object)))]
pub(crate) async fn ingest(
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
    // A call sent again with the same key (say, after a timeout or a node's death) stores
    // nothing twice: it answers what the first stored, with "replayed": true.
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value.to_str().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidIdempotencyKey,
                    "the Idempotency-Key header is visible ASCII only",
                )
            })?;
            citybrain_hub::check_key(key).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidIdempotencyKey,
                    format!("Idempotency-Key: {e}"),
                )
            })?;
            Some(key.to_string())
        }
    };
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
        let call = citybrain_hub::IngestCall {
            mapping: mapping.as_deref(),
            on_error,
            key: key.as_deref(),
        };
        Ok(hub.ingest_call(&name, format, body, call, now())?)
    })
    .await;
    let (rows, outcome, detail) = match &result {
        Ok(r) if r.replayed => (
            0,
            Outcome::Ok,
            format!(
                "sent again with its idempotency key: nothing stored ({} records accepted the first time)",
                r.accepted
            ),
        ),
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
pub(crate) struct SqlRequest {
    sql: String,
    /// Why the data is read; recorded by the audit trail (governance issue).
    #[serde(default)]
    purpose: String,
    format: Option<String>,
    /// Send a long result as it is produced instead of whole (JSON, CSV and Arrow). An
    /// error part-way (a result limit, the timeout) then cuts the answer instead of
    /// answering with its status.
    #[serde(default)]
    stream: bool,
}

#[utoipa::path(post, path = "/sql", tag = "sql", request_body(content = SqlRequest, content_type = "application/json"), responses((status = 200, description = "Rows through grants and masks (a JSON array; csv, excel, xlsx, arrow or geojson with format or Accept)", body = Object)))]
pub(crate) async fn sql(
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
                "format must be json, csv, excel (CSV with a UTF-8 byte-order mark), xlsx (an Excel workbook), arrow or geojson",
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
    answer(
        &state,
        &request.sql,
        &call,
        format,
        request.stream,
        ApiError::from,
    )
    .await
}

/// A governed statement's answer: built whole (a limit answered with its status), or,
/// with `stream`, sent as it is produced ([`streamed`]). `refused` turns the statement's
/// refusal into the caller's error.
async fn answer(
    state: &AppState,
    sql: &str,
    call: &DataCall,
    format: ResultFormat,
    stream: bool,
    refused: impl Fn(citybrain_sql::SqlError) -> ApiError,
) -> Result<Response, ApiError> {
    if !stream || !format.streams() {
        let result = state.sql.query_as(sql, call).await.map_err(&refused)?;
        let bytes = citybrain_sql::encode(&result, format)?;
        return Ok(([(header::CONTENT_TYPE, format.content_type())], bytes).into_response());
    }
    let result = state
        .sql
        .stream_with_params_as(sql, Vec::new(), call)
        .await
        .map_err(refused)?;
    streamed(result, format).await
}

/// A governed result sent as the statement produces it (asked for with `stream`): a result
/// of up to [`citybrain_sql::HOLD_ROWS`] rows in one piece, with its length, as without
/// `stream`; a longer one chunk by chunk, never held whole.
///
/// Key decision: streaming is asked for, not the default. An error after the first bytes
/// (a result limit, the timeout, a failed closing audit record) cannot change a status
/// already sent, so the answer is cut: the chunked body ends without its last chunk, which
/// HTTP clients report as an incomplete answer, never as a shorter whole one; but the
/// error's name and status (413 naming the limit) are lost to the client. A caller that
/// takes a long result in pieces accepts that; every other call keeps its status.
async fn streamed(
    result: citybrain_sql::ResultStream,
    format: ResultFormat,
) -> Result<Response, ApiError> {
    use futures::{StreamExt, TryStreamExt};
    let content_type = [(header::CONTENT_TYPE, format.content_type())];
    let schema = result.schema().clone();
    if result.is_whole() {
        let batches = result.try_collect().await?;
        let bytes = citybrain_sql::encode(&citybrain_sql::QueryResult { schema, batches }, format)?;
        return Ok((content_type, bytes).into_response());
    }
    let mut encoder = Some(citybrain_sql::Encoder::new(format, &schema)?);
    let chunks = result
        .map(Some)
        .chain(futures::stream::iter([None]))
        .map(move |item| {
            let bytes = match item {
                Some(batch) => encoder
                    .as_mut()
                    .expect("no batch after the end")
                    .batch(&batch?)?,
                None => encoder.take().expect("one end").finish()?,
            };
            Ok::<_, citybrain_sql::SqlError>(bytes::Bytes::from(bytes))
        })
        .inspect_err(|error| {
            tracing::warn!(message = "A streamed result was cut part-way.", %error);
        })
        .try_filter(|bytes| std::future::ready(!bytes.is_empty()));
    Ok((content_type, Body::from_stream(chunks)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadParams {
    /// At most this many records (default 100 for JSON; every record for CSV and Arrow).
    limit: Option<u64>,
    /// json (a read), or an export: csv, excel (CSV with a UTF-8 byte-order mark), xlsx, arrow or
    /// geojson (the first point column as geometry).
    format: Option<String>,
    #[serde(default)]
    purpose: String,
    /// Send the records as they are read instead of whole (JSON, CSV and Arrow); an error
    /// part-way cuts the answer instead of answering with its status.
    #[serde(default)]
    stream: bool,
}

/// Reads or exports a dataset's records, through the same grants, masks and audit as SQL.
#[utoipa::path(get, path = "/datasets/{name}/records", tag = "datasets", params(("name" = String, Path, description = "The dataset, namespace.table"), ReadParams), responses((status = 200, description = "Records through grants and masks (JSON rows; csv, excel, xlsx, arrow or geojson with ?format=)", body = Object)))]
pub(crate) async fn read_records(
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
                "format must be json, csv, excel (CSV with a UTF-8 byte-order mark), xlsx (an Excel workbook), arrow or geojson",
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
    // Through SQL an unknown table is "invalid"; as a resource it is not found.
    let not_found = |e| match e {
        citybrain_sql::SqlError::Invalid(m) if m.contains("not found") => {
            ApiError::from(citybrain_hub::HubError::NotFound(name.clone()))
        }
        other => other.into(),
    };
    answer(&state, &sql, &call, format, params.stream, not_found).await
}
