//! NGSI-LD (ETSI GS CIM 009) over the hub, for FIWARE platforms and sensors that speak it:
//! `/ngsi-ld/v1/entities`, `/entityOperations/*` and `/temporal/entities`.
//!
//! No store of its own: a dataset declares the entity type it holds (`[ngsi_ld]` in its
//! definition), every create, update or append is one governed ingest of a row holding the
//! entity as it then stands, and every read is a governed, masked, audited SQL data call over
//! those rows (the newest row of an id is the entity; all of them are its history). So a
//! reader sees through NGSI-LD exactly what SQL would show it, masks included, and SQL sees
//! what NGSI-LD wrote (ADR 2026-12-03-ngsi-ld).
//!
//! Terms are the short names of the core and Smart Data Models contexts; a full URI is
//! compacted to its last segment. No `@context` is ever fetched: one sent is accepted and
//! not dereferenced, and answers name the core context by its URL (docs/interop.md).
//! Not built yet: subscriptions, entity deletion, aggregated temporal queries.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use citybrain_gov::{CallKind, Outcome, Principal};
use citybrain_hub::{DatasetDef, Format, NgsiLdDef, OnError};
use citybrain_sql::{DataCall, Reader, ResultFormat};
use serde_json::{Map, Value, json};

use crate::datasets::read_body;

mod convert;
pub(crate) mod deleted;
pub(crate) mod subscriptions;
use convert::{
    geo_to_sql, latest_sql, lit, observed_field, q_to_sql, temporal_entity, term, time_condition,
    to_entity, to_row,
};

/// A row of a dataset, as JSON.
pub(super) type Row = Map<String, Value>;
use crate::datasets::{audit, check_publisher};
use crate::{ApiError, AppState, blocking, now};

pub const CORE_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
const MAX_BODY: usize = 8 << 20;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

/// The routes, mounted at `/ngsi-ld/v1` behind the same authentication as the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/entities", post(create).get(query))
        // The specification writes some paths with a trailing slash; clients send both.
        .route("/entities/", post(create).get(query))
        .route(
            "/entities/{id}",
            get(retrieve).delete(delete).patch(append).put(replace),
        )
        .route("/entities/{id}/attrs", post(append).patch(append))
        .route("/entities/{id}/attrs/", post(append).patch(append))
        .route(
            "/entities/{id}/attrs/{attr}",
            axum::routing::patch(update_attr).delete(delete_attr),
        )
        .route("/entityOperations/{op}", post(batch))
        .route(
            "/temporal/entities",
            get(temporal_query).post(temporal_create),
        )
        .route(
            "/temporal/entities/",
            get(temporal_query).post(temporal_create),
        )
        .route("/temporal/entities/{id}", get(temporal_one).delete(delete))
        .route("/temporal/entities/{id}/attrs", post(temporal_append))
        .route("/temporal/entities/{id}/attrs/", post(temporal_append))
        .route(
            "/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/subscriptions/",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/subscriptions/{id}",
            get(subscriptions::get).delete(subscriptions::delete),
        )
}

/// An NGSI-LD error: ProblemDetails with the specification's error type.
#[derive(Debug)]
pub(super) struct Problem {
    status: StatusCode,
    kind: &'static str,
    detail: String,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
        }
    }
    fn bad(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestData", detail)
    }
    fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFound", detail)
    }
    fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", detail)
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        let kind = match e.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "NoAccess",
            StatusCode::NOT_FOUND => "ResourceNotFound",
            s if s.is_server_error() => "InternalError",
            _ => "BadRequestData",
        };
        Self::new(e.status(), kind, e.message())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("https://uri.etsi.org/ngsi-ld/errors/{}", self.kind),
            "title": self.kind,
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

type Answer = Result<Response, Problem>;

/// The dataset holding entities of `entity_type`, as `me` may see it.
fn dataset_for(state: &AppState, entity_type: &str) -> Result<(DatasetDef, NgsiLdDef), Problem> {
    let wanted = term(entity_type);
    for name in state.hub.names() {
        let Ok(def) = state.hub.definition(&name) else {
            continue;
        };
        if let Some(ngsi) = def.ngsi_ld.clone()
            && ngsi.entity_type == wanted
        {
            return Ok((def, ngsi));
        }
    }
    Err(Problem::not_found(format!(
        "no dataset holds NGSI-LD entities of type '{wanted}': an owner declares one with [ngsi_ld] type = \"{wanted}\" in its definition"
    )))
}

