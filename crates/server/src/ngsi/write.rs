//! NGSI-LD writes: entities created, updated, merged, replaced and deleted, one at a time,
//! in batches and as histories. Each is a governed ingest into the dataset that declares the
//! entity's type (a deletion a tombstone, see [`super::deleted`]), by a publisher of its
//! owning department, on the owner's audit trail.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use citybrain_gov::{CallKind, Outcome, Principal};
use citybrain_hub::{DatasetDef, Format, NgsiLdDef, OnError};
use serde_json::{Value, json};

use super::ids::Reserve;
use super::{
    Answer, Problem, body_json, dataset_for, entity_error, find, found, query, rows, source,
};
use crate::datasets::{audit, check_publisher};
use crate::{AppState, blocking, now};
use citybrain_ngsi::convert::{lit, observed_field, term, to_row};
use citybrain_ngsi::{ReadParams, Row};

/// Stores rows in `def` as `me` (a governed, audited ingest).
pub(super) async fn store(
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
    match result {
        Ok(_) => Ok(()),
        // An attribute the dataset's field cannot hold is invalid content (400
        // BadRequestData), named by its field, not a batch report.
        Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => {
            Err(Problem::bad(refusal_detail(&e)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The first problem of a refused batch, by field, as an NGSI-LD error's detail.
fn refusal_detail(e: &crate::error::ApiError) -> String {
    let first = e.details().and_then(|d| d["problems"].get(0));
    match first.and_then(|p| p["reason"].as_str()) {
        Some(reason) => match first.and_then(|p| p["field"].as_str()) {
            Some(field) => format!("field {field}: {reason}"),
            None => reason.to_string(),
        },
        None => e.message().to_string(),
    }
}

/// An entity (or a batch of them) as the specification's content rules allow: with
/// `application/ld+json` the `@context` is in the body (each entity of a batch) and no
/// `Link` header names one; with `application/json` the body holds no `@context`.
pub(super) async fn body_entities(headers: &HeaderMap, body: Body) -> Result<Value, Problem> {
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

pub(super) fn entity_type_of(entity: &Row) -> Result<String, Problem> {
    entity
        .get("type")
        .or_else(|| entity.get("@type"))
        .and_then(Value::as_str)
        .map(|t| term(t).to_string())
        .ok_or_else(|| Problem::bad("an entity needs a 'type'"))
        .and_then(|t| {
            citybrain_ngsi::validate::check_type(&t)
                .map(|()| t)
                .map_err(Problem::bad)
        })
}

/// Whether `def` holds any row of entity `id` (a plain lookup, not the newest-row window:
/// a create asks only this).
pub(super) async fn exists(
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

pub(super) async fn create(
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
    // What the entity is, before whether its type has a home or its id is taken.
    citybrain_ngsi::validate::check_entity(&entity).map_err(Problem::bad)?;
    let (def, ngsi) = dataset_for(&state, &entity_type_of(&entity)?)?;
    let row = to_row(&def, &ngsi, &entity, None, &now().to_string()).map_err(Problem::bad)?;
    let id = row[&ngsi.id].as_str().unwrap_or_default().to_string();
    let taken = || {
        Problem::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("entity {id} exists; update it with PATCH /entities/{{id}}/attrs"),
        )
    };
    // The index answers on this node; a cluster's node asks SQL (`ids`).
    match state.ngsi_ids.reserve(&state, &def, &ngsi, &id).await? {
        Reserve::Taken => return Err(taken()),
        Reserve::Reserved(reserved) => {
            store(&state, &me, &def, vec![row], "create").await?;
            reserved.stored();
        }
        Reserve::Unindexed => {
            if exists(&state, &me, &def, &ngsi, &id).await? {
                return Err(taken());
            }
            store(&state, &me, &def, vec![row], "create").await?;
        }
    }
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/ngsi-ld/v1/entities/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Ends entities: a tombstone per id (see [`deleted`]), by a publisher of the owning
/// department, audited; the rows stay in the dataset as history.
pub(super) async fn end_entities(
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
    if stored.is_ok() {
        state.ngsi_ids.forget(def.name.as_str(), &ids);
    }
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

pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<ReadParams>,
) -> Answer {
    let (def, _, _) = found(&state, &me, &id, params.r#type.as_deref()).await?;
    end_entities(&state, &me, &def, vec![id]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PATCH (update) and POST (append) of attributes: the entity as it stood with the sent
/// attributes over it, stored as a new row.
pub(super) async fn append(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let attrs = body_entities(&headers, body).await?;
    rewrite(&state, &me, id, attrs, Rewrite::Over).await
}

/// How a write of one entity's attributes meets the stored entity.
enum Rewrite {
    /// PATCH/POST attrs: the sent attributes over the stored ones.
    Over,
    /// PUT: the sent entity in place of the stored one.
    Replace,
}

/// Stores entity `id` as `sent` makes it (see [`Rewrite`]), as a new row.
async fn rewrite(
    state: &AppState,
    me: &Principal,
    id: String,
    sent: Value,
    how: Rewrite,
) -> Answer {
    let Value::Object(mut sent) = sent else {
        return Err(Problem::bad(match how {
            Rewrite::Over => "the body is an object of attributes",
            Rewrite::Replace => "the body is an entity (a JSON object)",
        }));
    };
    let (def, ngsi, stored) = found(state, me, &id, None).await?;
    sent.insert("id".into(), Value::from(id));
    let (base, action) = match how {
        Rewrite::Over => (Some(&stored), "update"),
        Rewrite::Replace => (None, "replace"),
    };
    let row = to_row(&def, &ngsi, &sent, base, &now().to_string()).map_err(Problem::bad)?;
    store(state, me, &def, vec![row], action).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// POST /temporal/entities: an entity's history written at once (201 when the entity is
/// new, 204 when it adds to one).
pub(super) async fn temporal_create(
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
    let rows = citybrain_ngsi::temporal_rows_of(&def, &ngsi, &id, &entity, &now().to_string())
        .map_err(Problem::bad)?;
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
pub(super) async fn temporal_append(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Value::Object(attrs) = body_entities(&headers, body).await? else {
        return Err(Problem::bad("the body is an object of attribute instances"));
    };
    let (def, ngsi, _) = found(&state, &me, &id, None).await?;
    let rows = citybrain_ngsi::temporal_rows_of(&def, &ngsi, &id, &attrs, &now().to_string())
        .map_err(Problem::bad)?;
    store(&state, &me, &def, rows, "temporal append").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PUT /entities/{id}: the entity replaced by the one sent (attributes not sent are gone).
pub(super) async fn replace(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let entity = body_entities(&headers, body).await?;
    rewrite(&state, &me, id, entity, Rewrite::Replace).await
}

/// PATCH /entities/{id}/attrs/{attr}: one attribute's new value.
pub(super) async fn update_attr(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path((id, attr)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let value = body_json(body).await?;
    let (def, ngsi, row) = found(&state, &me, &id, None).await?;
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
pub(super) async fn delete_attr(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path((id, attr)): Path<(String, String)>,
) -> Answer {
    let (def, ngsi, mut row) = found(&state, &me, &id, None).await?;
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

pub(super) async fn batch(
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
        let Value::Object(entity) = entity else {
            errors.push(entity_error(
                &id,
                &Problem::bad("not an entity (a JSON object)"),
            ));
            continue;
        };
        let outcome = async {
            citybrain_ngsi::validate::check_entity(&entity).map_err(Problem::bad)?;
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
                let slot = by_dataset
                    .entry(def.name.to_string())
                    .or_insert_with(|| (def, Vec::new(), Vec::new()));
                slot.1.push(row);
                slot.2.push((id, created));
            }
            Err(p) => errors.push(entity_error(&id, &p)),
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
            Err(p) => errors.extend(ids.iter().map(|(id, _)| entity_error(id, &p))),
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
pub(super) fn query_body(mut params: ReadParams, body: &Value) -> Result<ReadParams, Problem> {
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
    params.from_body = true;
    Ok(params)
}

/// `entityOperations/delete`: a JSON array of entity ids; 204 when every one ended, else
/// 207 naming each that did not (not found, not the caller's to delete).
pub(super) async fn batch_delete(state: &AppState, me: &Principal, body: Body) -> Answer {
    let Value::Array(ids) = body_json(body).await? else {
        return Err(Problem::bad("the body is an array of entity ids"));
    };
    let mut success: Vec<Value> = Vec::new();
    let mut errors: Vec<Value> = Vec::new();
    let mut by_dataset: BTreeMap<String, (DatasetDef, Vec<String>)> = BTreeMap::new();
    for id in ids {
        let Some(id) = id.as_str().map(str::to_string) else {
            errors.push(entity_error(
                "",
                &Problem::bad(format!("{id} is not an entity id")),
            ));
            continue;
        };
        match found(state, me, &id, None).await {
            Ok((def, _, _)) => by_dataset
                .entry(def.name.to_string())
                .or_insert_with(|| (def, Vec::new()))
                .1
                .push(id),
            Err(p) => errors.push(entity_error(&id, &p)),
        }
    }
    for (_, (def, ids)) in by_dataset {
        match end_entities(state, me, &def, ids.clone()).await {
            Ok(()) => success.extend(ids.into_iter().map(Value::from)),
            Err(p) => errors.extend(ids.iter().map(|id| entity_error(id, &p))),
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
