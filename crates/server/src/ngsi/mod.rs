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
use citybrain_gov::{CallKind, Principal};
use citybrain_hub::{DatasetDef, NgsiLdDef};
use citybrain_sql::{DataCall, Reader, ResultFormat};
use serde_json::{Value, json};

use crate::datasets::read_body;

pub(crate) mod deleted;
pub(crate) mod ids;
pub(crate) mod subscriptions;
mod write;
use citybrain_ngsi::convert::{
    latest_sql, lit, observed_field, temporal_entity, term, time_condition, to_entity,
};
use write::{
    append, batch, create, delete, delete_attr, replace, temporal_append, temporal_create,
    update_attr,
};

use crate::{ApiError, AppState, now};
use citybrain_ngsi::{ReadParams, Row, validate};

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

/// [`find`], with an entity the caller cannot see answered as NGSI-LD's not found.
async fn found(
    state: &AppState,
    me: &Principal,
    id: &str,
    type_hint: Option<&str>,
) -> Result<(DatasetDef, NgsiLdDef, Row), Problem> {
    find(state, me, id, type_hint)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no entity {id} that you may read")))
}

/// One entity's failure in a batch answer (207).
fn entity_error(id: &str, p: &Problem) -> Value {
    json!({"entityId": id, "error": {"type": format!("https://uri.etsi.org/ngsi-ld/errors/{}", p.kind), "title": p.kind, "detail": p.detail}})
}

/// The newest row of entity `id`, searching every NGSI-LD dataset `me` may read.
async fn find(
    state: &AppState,
    me: &Principal,
    id: &str,
    type_hint: Option<&str>,
) -> Result<Option<(DatasetDef, NgsiLdDef, Row)>, Problem> {
    // An id that is no URI names no entity: a bad request, not a missing one.
    validate::check_uri("id", id).map_err(Problem::bad)?;
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

async fn retrieve(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> Answer {
    let (def, ngsi, row) = found(&state, &me, &id, params.r#type.as_deref()).await?;
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
    validate::check_query(
        params.id.as_deref(),
        attrs.as_deref(),
        params.r#type.is_some()
            || attrs.is_some()
            || params.q.is_some()
            || params.georel.is_some()
            || (params.from_body && params.id.is_some()),
    )
    .map_err(Problem::bad)?;
    let mut out = Vec::new();
    let mut total = 0usize;
    for (def, ngsi) in query_datasets(&state, &params)? {
        let cond = citybrain_ngsi::conditions(&def, &ngsi, &params).map_err(Problem::bad)?;
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
    let time = time_condition(&observed, params).map_err(Problem::bad)?;
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
    let (def, ngsi, _) = found(&state, &me, &id, params.r#type.as_deref()).await?;
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
        let cond = citybrain_ngsi::conditions(&def, &ngsi, &params).map_err(Problem::bad)?;
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