/// Every dataset holding NGSI-LD entities.
fn ngsi_datasets(state: &AppState) -> Vec<(DatasetDef, NgsiLdDef)> {
    state
        .hub
        .names()
        .iter()
        .filter_map(|n| state.hub.definition(n).ok())
        .filter_map(|d| d.ngsi_ld.clone().map(|n| (d, n)))
        .collect()
}

/// Rows of a governed, audited query as `me`.
async fn rows(
    state: &AppState,
    me: &Principal,
    sql: &str,
    purpose: &str,
) -> Result<Vec<Row>, Problem> {
    let call = DataCall {
        reader: Reader::Principal(me.clone()),
        purpose: purpose.to_string(),
        kind: CallKind::Sql,
        now: now(),
    };
    let result = state
        .sql
        .query_as(sql, &call)
        .await
        .map_err(ApiError::from)?;
    let bytes = citybrain_sql::encode(&result, ResultFormat::Json).map_err(ApiError::from)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })
}

/// Stores rows in `def` as `me` (a governed, audited ingest).
async fn store(
    state: &AppState,
    me: &Principal,
    def: &DatasetDef,
    rows: Vec<Row>,
    what: &str,
) -> Result<(), Problem> {
    check_publisher(state, me, def)?;
    let mut body = Vec::new();
    for r in &rows {
        body.extend_from_slice(Value::Object(r.clone()).to_string().as_bytes());
        body.push(b'\n');
    }
    let hub = state.hub.clone();
    let name = def.name.clone();
    let result =
        blocking(move || Ok(hub.ingest(&name, Format::Ndjson, &body, OnError::Reject, now())?))
            .await;
    let (n, outcome, detail) = match &result {
        Ok(r) => (
            r.accepted as u64,
            Outcome::Ok,
            format!("NGSI-LD {what}: {} entities stored", r.accepted),
        ),
        Err(e) => (
            0,
            Outcome::Failed,
            format!("NGSI-LD {what} refused: {}", e.message()),
        ),
    };
    audit(state, me, CallKind::Ingest, def, n, outcome, detail)?;
    result?;
    Ok(())
}

/// An entity (or a batch of them) as the specification's content rules allow: with
/// `application/ld+json` the `@context` is in the body (each entity of a batch) and no
/// `Link` header names one; with `application/json` the body holds no `@context`.
async fn body_entities(headers: &HeaderMap, body: Body) -> Result<Value, Problem> {
    let value = body_json(body).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let ld = content_type.starts_with("application/ld+json");
    let items: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for item in items {
        let has = item.get("@context").is_some();
        if ld && !has {
            return Err(Problem::bad(
                "a body sent as application/ld+json carries its @context (or send application/json with the context in a Link header)",
            ));
        }
        if !ld && has {
            return Err(Problem::bad(
                "a body with an @context is sent as application/ld+json (with application/json the context goes in a Link header)",
            ));
        }
    }
    if ld && headers.get(header::LINK).is_some() {
        return Err(Problem::bad(
            "application/ld+json takes the @context from the body, not from a Link header",
        ));
    }
    Ok(value)
}

async fn body_json(body: Body) -> Result<Value, Problem> {
    let bytes = read_body(body, MAX_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            format!("the body is not JSON: {e}"),
        )
    })
}

fn entity_type_of(entity: &Row) -> Result<String, Problem> {
    entity
        .get("type")
        .or_else(|| entity.get("@type"))
        .and_then(Value::as_str)
        .map(|t| term(t).to_string())
        .ok_or_else(|| Problem::bad("an entity needs a 'type'"))
}

