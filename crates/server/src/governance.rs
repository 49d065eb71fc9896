//! Routes that manage governance: departments, principals, tokens, grants, the audit
//! trail and the call counters. Every rule lives in `citybrain-gov`; these only translate.

use crate::extract::{Json, Path, Query};
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use citybrain_core::{DepartmentId, PrincipalName, Timestamp};
use citybrain_gov::{GrantId, GrantRequest, GrantState, Principal, Role, Session};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ErrorCode;
use crate::{ApiError, AppState, SMALL_BODY_LIMIT, dataset_name, known_definition, now, read_body};

async fn json_body<T: DeserializeOwned>(body: Body, shape: &str) -> Result<T, ApiError> {
    let bytes = read_body(body, SMALL_BODY_LIMIT).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            format!("expected {shape}: {e}"),
        )
    })
}

fn bad(code: ErrorCode, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}

#[utoipa::path(get, path = "/whoami", tag = "governance", responses((status = 200, description = "The calling principal", body = Object)))]
pub async fn whoami(Extension(me): Extension<Principal>) -> Response {
    Json(me).into_response()
}

#[utoipa::path(get, path = "/departments", tag = "governance", responses((status = 200, description = "Departments", body = Object)))]
pub async fn list_departments(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(json!({ "departments": state.gov.departments()? })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewDepartment {
    id: String,
    #[serde(default)]
    name: String,
}

#[utoipa::path(post, path = "/departments", tag = "governance", request_body(content = NewDepartment, content_type = "application/json"), responses((status = 201, description = "Created", body = Object)))]
pub async fn create_department(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let new: NewDepartment = json_body(body, "{\"id\": .., \"name\": ..}").await?;
    let id = DepartmentId::parse(&new.id).map_err(|e| bad(ErrorCode::InvalidDepartment, e))?;
    let department = state.gov.create_department(&me, &id, &new.name, now())?;
    Ok((StatusCode::CREATED, Json(department)).into_response())
}

#[utoipa::path(get, path = "/principals", tag = "governance", responses((status = 200, description = "Principals you may see", body = Object)))]
pub async fn list_principals(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    Ok(Json(json!({ "principals": state.gov.principals(&me)? })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewPrincipal {
    name: String,
    department: String,
    role: String,
}

#[utoipa::path(post, path = "/principals", tag = "governance", request_body(content = NewPrincipal, content_type = "application/json"), responses((status = 201, description = "Created", body = Object)))]
pub async fn create_principal(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let new: NewPrincipal = json_body(
        body,
        "{\"name\": .., \"department\": .., \"role\": \"reader|publisher|admin\"}",
    )
    .await?;
    let principal = Principal {
        name: PrincipalName::parse(&new.name).map_err(|e| bad(ErrorCode::InvalidPrincipal, e))?,
        department: DepartmentId::parse(&new.department)
            .map_err(|e| bad(ErrorCode::InvalidDepartment, e))?,
        role: Role::parse(&new.role).ok_or_else(|| {
            bad(
                ErrorCode::InvalidRole,
                format!(
                    "role must be reader, publisher or admin, not '{}'",
                    new.role
                ),
            )
        })?,
    };
    state.gov.create_principal(&me, &principal, now())?;
    Ok((StatusCode::CREATED, Json(principal)).into_response())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct NewToken {
    /// Days until the token expires; none: it lasts until revoked (or until the token
    /// that issues it expires).
    expires_in_days: Option<u32>,
}

/// The longest expiry a token may be given, in days (100 years).
const MAX_TOKEN_DAYS: u32 = 36_500;

/// Issues a token; the secret is in this response and nowhere else.
#[utoipa::path(post, path = "/principals/{name}/tokens", tag = "governance", params(("name" = String, Path, description = "The principal")), request_body(content = NewToken, content_type = "application/json"), responses((status = 201, description = "The token: its secret is in this response and nowhere else", body = Object)))]
pub async fn issue_token(
    State(state): State<AppState>,
    Extension(me): Extension<Session>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = PrincipalName::parse(&name).map_err(|e| bad(ErrorCode::InvalidPrincipal, e))?;
    let bytes = read_body(body, SMALL_BODY_LIMIT).await?;
    let new: NewToken = if bytes.is_empty() {
        NewToken::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| bad(ErrorCode::InvalidBody, e))?
    };
    if new
        .expires_in_days
        .is_some_and(|d| d == 0 || d > MAX_TOKEN_DAYS)
    {
        return Err(bad(
            ErrorCode::InvalidExpiry,
            format!(
                "expires_in_days must be between 1 and {MAX_TOKEN_DAYS}; leave it out for a token that lasts until revoked"
            ),
        ));
    }
    let at = now();
    let expires_at = new
        .expires_in_days
        .map(|d| Timestamp(at.0 + i64::from(d) * 86_400_000_000));
    let issued = state.gov.issue_token(&me, &name, expires_at, at)?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(issued),
    )
        .into_response())
}

#[utoipa::path(get, path = "/tokens", tag = "governance", responses((status = 200, description = "Tokens (ids, never secrets)", body = Object)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    Ok(Json(json!({ "tokens": state.gov.tokens(&me)? })).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevokeParams {
    /// Also revoke every token issued with this one (default true: a leaked token's
    /// offspring go with it; false to rotate: issue the new token, then revoke the old).
    cascade: Option<bool>,
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "governance", params(("id" = String, Path, description = "The token id"), RevokeParams), responses((status = 200, description = "Revoked, with the tokens revoked with it", body = Object)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<RevokeParams>,
) -> Result<Response, ApiError> {
    let revoked = state
        .gov
        .revoke_token(&me, &id, params.cascade.unwrap_or(true), now())?;
    let with_it: Vec<&String> = revoked.iter().filter(|r| **r != id).collect();
    Ok(Json(json!({ "revoked": id, "revoked_with_it": with_it })).into_response())
}

#[utoipa::path(get, path = "/grants", tag = "governance", responses((status = 200, description = "Grants of your department and on its datasets", body = Object)))]
pub async fn list_grants(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let hub = state.hub.clone();
    let at = now();
    let grants = state
        .gov
        .grants_for(&me, |d| hub.definition(d).ok().map(|def| def.owner))?;
    let grants: Vec<_> = grants
        .into_iter()
        .map(|g| {
            let status = g.status(at);
            let mut v = serde_json::to_value(&g).expect("grants serialize");
            v["status"] = json!(status);
            v
        })
        .collect();
    Ok(Json(json!({ "grants": grants })).into_response())
}

#[utoipa::path(post, path = "/grants", tag = "governance", request_body(content = Object, description = "{dataset, purpose, fields, raw, days}", content_type = "application/json"), responses((status = 201, description = "Requested", body = Object)))]
pub async fn request_grant(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let request: GrantRequest = json_body(
        body,
        "{\"dataset\": .., \"purpose\": .., \"fields\": [..], \"raw\": [..], \"days\": N}",
    )
    .await?;
    let def = known_definition(&state, &me, &request.dataset)?;
    let grant = state.gov.request_grant(&me, &def, &request, now())?;
    Ok((StatusCode::CREATED, Json(grant)).into_response())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct Decision {
    #[serde(default)]
    reason: String,
}

#[utoipa::path(post, path = "/grants/{id}/{decision}", tag = "governance", params(("id" = i64, Path, description = "The grant id"), ("decision" = String, Path, description = "approve, refuse or revoke")), request_body(content = Decision, content_type = "application/json"), responses((status = 200, description = "Decided", body = Object)))]
pub async fn decide_grant(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path((id, decision)): Path<(i64, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let decision = match decision.as_str() {
        "approve" => GrantState::Approved,
        "refuse" => GrantState::Refused,
        "revoke" => GrantState::Revoked,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownDecision,
                format!("'{other}' is not a decision; use approve, refuse or revoke"),
            ));
        }
    };
    let bytes = read_body(body, SMALL_BODY_LIMIT).await?;
    let Decision { reason } = if bytes.is_empty() {
        Decision::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| bad(ErrorCode::InvalidBody, e))?
    };
    let grant = state.gov.grant(GrantId(id))?;
    let owner = state.hub.definition(&grant.dataset)?.owner;
    let grant = state
        .gov
        .decide_grant(&me, GrantId(id), &owner, decision, &reason, now())?;
    Ok(Json(grant).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    limit: Option<usize>,
}

/// Who touched a dataset, for what: for its owner.
#[utoipa::path(get, path = "/datasets/{name}/audit", tag = "governance", params(("name" = String, Path, description = "The dataset, namespace.table"), AuditParams), responses((status = 200, description = "Who touched the dataset, for what", body = Object)))]
pub async fn dataset_audit(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(name): Path<String>,
    Query(params): Query<AuditParams>,
) -> Result<Response, ApiError> {
    let name = dataset_name(&name)?;
    let def = known_definition(&state, &me, &name)?;
    let gov = state.gov.clone();
    let limit = params.limit.unwrap_or(1000).min(100_000);
    let calls = crate::blocking(move || Ok(gov.calls_on(&me, &def, limit)?)).await?;
    Ok(Json(json!({ "dataset": name, "calls": calls })).into_response())
}

/// The public key that checks the audit trail's signed heads: with it a department or an
/// outside auditor runs `citybrain audit verify --public-key` without the hub's secret.
#[utoipa::path(get, path = "/audit/key", tag = "governance", responses((status = 200, description = "The audit trail's public key (ed25519, hex) and what each head's signature covers", body = Object)))]
pub async fn audit_key(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "algorithm": "ed25519",
        "public_key": state.gov.audit().public_key_hex(),
        "signed_text": "citybrain audit head v1\\n{seq}\\n{sha}",
    }))
}

