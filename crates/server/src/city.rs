//! `GET /api/v1/city`: the city profile, for the cockpit (its zone formats every time, its
//! map opens on the centre) and for any tool that needs the city's local days.

use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};

use crate::AppState;

#[utoipa::path(get, path = "/city", tag = "city", responses((status = 200, description = "The city profile: name, name_zh, time_zone (IANA), plate_prefixes, languages, map {centre, bounds}", body = Object)))]
pub async fn profile(State(state): State<AppState>) -> Response {
    Json(state.city.as_ref()).into_response()
}