/// Answers JSON as NGSI-LD does: with the core context in the body for `application/ld+json`,
/// else by a Link header.
fn answer(status: StatusCode, headers: &HeaderMap, mut body: Value) -> Response {
    let ld = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/ld+json"));
    if ld {
        let add = |v: &mut Value| {
            if let Value::Object(o) = v {
                o.insert("@context".into(), Value::from(CORE_CONTEXT));
            }
        };
        match &mut body {
            Value::Array(items) => items.iter_mut().for_each(add),
            v => add(v),
        }
        return (
            status,
            [(header::CONTENT_TYPE, "application/ld+json")],
            body.to_string(),
        )
            .into_response();
    }
    let link = format!(
        "<{CORE_CONTEXT}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
    );
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&link) {
        response.headers_mut().insert(header::LINK, v);
    }
    response
}

/// Whether `def` holds any row of entity `id` (a plain lookup, not the newest-row window:
/// a create asks only this).
async fn exists(
    state: &AppState,
    me: &Principal,
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
    id: &str,
) -> Result<bool, Problem> {
    let sql = format!(
        "SELECT 1 AS x FROM {} WHERE {} = {} LIMIT 1",
        source(state, def, ngsi),
        ngsi.id,
        lit(id)
    );
    Ok(!rows(state, me, &sql, &format!("NGSI-LD: does {id} exist"))
        .await?
        .is_empty())
}

/// The newest row of entity `id`, searching every NGSI-LD dataset `me` may read.
async fn find(
    state: &AppState,
    me: &Principal,
    id: &str,
    type_hint: Option<&str>,
) -> Result<Option<(DatasetDef, NgsiLdDef, Row)>, Problem> {
    let candidates = match type_hint {
        Some(t) => vec![dataset_for(state, t)?],
        None => ngsi_datasets(state),
    };
    for (def, ngsi) in candidates {
        let sql = format!(
            "{} LIMIT 1",
            latest_sql(
                &def,
                &ngsi,
                &source(state, &def, &ngsi),
                &format!("{} = {}", ngsi.id, lit(id))
            )
        );
        match rows(state, me, &sql, &format!("NGSI-LD: entity {id}")).await {
            Ok(mut found) if !found.is_empty() => return Ok(Some((def, ngsi, found.remove(0)))),
            Ok(_) => {}
            // A dataset the caller may not read cannot hold the answer for it.
            Err(p) if p.status == StatusCode::FORBIDDEN => {}
            Err(p) => return Err(p),
        }
    }
    Ok(None)
}

async fn create(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Value::Object(entity) = body_entities(&headers, body).await? else {
        return Err(Problem::bad(
            "POST /entities takes one entity (a JSON object); use /entityOperations/create for several",
        ));
    };
    let (def, ngsi) = dataset_for(&state, &entity_type_of(&entity)?)?;
    let row = to_row(&def, &ngsi, &entity, None, &now().to_string()).map_err(Problem::bad)?;
    let id = row[&ngsi.id].as_str().unwrap_or_default().to_string();
    if exists(&state, &me, &def, &ngsi, &id).await? {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("entity {id} exists; update it with PATCH /entities/{{id}}/attrs"),
        ));
    }
    store(&state, &me, &def, vec![row], "create").await?;
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/ngsi-ld/v1/entities/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[derive(Debug, serde::Deserialize, Default)]
pub(super) struct ReadParams {
    r#type: Option<String>,
    id: Option<String>,
    attrs: Option<String>,
    q: Option<String>,
    options: Option<String>,
    format: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    count: Option<bool>,
    georel: Option<String>,
    geometry: Option<String>,
    coordinates: Option<String>,
    timerel: Option<String>,
    #[serde(rename = "timeAt")]
    time_at: Option<String>,
    #[serde(rename = "endTimeAt")]
    end_time_at: Option<String>,
    #[serde(rename = "lastN")]
    last_n: Option<usize>,
}