/// The trail's current signed head. An auditor who keeps heads fetched over time can later
/// prove that no call before them was cut (`citybrain audit verify --head FILE`).
#[utoipa::path(get, path = "/audit/head", tag = "governance", responses((status = 200, description = "The last durable record's sequence, public hash and signature", body = Object)))]
pub async fn audit_head(State(state): State<AppState>) -> Result<Response, ApiError> {
    let gov = state.gov.clone();
    let head = crate::blocking(move || Ok(gov.audit().head()?)).await?;
    Ok(Json(json!(head)).into_response())
}

/// Prometheus text exposition of the data-call counters the caller may see (its
/// department's datasets; the hub's admins: all).
#[utoipa::path(get, path = "/metrics", tag = "governance", responses((status = 200, description = "Prometheus counters of data calls", body = String, content_type = "text/plain")))]
pub async fn metrics(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Response {
    let hub = state.hub.clone();
    let text = state.gov.metrics_text(&me, |dataset| {
        let name = citybrain_core::DatasetName::parse(dataset).ok()?;
        hub.definition(&name).ok().map(|d| d.owner)
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewLinkage {
    name: String,
    #[serde(default)]
    purpose: String,
    /// The columns linked: `{"dataset", "field"}` each.
    #[schema(value_type = Vec<Object>)]
    members: Vec<citybrain_gov::LinkMember>,
}

/// Linkages the caller's department takes part in (the hub's admins: all), with status.
#[utoipa::path(get, path = "/linkages", tag = "governance", responses((status = 200, description = "Linkages your department takes part in", body = Object)))]
pub async fn list_linkages(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let linkages: Vec<_> = state
        .gov
        .linkages(&me)?
        .into_iter()
        .map(linkage_json)
        .collect();
    Ok(Json(json!({ "linkages": linkages })).into_response())
}

fn linkage_json(l: citybrain_gov::Linkage) -> serde_json::Value {
    let mut v = json!({"status": l.status(), "pending": l.pending()});
    let body = serde_json::to_value(&l).expect("linkages serialize");
    if let (Some(v), serde_json::Value::Object(body)) = (v.as_object_mut(), body) {
        v.extend(body);
    }
    v
}

/// Proposes a linkage: pseudonymised columns of several datasets that will share
/// pseudonyms once every owning department's admins approve.
#[utoipa::path(post, path = "/linkages", tag = "governance", request_body(content = NewLinkage, content_type = "application/json"), responses((status = 201, description = "Proposed", body = Object)))]
pub async fn propose_linkage(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let new: NewLinkage = json_body(
        body,
        "{\"name\": .., \"purpose\": .., \"members\": [{\"dataset\": .., \"field\": ..}, ..]}",
    )
    .await?;
    for m in &new.members {
        let def = known_definition(&state, &me, &m.dataset)?;
        let field = def
            .fields
            .iter()
            .find(|f| f.name == m.field)
            .ok_or_else(|| {
                bad(
                    ErrorCode::InvalidMember,
                    format!("{} has no field {}", m.dataset, m.field),
                )
            })?;
        if field.mask_kind() != Some(citybrain_hub::MaskKind::Pseudonym) {
            return Err(bad(
                ErrorCode::InvalidMember,
                format!(
                    "{m}: only pseudonymised fields (classified personal, not plates) are linked"
                ),
            ));
        }
    }
    let hub = state.hub.clone();
    let linkage = state.gov.propose_linkage(
        &me,
        &new.name,
        &new.purpose,
        new.members,
        |d| hub.definition(d).ok().map(|def| def.owner),
        now(),
    )?;
    Ok((StatusCode::CREATED, Json(linkage_json(linkage))).into_response())
}

/// `approve` (an admin of an owning department, for it) or `withdraw` a linkage.
#[utoipa::path(post, path = "/linkages/{name}/{decision}", tag = "governance", params(("name" = String, Path, description = "The linkage"), ("decision" = String, Path, description = "approve or withdraw")), responses((status = 200, description = "Decided", body = Object)))]
pub async fn decide_linkage(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path((name, decision)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let linkage = match decision.as_str() {
        "approve" => state.gov.approve_linkage(&me, &name, now())?,
        "withdraw" => state.gov.withdraw_linkage(&me, &name, now())?,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownDecision,
                format!("'{other}' is not a decision on a linkage; use approve or withdraw"),
            ));
        }
    };
    Ok(Json(linkage_json(linkage)).into_response())
}
