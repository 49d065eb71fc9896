//! The HTTP API: authentication, dataset management, ingest and SQL over the hub.
//!
//! Key decision: the server is a thin async shell. CPU and disk work (decoding, fsync)
//! runs on blocking threads via the synchronous hub, so the async runtime only moves
//! bytes. [`run`] takes its listener and shutdown signal, so tests run the real server on
//! port 0 and stop it the same way SIGTERM does.

mod error;
pub mod openapi;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{DatasetDef, Format, Hub, OnError};
use citybrain_sql::{ResultFormat, SqlEngine};
use serde::Deserialize;
use serde_json::json;

pub use error::ApiError;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub sql: SqlEngine,
    /// The admin bearer token (the governance issue brings per-department tokens).
    pub admin_token: Arc<str>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
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
        .route("/datasets/{name}", get(get_dataset).put(update_dataset))
        .route("/datasets/{name}/records", post(ingest))
        .route("/sql", post(sql))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .nest("/api/v1", api)
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
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    tokio::task::spawn_blocking(move || hub.close()).await.ok();
    Ok(())
}

/// Constant-time comparison, so response timing reveals nothing about the token.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(token) if same_token(token.as_bytes(), state.admin_token.as_bytes()) => {
            next.run(request).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
}

fn dataset_name(text: &str) -> Result<DatasetName, ApiError> {
    DatasetName::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_dataset_name",
            e.to_string(),
        )
    })
}

async fn blocking<T: Send + 'static>(
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

async fn list_datasets(State(state): State<AppState>) -> Result<Response, ApiError> {
    let hub = state.hub.clone();
    let list = blocking(move || Ok(hub.list()?)).await?;
    Ok(Json(json!({ "datasets": list })).into_response())
}

async fn get_dataset(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = dataset_name(&name)?;
    let hub = state.hub.clone();
    Ok(Json(blocking(move || Ok(hub.info(&name)?)).await?).into_response())
}

/// Cap for request bodies that carry a definition or a query, not records.
const SMALL_BODY_LIMIT: usize = 1 << 20;

/// How much of an over-limit body is still read (and discarded) so the client, which is
/// usually still sending, gets the 413 instead of a reset connection.
const DRAIN_CAP: usize = 64 << 20;

/// Reads a body as a stream, up to the limit; past it, answers 413 naming the limit.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buffer = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
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

async fn create_dataset(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, SMALL_BODY_LIMIT).await?;
    let def = parse_definition(&headers, &body)?;
    let hub = state.hub.clone();
    let info = blocking(move || Ok(hub.create_dataset(def, now())?)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn update_dataset(
    State(state): State<AppState>,
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
    let hub = state.hub.clone();
    Ok(Json(blocking(move || Ok(hub.update_dataset(def, now())?)).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct IngestParams {
    on_error: Option<String>,
}

async fn ingest(
    State(state): State<AppState>,
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
    let body = read_body(body, state.body_limit).await?;
    let hub = state.hub.clone();
    let started = std::time::Instant::now();
    let report = blocking(move || Ok(hub.ingest(&name, format, &body, on_error, now())?)).await?;
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
    tracing::info!(message = "SQL query.", purpose = %request.purpose);
    let result = state.sql.query(&request.sql).await?;
    let bytes = citybrain_sql::encode(&result, format)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], bytes).into_response())
}