impl ReadParams {
    fn attrs(&self) -> Option<Vec<String>> {
        self.attrs.as_ref().map(|a| {
            a.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }
    fn key_values(&self) -> bool {
        let opts = self.options.as_deref().unwrap_or("");
        opts.split(',')
            .any(|o| o == "keyValues" || o == "simplified")
            || matches!(self.format.as_deref(), Some("simplified" | "keyValues"))
    }
}

async fn retrieve(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> Answer {
    let Some((def, ngsi, row)) = find(&state, &me, &id, params.r#type.as_deref()).await? else {
        return Err(Problem::not_found(format!(
            "no entity {id} that you may read"
        )));
    };
    let attrs = params.attrs();
    Ok(answer(
        StatusCode::OK,
        &headers,
        to_entity(&def, &ngsi, &row, attrs.as_deref(), params.key_values()),
    ))
}

/// What NGSI-LD reads of `def`: its rows, without those deleted entities leave behind.
fn source(state: &AppState, def: &DatasetDef, ngsi: &NgsiLdDef) -> String {
    state.ngsi_deleted.source(def.name.as_str(), &ngsi.id)
}

/// Ends entities: a tombstone per id (see [`deleted`]), by a publisher of the owning
/// department, audited; the rows stay in the dataset as history.
async fn end_entities(
    state: &AppState,
    me: &Principal,
    def: &DatasetDef,
    ids: Vec<String>,
) -> Result<(), Problem> {
    check_publisher(state, me, def)?;
    let at = now();
    let detail = format!("NGSI-LD delete: {}", ids.join(", "));
    let stored = state
        .ngsi_deleted
        .delete(def.name.as_str(), &ids, at)
        .map_err(|e| Problem::internal(format!("recording the deletion: {e}")));
    let outcome = if stored.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    audit(
        state,
        me,
        CallKind::Ingest,
        def,
        ids.len() as u64,
        outcome,
        detail,
    )?;
    stored
}

async fn delete(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<ReadParams>,
) -> Answer {
    let Some((def, _, _)) = find(&state, &me, &id, params.r#type.as_deref()).await? else {
        return Err(Problem::not_found(format!(
            "no entity {id} that you may read"
        )));
    };
    end_entities(&state, &me, &def, vec![id]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PATCH (update) and POST (append) of attributes: the entity as it stood with the sent
/// attributes over it, stored as a new row.
async fn append(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Value::Object(mut attrs) = body_entities(&headers, body).await? else {
        return Err(Problem::bad("the body is an object of attributes"));
    };
    let Some((def, ngsi, row)) = find(&state, &me, &id, None).await? else {
        return Err(Problem::not_found(format!(
            "no entity {id} that you may read"
        )));
    };
    attrs.insert("id".into(), Value::from(id));
    let row = to_row(&def, &ngsi, &attrs, Some(&row), &now().to_string()).map_err(Problem::bad)?;
    store(&state, &me, &def, vec![row], "update").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The rows a temporal entity holds: one per instant its attributes' instances name
/// (`observedAt`, else the write's time), each with the attributes observed then.
fn temporal_rows_of(
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
    id: &str,
    entity: &Row,
) -> Result<Vec<Row>, Problem> {
    let now_text = now().to_string();
    let mut instants: BTreeMap<String, Row> = BTreeMap::new();
    for (key, value) in entity {
        if matches!(key.as_str(), "id" | "@id" | "type" | "@type" | "@context") {
            continue;
        }
        let instances: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for instance in instances {
            let at = instance
                .get("observedAt")
                .and_then(Value::as_str)
                .map_or_else(|| now_text.clone(), str::to_string);
            instants
                .entry(at)
                .or_default()
                .insert(key.clone(), instance.clone());
        }
    }
    if instants.is_empty() {
        return Err(Problem::bad(
            "a temporal entity needs at least one attribute instance",
        ));
    }
    instants
        .into_values()
        .map(|mut attrs| {
            attrs.insert("id".into(), Value::from(id));
            to_row(def, ngsi, &attrs, None, &now_text).map_err(Problem::bad)
        })
        .collect()
}

/// POST /temporal/entities: an entity's history written at once (201 when the entity is
/// new, 204 when it adds to one).
async fn temporal_create(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Value::Object(entity) = body_entities(&headers, body).await? else {
        return Err(Problem::bad(
            "the body is one temporal entity (a JSON object)",
        ));
    };
    let id = entity
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::bad("a temporal entity needs an 'id'"))?
        .to_string();
    let (def, ngsi) = dataset_for(&state, &entity_type_of(&entity)?)?;
    let existed = find(&state, &me, &id, None).await?.is_some();
    let rows = temporal_rows_of(&def, &ngsi, &id, &entity)?;
    store(&state, &me, &def, rows, "temporal create").await?;
    if existed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/ngsi-ld/v1/temporal/entities/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// POST /temporal/entities/{id}/attrs: instances added to an entity's history.
async fn temporal_append(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Value::Object(attrs) = body_entities(&headers, body).await? else {
        return Err(Problem::bad("the body is an object of attribute instances"));
    };
    let Some((def, ngsi, _)) = find(&state, &me, &id, None).await? else {
        return Err(Problem::not_found(format!(
            "no entity {id} that you may read"
        )));
    };
    let rows = temporal_rows_of(&def, &ngsi, &id, &attrs)?;
    store(&state, &me, &def, rows, "temporal append").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PUT /entities/{id}: the entity replaced by the one sent (attributes not sent are gone).
async fn replace(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Value::Object(mut entity) = body_entities(&headers, body).await? else {
        return Err(Problem::bad("the body is an entity (a JSON object)"));
    };
    let Some((def, ngsi, _)) = find(&state, &me, &id, None).await? else {
        return Err(Problem::not_found(format!(
            "no entity {id} that you may read"
        )));
    };
    entity.insert("id".into(), Value::from(id));
    let row = to_row(&def, &ngsi, &entity, None, &now().to_string()).map_err(Problem::bad)?;
    store(&state, &me, &def, vec![row], "replace").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PATCH /entities/{id}/attrs/{attr}: one attribute's new value.
async fn update_attr(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path((id, attr)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let value = body_json(body).await?;
    let Some((def, ngsi, row)) = find(&state, &me, &id, None).await? else {
        return Err(Problem::not_found(format!(
            "no entity {id} that you may read"
        )));
    };
    let field = ngsi.field_of(term(&attr));
    if row.get(&field).is_none_or(Value::is_null) {
        return Err(Problem::not_found(format!(
            "entity {id} has no attribute {attr}"
        )));
    }
    let mut attrs = Row::new();
    attrs.insert("id".into(), Value::from(id));
    attrs.insert(attr, value);
    let row = to_row(&def, &ngsi, &attrs, Some(&row), &now().to_string()).map_err(Problem::bad)?;
    store(&state, &me, &def, vec![row], "update").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// DELETE /entities/{id}/attrs/{attr}: a new row of the entity without that attribute.
async fn delete_attr(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path((id, attr)): Path<(String, String)>,
) -> Answer {
    let Some((def, ngsi, mut row)) = find(&state, &me, &id, None).await? else {
        return Err(Problem::not_found(format!(
            "no entity {id} that you may read"
        )));
    };
    let field = ngsi.field_of(term(&attr));
    if field == ngsi.id || field == observed_field(&def, &ngsi) {
        return Err(Problem::bad(format!(
            "{attr} is the entity's id or time, not an attribute to delete"
        )));
    }
    if row.get(&field).is_none_or(Value::is_null) {
        return Err(Problem::not_found(format!(
            "entity {id} has no attribute {attr}"
        )));
    }
    row.remove("_ingested_at");
    row.remove("_ngsi_rank");
    row.insert(field, Value::Null);
    store(&state, &me, &def, vec![row], "delete attribute").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn batch(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(op): Path<String>,
    Query(url): Query<ReadParams>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    if op == "delete" {
        return batch_delete(&state, &me, body).await;
    }
    if op == "query" {
        let params = query_body(url, &body_json(body).await?)?;
        return query(State(state), Extension(me), Query(params), headers).await;
    }
    if !matches!(op.as_str(), "create" | "upsert" | "update") {
        return Err(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "OperationNotSupported",
            format!(
                "entityOperations/{op}: create, upsert, update, delete and query are supported"
            ),
        ));
    }
    let Value::Array(entities) = body_entities(&headers, body).await? else {
        return Err(Problem::bad("the body is an array of entities"));
    };
    let now_text = now().to_string();
    let mut success: Vec<Value> = Vec::new();
    let mut errors: Vec<Value> = Vec::new();
    // Rows by dataset, stored as one batch each.
    // Per dataset: its rows and, for each, the entity id and whether it is new.
    type Pending = (DatasetDef, Vec<Row>, Vec<(String, bool)>);
    let mut by_dataset: BTreeMap<String, Pending> = BTreeMap::new();
    for entity in entities {
        let id = entity
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let fail = |detail: String| json!({"entityId": id, "error": {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "BadRequestData", "detail": detail}});
        let Value::Object(entity) = entity else {
            errors.push(fail("not an entity (a JSON object)".into()));
            continue;
        };
        let outcome = async {
            let found = find(&state, &me, &id, None).await?;
            let created = found.is_none();
            let (def, ngsi, base) = match (op.as_str(), found) {
                ("create", Some(_)) => {
                    return Err(Problem::new(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("entity {id} exists"),
                    ));
                }
                ("update", None) => {
                    return Err(Problem::not_found(format!("no entity {id} to update")));
                }
                ("update", Some((d, n, row))) => (d, n, Some(row)),
                (_, _) => {
                    let (d, n) = dataset_for(&state, &entity_type_of(&entity)?)?;
                    (d, n, None)
                }
            };
            let row =
                to_row(&def, &ngsi, &entity, base.as_ref(), &now_text).map_err(Problem::bad)?;
            Ok((def, row, created))
        }
        .await;
        match outcome {
            Ok((def, row, created)) => {
                let slot = by_dataset.entry(def.name.to_string()).or_insert_with(|| (def, Vec::new(), Vec::new()));
                slot.1.push(row);
                slot.2.push((id, created));
            }
            Err(p) => errors.push(json!({"entityId": id, "error": {"type": format!("https://uri.etsi.org/ngsi-ld/errors/{}", p.kind), "title": p.kind, "detail": p.detail}})),
        }
    }
    let mut created: Vec<Value> = Vec::new();
    for (_, (def, rows, ids)) in by_dataset {
        match store(&state, &me, &def, rows, &format!("batch {op}")).await {
            Ok(()) => {
                for (id, new) in ids {
                    if new {
                        created.push(Value::from(id.clone()));
                    }
                    success.push(Value::from(id));
                }
            }
            Err(p) => errors.extend(ids.into_iter().map(|(id, _)| json!({"entityId": id, "error": {"type": format!("https://uri.etsi.org/ngsi-ld/errors/{}", p.kind), "title": p.kind, "detail": p.detail}}))),
        }
    }
    if errors.is_empty() && op == "upsert" && !created.is_empty() {
        // An upsert that created entities answers 201 with their ids.
        return Ok((
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            Value::Array(created).to_string(),
        )
            .into_response());
    }
    if errors.is_empty() {
        return Ok(if op == "create" {
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                Value::Array(success).to_string(),
            )
                .into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        });
    }
    Ok((
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"success": success, "errors": errors}).to_string(),
    )
        .into_response())
}

/// `entityOperations/query`: the query as a body (`entities` with types and ids, `attrs`,
/// `q`, `geoQ`) over the URL's paging and options, answered as `GET /entities` would.
fn query_body(mut params: ReadParams, body: &Value) -> Result<ReadParams, Problem> {
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(Problem::bad(
            "the body is a Query: {\"type\": \"Query\", ...}",
        ));
    }
    let joined = |values: Vec<&str>| (!values.is_empty()).then(|| values.join(","));
    let entities = body.get("entities").and_then(Value::as_array);
    let mut types: Vec<&str> = entities
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("type").and_then(Value::as_str))
        .collect();
    types.dedup();
    params.r#type = joined(types).or(params.r#type);
    params.id = joined(
        entities
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("id").and_then(Value::as_str))
            .collect(),
    )
    .or(params.id);
    if let Some(attrs) = body.get("attrs").and_then(Value::as_array) {
        params.attrs = joined(attrs.iter().filter_map(Value::as_str).collect());
    }
    if let Some(q) = body.get("q").and_then(Value::as_str) {
        params.q = Some(q.to_string());
    }
    if let Some(geo) = body.get("geoQ") {
        params.georel = geo
            .get("georel")
            .and_then(Value::as_str)
            .map(str::to_string);
        params.geometry = geo
            .get("geometry")
            .and_then(Value::as_str)
            .map(str::to_string);
        params.coordinates = geo.get("coordinates").map(|c| match c {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
    }
    if params.r#type.is_none() && params.id.is_none() {
        return Err(Problem::bad("a Query names entities by type or id"));
    }
    Ok(params)
}

/// `entityOperations/delete`: a JSON array of entity ids; 204 when every one ended, else
/// 207 naming each that did not (not found, not the caller's to delete).
async fn batch_delete(state: &AppState, me: &Principal, body: Body) -> Answer {
    let Value::Array(ids) = body_json(body).await? else {
        return Err(Problem::bad("the body is an array of entity ids"));
    };
    let error = |id: &str, p: &Problem| json!({"entityId": id, "error": {"type": format!("https://uri.etsi.org/ngsi-ld/errors/{}", p.kind), "title": p.kind, "detail": p.detail}});
    let mut success: Vec<Value> = Vec::new();
    let mut errors: Vec<Value> = Vec::new();
    let mut by_dataset: BTreeMap<String, (DatasetDef, Vec<String>)> = BTreeMap::new();
    for id in ids {
        let Some(id) = id.as_str().map(str::to_string) else {
            errors.push(error(
                "",
                &Problem::bad(format!("{id} is not an entity id")),
            ));
            continue;
        };
        match find(state, me, &id, None).await {
            Ok(Some((def, _, _))) => by_dataset
                .entry(def.name.to_string())
                .or_insert_with(|| (def, Vec::new()))
                .1
                .push(id),
            Ok(None) => errors.push(error(
                &id,
                &Problem::not_found(format!("no entity {id} that you may read")),
            )),
            Err(p) => errors.push(error(&id, &p)),
        }
    }
    for (_, (def, ids)) in by_dataset {
        match end_entities(state, me, &def, ids.clone()).await {
            Ok(()) => success.extend(ids.into_iter().map(Value::from)),
            Err(p) => errors.extend(ids.iter().map(|id| error(id, &p))),
        }
    }
    if errors.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok((
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"success": success, "errors": errors}).to_string(),
    )
        .into_response())
}

/// The datasets a query covers: the `type` asked for, else those holding the ids asked for.
fn query_datasets(
    state: &AppState,
    params: &ReadParams,
) -> Result<Vec<(DatasetDef, NgsiLdDef)>, Problem> {
    match (&params.r#type, &params.id) {
        (Some(types), _) => types
            .split(',')
            .map(|t| dataset_for(state, t.trim()))
            .collect(),
        (None, Some(_)) => Ok(ngsi_datasets(state)),
        (None, None) if params.attrs.is_some() || params.q.is_some() => Ok(ngsi_datasets(state)),
        (None, None) => Err(Problem::bad("give type, id, attrs or q to query entities")),
    }
}

fn conditions(def: &DatasetDef, ngsi: &NgsiLdDef, params: &ReadParams) -> Result<String, Problem> {
    let mut conds = Vec::new();
    if let Some(ids) = &params.id {
        let list: Vec<String> = ids.split(',').map(|i| lit(i.trim())).collect();
        conds.push(format!("{} IN ({})", ngsi.id, list.join(", ")));
    }
    if let Some(q) = &params.q {
        conds.push(format!(
            "({})",
            q_to_sql(def, ngsi, q).map_err(Problem::bad)?
        ));
    }
    if let Some(g) = geo_to_sql(def, params).map_err(Problem::bad)? {
        conds.push(g);
    }
    Ok(conds.join(" AND "))
}

async fn query(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> Answer {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "TooManyResults",
            format!("limit {limit} is over {MAX_LIMIT}; page with offset"),
        ));
    }
    let offset = params.offset.unwrap_or(0);
    let attrs = params.attrs();
    let mut out = Vec::new();
    let mut total = 0usize;
    for (def, ngsi) in query_datasets(&state, &params)? {
        let cond = conditions(&def, &ngsi, &params)?;
        // Entities having any of the attributes asked for.
        let has = attrs.as_ref().map(|a| {
            a.iter()
                .map(|x| ngsi.field_of(term(x)))
                .filter(|f| def.fields.iter().any(|d| &d.name == f))
                .map(|f| format!("{f} IS NOT NULL"))
                .collect::<Vec<_>>()
        });
        if has.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let cond = match has {
            Some(h) if cond.is_empty() => h.join(" OR "),
            Some(h) => format!("{cond} AND ({})", h.join(" OR ")),
            None => cond,
        };
        let base = latest_sql(&def, &ngsi, &source(&state, &def, &ngsi), &cond);
        if params.count == Some(true) {
            let n = rows(
                &state,
                &me,
                &format!("SELECT count(*) AS n FROM ({base}) AS c"),
                "NGSI-LD: count",
            )
            .await?;
            total += n
                .first()
                .and_then(|r| r.get("n"))
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
        }
        let sql = format!(
            "{base} ORDER BY {} LIMIT {} OFFSET {}",
            ngsi.id,
            limit + offset,
            0
        );
        for row in rows(
            &state,
            &me,
            &sql,
            &format!("NGSI-LD: query {}", ngsi.entity_type),
        )
        .await?
        {
            out.push(to_entity(
                &def,
                &ngsi,
                &row,
                attrs.as_deref(),
                params.key_values(),
            ));
        }
    }
    let page: Vec<Value> = out.into_iter().skip(offset).take(limit).collect();
    let mut response = answer(StatusCode::OK, &headers, Value::Array(page));
    if params.count == Some(true) {
        response
            .headers_mut()
            .insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    Ok(response)
}

async fn temporal_rows(
    state: &AppState,
    me: &Principal,
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
    params: &ReadParams,
    cond: String,
) -> Result<Vec<Row>, Problem> {
    let observed = observed_field(def, ngsi);
    let time = time_condition(&observed, params)?;
    let all: Vec<String> = [cond, time].into_iter().filter(|c| !c.is_empty()).collect();
    let filter = if all.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", all.join(" AND "))
    };
    let n = params.last_n.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    // The lastN newest per entity, then in time order.
    let sql = format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {id} ORDER BY {observed} DESC, _ingested_at DESC) AS _ngsi_rank FROM {from}{filter}) AS t WHERE _ngsi_rank <= {n} ORDER BY {id}, {observed}, _ingested_at",
        id = ngsi.id,
        from = source(state, def, ngsi),
    );
    rows(
        state,
        me,
        &sql,
        &format!("NGSI-LD: temporal {}", ngsi.entity_type),
    )
    .await
}

