//! One call at the desk ("30 秒入住"): `POST /api/v1/verify/checkin` composes the guest's
//! identity (`registry.residents`), their code (a signed health code, checked as a scanner
//! would) and their booking (`tourism.bookings`) in one call, audited once as a read of both
//! datasets by the hotel's department, under the grants it holds, and answers only what the
//! desk may see: the name only where the grant gives it raw, never the other facts.
//!
//! The identity and the bookings come from the services scene's memory (the facts it keeps
//! from the change feed), so a check costs a hash lookup, two governance decisions and one
//! audit line, not a query.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_core::{DatasetName, Date};
use citybrain_gov::{CallKind, Principal};
use citybrain_hub::Positions;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ErrorCode;
use crate::extract::Json;
use crate::scene::{Running, Scene, SceneContext, Started};
use crate::{ApiError, AppState, blocking, now};

pub struct VerifyScene;

impl Scene for VerifyScene {
    fn name(&self) -> &'static str {
        "verify"
    }

    fn about(&self) -> &'static str {
        "One call at the desk (30 秒入住): identity, code and booking from three departments, audited once"
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new().routes(routes!(checkin))
    }

    fn start<'a>(
        &'a self,
        _ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            Ok(Started::Running(Running {
                handle: Arc::new(()),
                worker: None,
                from: Positions::new(),
                on_stop: None,
            }))
        })
    }
}

/// What the desk sends.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CheckinRequest {
    /// The guest's id number, as read from their card.
    pub id_number: String,
    /// The guest's health code (CB1....), as scanned from their phone.
    pub code: String,
}

/// Which fields of `dataset` the caller sees raw; refused with the grant to ask for when
/// `must` is not among them.
fn raw_fields(
    state: &AppState,
    me: &Principal,
    dataset: &str,
    must: &str,
) -> Result<Vec<String>, ApiError> {
    let name = DatasetName::parse(dataset).expect("a valid name");
    let def = state.hub.definition(&name)?;
    let raw: Vec<String> = match state.gov.view(&def, me, now()) {
        Ok(view) => view
            .columns
            .iter()
            .filter(|c| c.mask.is_none())
            .map(|c| c.name.clone())
            .collect(),
        // No grant at all: the same answer as a grant without the field raw.
        Err(_) => Vec::new(),
    };
    if raw.iter().any(|c| c == must) {
        Ok(raw)
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::GrantRequired,
            format!(
                "{dataset}: your department sees {must} masked, so a card cannot be matched; ask {} for a grant with {must} raw (citybrain grants request {dataset} --raw {must} --purpose ...)",
                def.owner
            ),
        ))
    }
}

/// Checks a guest in one call: are they who the card says and living here, is their
/// health code genuine, theirs, current and not red, and is there a booking at this hotel
/// for today. The caller's department must hold grants on `registry.residents` and
/// `tourism.bookings` with `resident_id` raw; the guest's name is shown only if the
/// registry grant has `name` raw. One audit line for the whole call.
#[utoipa::path(post, path = "/verify/checkin", tag = "verify", request_body(content = CheckinRequest, content_type = "application/json"), responses((status = 200, description = "identity, code, booking, and whether to admit", body = Object)))]
async fn checkin(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<CheckinRequest>,
) -> Result<Response, ApiError> {
    super::services::check_key("id_number", &request.id_number, ErrorCode::InvalidBody)?;
    if request.code.len() > 4_096 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            "code: at most 4,096 characters",
        ));
    }
    let live = state
        .scenes
        .handle::<super::services::LiveServices>("services")?;
    let state2 = state.clone();
    let answer = blocking(move || {
        let registry = raw_fields(&state2, &me, citybrain_services::RESIDENTS, "resident_id")?;
        raw_fields(&state2, &me, citybrain_services::BOOKINGS, "resident_id")?;
        let at = now();
        let today = state2.city.time_zone.local_day(at);
        let id = &request.id_number;
        let identity = live.identity(id);
        let code = live.check_code(&request.code, id, at);
        let bookings = live.bookings_of(id, me.department.as_str(), today);
        let mut call = crate::read_call(
            &me,
            &[citybrain_services::RESIDENTS, citybrain_services::BOOKINGS],
            "POST /api/v1/verify/checkin",
        );
        call.kind = CallKind::Read;
        call.purpose = "check-in at the desk".into();
        call.rows = u64::from(identity.is_some()) + bookings.len() as u64;
        state2.gov.record(call)?;
        let living = identity.as_ref().is_some_and(|i| i.1);
        let code_ok = code
            .as_ref()
            .is_ok_and(|(kind, value)| kind == "health" && value != "red");
        let booked = !bookings.is_empty();
        Ok(json!({
            "identity": {
                "registered": identity.is_some(),
                "living_here": living,
                "name": identity.filter(|_| registry.iter().any(|c| c == "name")).map(|i| i.0),
            },
            "code": match &code {
                Ok((kind, value)) => json!({"valid": true, "kind": kind, "value": value}),
                Err(why) => json!({"valid": false, "refused": why}),
            },
            "booking": bookings.first().map(|b| json!({"room": b.room, "check_in": b.check_in.to_string(), "nights": b.nights})),
            "admit": living && code_ok && booked,
        }))
    })
    .await?;
    Ok(Json(answer).into_response())
}

/// A booking as the desk sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    pub hotel: String,
    pub room: String,
    pub check_in: Date,
    pub nights: i64,
}
