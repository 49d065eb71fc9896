//! Colour codes (issue 26, item 4): health codes from `health.screening_results` and
//! `health.close_contacts`, talent codes from `hr.talent_facts`, issued by the department
//! whose facts decide them, signed with the city's ed25519 key (derived from the hub secret),
//! verified by anyone with the public key, offline (`citybrain codes verify`) or here;
//! revoked by id, with the short list of revoked ids for scanners. Issued codes are rows of
//! `services.codes`, revocations of `services.code_revocations`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use citybrain_core::{DatasetName, Timestamp};
use citybrain_gov::{CallKind, Principal, Role};
use citybrain_hub::{Format, OnError};
use citybrain_services::codes::{self, HealthFacts, Payload, SigningKey, TalentFacts};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ErrorCode;
use crate::extract::{Json, Query};
use crate::scene::{SceneContext, text_column, text_values};
use crate::{ApiError, AppState, blocking, now};

/// Days a code is valid for.
const VALID_DAYS: i64 = 1;

pub(crate) struct Issuer {
    pub(super) key: SigningKey,
    pub(super) revoked: HashSet<String>,
    next: u64,
}

pub(crate) type SharedIssuer = Arc<Mutex<Issuer>>;

pub(crate) async fn open(ctx: &SceneContext) -> Result<Issuer, String> {
    let seed = citybrain_gov::Gov::codes_seed(&ctx.config.data_dir).map_err(|e| e.to_string())?;
    let issued = ctx
        .sql
        .query(&format!(
            "SELECT count(*) AS n FROM {}",
            citybrain_services::CODES
        ))
        .await
        .map_err(|e| e.to_string())?;
    let next = issued
        .batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_primitive_opt::<arrow::datatypes::Int64Type>()
        })
        .map_or(0, |c| c.value(0)) as u64;
    let revoked = ctx
        .sql
        .query(&format!(
            "SELECT code_id FROM {}",
            citybrain_services::REVOCATIONS
        ))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Issuer {
        key: codes::signing_key(&seed),
        revoked: text_values(&revoked.batches, "code_id")?
            .into_iter()
            .collect(),
        next,
    })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidBody, message)
}

/// The public key scanners verify codes with.
#[utoipa::path(get, path = "/services/codes/key", tag = "services", responses((status = 200, description = "The ed25519 public key (base64url) and the code format", body = Object)))]
pub(crate) async fn key(State(state): State<AppState>) -> Result<Response, ApiError> {
    let live = state.scenes.handle::<super::LiveServices>("services")?;
    let public = codes::public_key_text(&live.issuer.lock().expect("issuer lock").key);
    Ok(Json(json!({
        "algorithm": "ed25519",
        "public_key": public,
        "format": "CB1.<base64url JSON payload>.<base64url signature over CB1.<payload>>",
    }))
    .into_response())
}

/// A request for a code.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct IssueRequest {
    /// health or talent.
    pub kind: String,
    /// The resident, as the registry names them.
    pub resident_id: String,
}

#[derive(Serialize)]
struct CodeRow<'a> {
    code_id: &'a str,
    kind: &'a str,
    value: &'a str,
    resident_id: &'a str,
    why: &'a str,
    issued_by: &'a str,
    issued_at: String,
    valid_until: String,
}

fn ts(batch: &arrow::array::RecordBatch, name: &str) -> Result<Vec<Timestamp>, ApiError> {
    let column = batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| ApiError::internal(format!("no timestamp column {name}")))?;
    Ok(column.values().iter().map(|v| Timestamp(*v)).collect())
}