async fn temporal_one(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> Answer {
    let Some((def, ngsi, _)) = find(&state, &me, &id, params.r#type.as_deref()).await? else {
        return Err(Problem::not_found(format!(
            "no entity {id} that you may read"
        )));
    };
    let found = temporal_rows(
        &state,
        &me,
        &def,
        &ngsi,
        &params,
        format!("{} = {}", ngsi.id, lit(&id)),
    )
    .await?;
    let attrs = params.attrs();
    Ok(answer(
        StatusCode::OK,
        &headers,
        temporal_entity(&def, &ngsi, &found, attrs.as_deref()),
    ))
}

async fn temporal_query(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> Answer {
    let attrs = params.attrs();
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let mut out = Vec::new();
    for (def, ngsi) in query_datasets(&state, &params)? {
        let cond = conditions(&def, &ngsi, &params)?;
        let found = temporal_rows(&state, &me, &def, &ngsi, &params, cond).await?;
        let mut by_id: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for row in found {
            let id = row
                .get(&ngsi.id)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            by_id.entry(id).or_default().push(row);
        }
        for rows in by_id.values() {
            out.push(temporal_entity(&def, &ngsi, rows, attrs.as_deref()));
        }
    }
    let page: Vec<Value> = out
        .into_iter()
        .skip(params.offset.unwrap_or(0))
        .take(limit)
        .collect();
    Ok(answer(StatusCode::OK, &headers, Value::Array(page)))
}
