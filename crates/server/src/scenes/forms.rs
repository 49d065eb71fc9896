//! The forms scene, one form instead of many (一表通): report templates as files
//! (`citybrain_cockpits::forms`), the shipped ones or every `.toml` in `DATA/forms/`, read at
//! start (a template that does not parse stops the scene, naming its file and field). `GET /api/v1/forms/{id}` fills one for
//! a community and month **as the caller**: each field with a query runs under the caller's
//! grants and masks, audited with the form as purpose; a field the caller may not read says
//! which grant it needs; the fields no dataset answers are left to a person.
//! `GET /api/v1/forms` lists the templates with the burden they put on a community before
//! and after.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_cockpits::forms::{self, Month, Template};
use citybrain_gov::{CallKind, Principal};
use citybrain_hub::Positions;
use citybrain_sql::{DataCall, Reader, ResultFormat, SqlError};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ErrorCode;
use crate::extract::{Json, Query};
use crate::scene::{Running, Scene, SceneContext, Started};
use crate::{ApiError, AppState, now};

pub struct FormsScene;

/// The templates the scene serves.
#[derive(Clone)]
pub struct Templates(pub Arc<Vec<Template>>);

impl Scene for FormsScene {
    fn name(&self) -> &'static str {
        "forms"
    }

    fn about(&self) -> &'static str {
        "One form instead of many (一表通): departments' report templates filled from shared data under the community's grants"
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(list))
            .routes(routes!(fill))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            let templates = load(&dir(&ctx.config.data_dir)).map_err(|problems| {
                format!("the form templates do not load: {}", problems.join("; "))
            })?;
            Ok(Started::Running(Running {
                handle: Arc::new(Templates(Arc::new(templates))),
                worker: None,
                from: Positions::new(),
                on_stop: None,
            }))
        })
    }
}

/// Where a city keeps its own templates, in the data directory.
pub fn dir(data: &FsPath) -> PathBuf {
    data.join("forms")
}

/// The templates in `dir`, or the shipped ones when it does not exist; every problem at once.
pub fn load(dir: &FsPath) -> Result<Vec<Template>, Vec<String>> {
    let Some(files) = crate::scene::toml_files(dir)? else {
        return Ok(forms::shipped());
    };
    let mut templates: Vec<Template> = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in files {
        match Template::parse(&name, &text) {
            Ok(t) if templates.iter().any(|o| o.id == t.id) => {
                problems.push(format!("{name}: a second template {}", t.id));
            }
            Ok(t) => templates.push(t),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(templates)
    } else {
        Err(problems)
    }
}

fn templates(state: &AppState) -> Result<Templates, ApiError> {
    state.scenes.handle::<Templates>("forms")
}

/// The report templates a community fills, and the burden they put on it each month:
/// fields asked in all, distinct questions, those the data answers, and minutes by hand
/// before and after (the model: docs/forms.md).
#[utoipa::path(get, path = "/forms", tag = "forms", responses((status = 200, description = "The templates (fields, which are filled from data) and the burden before and after", body = Object)))]
async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let templates = templates(&state)?;
    let templates = &templates.0;
    let burden = forms::burden(templates);
    let list: Vec<Value> = templates
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "title": t.title,
                "department": t.department,
                "every": t.every,
                "fields": t.fields.iter().map(|f| json!({
                    "id": f.id, "concept": f.concept, "label": f.label, "from_data": f.sql.is_some(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "templates": list, "burden": burden })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FillParams {
    /// The community (as `registry.residents` names it, e.g. C0001).
    community: String,
    /// The month, YYYY-MM (default: the last whole month).
    #[serde(default)]
    period: Option<String>,
}

/// One template filled for a community and month, as the caller: each data field's query
/// under the caller's grants (a field it may not read says which grant it needs), the other
/// fields left to a person. Every query is an audited data call with the form as purpose.
#[utoipa::path(get, path = "/forms/{id}", tag = "forms", params(("id" = String, Path, description = "The template"), FillParams), responses((status = 200, description = "The fields: value and source (data or person), or the grant a field needs", body = Object)))]
async fn fill(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<FillParams>,
) -> Result<Response, ApiError> {
    crate::scenes::services::check_key("community", &params.community, ErrorCode::InvalidQuery)?;
    let zone = &state.city.time_zone;
    let month = match params.period.as_deref() {
        Some(text) => Month::parse(text, zone)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidQuery, e))?,
        None => Month::last_whole(now(), zone),
    };
    let templates = templates(&state)?;
    let template = templates.0.iter().find(|t| t.id == id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no form template {id:?}: GET /api/v1/forms lists them"),
        )
    })?;
    let (y, m, _) = month.first_day.ymd();
    let period = format!("{y:04}-{m:02}");
    let call = DataCall {
        reader: Reader::Principal(me.clone()),
        purpose: format!(
            "one form (一表通): {} for {} {period}",
            template.id, params.community
        ),
        kind: CallKind::Sql,
        now: now(),
    };
    let mut fields = Vec::new();
    let (mut from_data, mut by_hand, mut denied) = (0, 0, 0);
    for field in &template.fields {
        let mut out = json!({
            "id": field.id,
            "concept": field.concept,
            "label": field.label,
        });
        match &field.sql {
            None => {
                by_hand += 1;
                out["source"] = json!("person");
                out["value"] = Value::Null;
            }
            Some(sql) => {
                out["source"] = json!("data");
                let sql = forms::bind_field(sql, &params.community, &month);
                match state.sql.query_as(&sql, &call).await {
                    Ok(result) => {
                        let rows: Vec<Value> = serde_json::from_slice(&citybrain_sql::encode(
                            &result,
                            ResultFormat::Json,
                        )?)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                        out["value"] = rows
                            .first()
                            .and_then(|r| r.get("value"))
                            .cloned()
                            .unwrap_or(Value::Null);
                        from_data += 1;
                    }
                    Err(SqlError::Denied(why)) => {
                        denied += 1;
                        out["value"] = Value::Null;
                        out["denied"] = json!(why);
                    }
                    Err(e) => {
                        return Err(ApiError::bad_request(
                            ErrorCode::FormMisdefined,
                            format!("form {id}, field {}: {e}", field.id),
                        ));
                    }
                }
            }
        }
        fields.push(out);
    }
    Ok(Json(json!({
        "form": template.id,
        "title": template.title,
        "department": template.department,
        "community": params.community,
        "period": period,
        "period_start": month.start.to_string(),
        "period_end": month.end.to_string(),
        "fields": fields,
        "filled_from_data": from_data,
        "left_to_person": by_hand,
        "denied": denied,
    }))
    .into_response())
}