/// Issues a code for a resident: health codes by the health department, talent codes by
/// human resources (publisher or admin), from their own facts; the code's value, why, the
/// signed code and its QR symbol (SVG). Audited as a read of the facts that decided it.
#[utoipa::path(post, path = "/services/codes/issue", tag = "services", request_body(content = IssueRequest, content_type = "application/json"), responses((status = 200, description = "The code, what it says and why, and its QR symbol", body = Object)))]
pub(crate) async fn issue(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<IssueRequest>,
) -> Result<Response, ApiError> {
    let (department, datasets): (&str, &[&str]) = match request.kind.as_str() {
        "health" => (
            "health",
            &[citybrain_services::SCREENING, citybrain_services::CONTACTS],
        ),
        "talent" => ("human_resources", &[citybrain_services::TALENT]),
        other => {
            return Err(bad(format!(
                "kind: health or talent (got {:?})",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    if me.department.as_str() != department || me.role < Role::Publisher {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "{} codes are issued by {department} (publisher or admin), whose facts decide them",
                request.kind
            ),
        ));
    }
    super::check_key("resident_id", &request.resident_id, ErrorCode::InvalidBody)?;
    let live = state.scenes.handle::<super::LiveServices>("services")?;
    let name = {
        let engine = live.engine.lock().expect("services lock");
        let r = engine
            .population
            .index_of(&request.resident_id)
            .map(|i| engine.population.get(i))
            .filter(|r| r.registered && r.living);
        match r {
            Some(r) => r.name.clone(),
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    format!(
                        "no living resident {} in registry.residents",
                        request.resident_id
                    ),
                ));
            }
        }
    };
    let at = now();
    let day = state.city.time_zone.local_day(at);
    // The resident id is checked to letters, digits, - and _ above: safe in a literal.
    let rid = &request.resident_id;
    let (value, why) = if request.kind == "health" {
        let results = state
            .sql
            .query(&format!(
                "SELECT tested_at, positive FROM {} WHERE resident_id = '{rid}'",
                citybrain_services::SCREENING
            ))
            .await?;
        let contacts = state
            .sql
            .query(&format!(
                "SELECT contact_at FROM {} WHERE resident_id = '{rid}'",
                citybrain_services::CONTACTS
            ))
            .await?;
        let mut facts = HealthFacts::default();
        let zone = &state.city.time_zone;
        for b in &results.batches {
            let positive = b
                .column_by_name("positive")
                .and_then(|c| c.as_boolean_opt())
                .ok_or_else(|| ApiError::internal("no bool column positive"))?;
            for (i, t) in ts(b, "tested_at")?.into_iter().enumerate() {
                facts.results.push((zone.local_day(t), positive.value(i)));
            }
        }
        for b in &contacts.batches {
            facts
                .contacts
                .extend(ts(b, "contact_at")?.into_iter().map(|t| zone.local_day(t)));
        }
        let (colour, why) = codes::health_colour(&facts, day);
        let value = serde_json::to_value(colour)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        (value, why)
    } else {
        let facts = state
            .sql
            .query(&format!(
                "SELECT education, title, annual_salary FROM {} WHERE resident_id = '{rid}' ORDER BY updated_at DESC LIMIT 1",
                citybrain_services::TALENT
            ))
            .await?;
        let batch = facts
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    format!("{rid} has no row in {}", citybrain_services::TALENT),
                )
            })?;
        let salary = batch
            .column_by_name("annual_salary")
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>())
            .ok_or_else(|| ApiError::internal("no money column annual_salary"))?;
        let f = TalentFacts {
            education: text_column(batch, "education")
                .map_err(ApiError::internal)?
                .value(0)
                .to_string(),
            title: text_column(batch, "title")
                .map_err(ApiError::internal)?
                .value(0)
                .to_string(),
            annual_salary: salary.value(0),
        };
        match codes::talent_category(&f) {
            Some(c) => {
                let unlocks: Vec<String> = c
                    .unlocks
                    .iter()
                    .map(|(what, yuan)| format!("{what} {yuan} yuan"))
                    .collect();
                (
                    c.letter.to_string(),
                    format!("{}; unlocks {}", c.why, unlocks.join(", ")),
                )
            }
            None => ("none".to_string(), "no talent category applies".to_string()),
        }
    };
    let (hub, gov, issuer) = (state.hub.clone(), state.gov.clone(), live.issuer.clone());
    let kind = request.kind.clone();
    let resident = request.resident_id.clone();
    let datasets: Vec<&'static str> = datasets.to_vec();
    let (code, payload) = blocking(move || {
        let mut issuer = issuer.lock().expect("issuer lock");
        issuer.next += 1;
        let payload = Payload {
            id: format!("C{:08}", issuer.next),
            kind: kind.clone(),
            value: value.clone(),
            name: codes::mask_name(&name),
            id_number: codes::mask_id(&resident),
            holder: codes::holder_mark(&issuer.key, &resident),
            issued_at: at,
            valid_until: Timestamp(at.0 + VALID_DAYS * 86_400_000_000),
        };
        let code = codes::sign(&issuer.key, &payload);
        let mut call = crate::read_call(
            &me,
            &datasets,
            &format!("POST /api/v1/services/codes/issue {kind}"),
        );
        call.kind = CallKind::Read;
        call.purpose = format!("issuing a {kind} code");
        call.rows = 1;
        gov.record(call)?;
        let row = CodeRow {
            code_id: &payload.id,
            kind: &kind,
            value: &value,
            resident_id: &resident,
            why: &why,
            issued_by: me.name.as_str(),
            issued_at: at.to_string(),
            valid_until: payload.valid_until.to_string(),
        };
        let mut body = serde_json::to_vec(&row).map_err(|e| ApiError::internal(e.to_string()))?;
        body.push(b'\n');
        let name = DatasetName::parse(citybrain_services::CODES).expect("a valid name");
        hub.ingest(&name, Format::Ndjson, &body, OnError::Reject, now())?;
        Ok((code, payload))
    })
    .await?;
    let svg = codes::qr_svg(&code).map_err(ApiError::internal)?;
    Ok(Json(json!({
        "code": code,
        "payload": payload,
        "why": why_for_holder(&payload),
        "qr_svg": svg,
    }))
    .into_response())
}

/// What the code says, for the holder's screen (the reason itself stays in services.codes,
/// read through grants).
fn why_for_holder(payload: &Payload) -> String {
    format!(
        "{} code {} until {}",
        payload.kind, payload.value, payload.valid_until
    )
}

/// A code to check.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct VerifyRequest {
    pub code: String,
}

/// Verifies a code as a scanner would offline: the signature with the city's public key,
/// the expiry, and the revocation list. Any principal.
#[utoipa::path(post, path = "/services/codes/verify", tag = "services", request_body(content = VerifyRequest, content_type = "application/json"), responses((status = 200, description = "valid, what the code says; or refused and why (malformed, forged, expired, revoked)", body = Object)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Json(request): Json<VerifyRequest>,
) -> Result<Response, ApiError> {
    if request.code.len() > 4_096 {
        return Err(bad("code: at most 4,096 characters"));
    }
    let live = state.scenes.handle::<super::LiveServices>("services")?;
    let issuer = live.issuer.lock().expect("issuer lock");
    let answer = match codes::verify(&issuer.key.verifying_key(), &request.code, now(), &|id| {
        issuer.revoked.contains(id)
    }) {
        Ok(payload) => json!({"valid": true, "payload": payload}),
        Err(refused) => {
            json!({"valid": false, "refused": refused.name(), "why": refused.to_string()})
        }
    };
    Ok(Json(answer).into_response())
}

/// A holder asking why their code says what it says.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ExplainRequest {
    /// The code, as the holder's screen or paper shows it.
    pub code: String,
    /// The id number on the holder's card: the code's signed holder mark must match it.
    pub id_number: String,
}

/// Why a code says what it says, for its holder only: the code must verify (signature,
/// expiry, revocation) and the id number given must be the one the city signed into the code
/// as its holder; anyone else (another person's id, a guess) is refused the same way a
/// wrong id is, and learns nothing. The reason is read from `services.codes` for that code
/// alone; the call is audited as a read of it, naming the code, not the id number.
#[utoipa::path(post, path = "/services/codes/explain", tag = "services", request_body(content = ExplainRequest, content_type = "application/json"), responses((status = 200, description = "The code's value and the reason the issuing department's facts gave", body = Object), (status = 403, description = "Not the code's holder")))]
pub(crate) async fn explain(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<ExplainRequest>,
) -> Result<Response, ApiError> {
    if request.code.len() > 4_096 {
        return Err(bad("code: at most 4,096 characters"));
    }
    super::check_key("id_number", &request.id_number, ErrorCode::InvalidBody)?;
    let live = state.scenes.handle::<super::LiveServices>("services")?;
    let payload = {
        let issuer = live.issuer.lock().expect("issuer lock");
        let key = issuer.key.verifying_key();
        let payload = codes::verify(&key, &request.code, now(), &|id| {
            issuer.revoked.contains(id)
        })
        .map_err(|refused| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                format!("code: {refused} ({})", refused.name()),
            )
        })?;
        if !codes::holds(&key, &payload, &request.id_number) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "only the code's holder is told why: the id number given is not the one this code was issued to",
            ));
        }
        payload
    };
    // The id is one the issuer made (C and digits), checked again before it goes in a literal.
    super::check_key("code id", &payload.id, ErrorCode::InvalidBody)?;
    let rows = state
        .sql
        .query(&format!(
            "SELECT why, issued_by, issued_at FROM {} WHERE code_id = '{}' LIMIT 1",
            citybrain_services::CODES,
            payload.id
        ))
        .await?;
    let why = rows
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| text_column(b, "why").map(|c| c.value(0).to_string()))
        .transpose()
        .map_err(ApiError::internal)?
        .unwrap_or_else(|| "the reason was not stored with the code".into());
    let mut call = crate::read_call(
        &me,
        &[citybrain_services::CODES],
        &format!("POST /api/v1/services/codes/explain {}", payload.id),
    );
    call.kind = CallKind::Read;
    call.purpose = "a code's reason, to its holder".into();
    call.rows = 1;
    crate::record(&state, call).await?;
    Ok(Json(json!({
        "code_id": payload.id,
        "kind": payload.kind,
        "value": payload.value,
        "valid_until": payload.valid_until.to_string(),
        "why": why,
    }))
    .into_response())
}

/// A revocation.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RevokeRequest {
    pub code_id: String,
    pub reason: String,
}

/// Revokes a code before it expires (health or human resources, admin): scanners refuse it
/// once they have the list.
#[utoipa::path(post, path = "/services/codes/revoke", tag = "services", request_body(content = RevokeRequest, content_type = "application/json"), responses((status = 200, description = "Revoked", body = Object)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<RevokeRequest>,
) -> Result<Response, ApiError> {
    let may =
        matches!(me.department.as_str(), "health" | "human_resources") && me.role >= Role::Admin;
    if !may {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "codes are revoked by an admin of health or human_resources",
        ));
    }
    let id_ok = request.code_id.len() == 9
        && request.code_id.starts_with('C')
        && request.code_id[1..].chars().all(|c| c.is_ascii_digit());
    if !id_ok {
        return Err(bad("code_id: C and eight digits, e.g. C00000042"));
    }
    let reason = request.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 300 || reason.chars().any(char::is_control) {
        return Err(bad("reason: 1 to 300 characters, no control characters"));
    }
    let live = state.scenes.handle::<super::LiveServices>("services")?;
    let (hub, gov, issuer) = (state.hub.clone(), state.gov.clone(), live.issuer.clone());
    let id = request.code_id.clone();
    let fresh = blocking(move || {
        let mut issuer = issuer.lock().expect("issuer lock");
        if issuer.revoked.contains(&id) {
            return Ok(false);
        }
        let mut call = crate::read_call(&me, &[citybrain_services::REVOCATIONS], &format!("POST /api/v1/services/codes/revoke {id}"));
        call.kind = CallKind::Ingest;
        call.rows = 1;
        gov.record(call)?;
        let row = json!({"code_id": id, "at": now().to_string(), "by": me.name.as_str(), "reason": reason});
        let mut body = row.to_string().into_bytes();
        body.push(b'\n');
        let name = DatasetName::parse(citybrain_services::REVOCATIONS).expect("a valid name");
        hub.ingest(&name, Format::Ndjson, &body, OnError::Reject, now())?;
        issuer.revoked.insert(id);
        Ok(true)
    })
    .await?;
    Ok(
        Json(json!({"code_id": request.code_id, "revoked": true, "already": !fresh}))
            .into_response(),
    )
}

/// The ids of revoked codes, for scanners that verify offline.
#[utoipa::path(get, path = "/services/codes/revoked", tag = "services", responses((status = 200, description = "The revoked code ids", body = Object)))]
pub(crate) async fn revoked(State(state): State<AppState>) -> Result<Response, ApiError> {
    let live = state.scenes.handle::<super::LiveServices>("services")?;
    let mut ids: Vec<String> = live
        .issuer
        .lock()
        .expect("issuer lock")
        .revoked
        .iter()
        .cloned()
        .collect();
    ids.sort();
    Ok(Json(json!({ "revoked": ids })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QrParams {
    /// The code (CB1....).
    code: String,
    /// svg (default) or png.
    #[serde(default)]
    format: Option<String>,
}

/// A code as a QR symbol, SVG or PNG, for a screen or a printer.
#[utoipa::path(get, path = "/services/codes/qr", tag = "services", params(QrParams), responses((status = 200, description = "The QR symbol", content_type = "image/svg+xml")))]
pub(crate) async fn qr(Query(params): Query<QrParams>) -> Result<Response, ApiError> {
    if params.code.len() > 2_048 || !params.code.starts_with("CB1.") {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "code: a citybrain code (CB1....), at most 2,048 characters",
        ));
    }
    let svg = codes::qr_svg(&params.code).map_err(ApiError::internal)?;
    match params.format.as_deref().unwrap_or("svg") {
        "svg" => Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()),
        "png" => {
            let png =
                blocking(move || crate::briefing::png(&svg).map_err(ApiError::internal)).await?;
            Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
        }
        other => Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!(
                "format: svg or png (got {:?})",
                other.chars().take(10).collect::<String>()
            ),
        )),
    }
}
