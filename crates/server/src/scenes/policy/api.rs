//! Policy delivery as a scene: its policies (the shipped ones, or `up --policies DIR`) and
//! its routes: list, explain one enterprise, run a payout.

use std::sync::Arc;

use crate::extract::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_gov::{CallKind, Principal};
use citybrain_hub::Positions;
use citybrain_sql::{DataCall, Reader};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::PolicyScene;
use crate::error::ErrorCode;
use crate::scene::{Running, Scene, SceneContext, Started};
use crate::{ApiError, AppState, blocking, now};

pub struct PolicyDelivery;

impl Scene for PolicyDelivery {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn about(&self) -> &'static str {
        "Policy delivery (亲清在线): subsidies decided from data and paid exactly once"
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        super::DEFINITIONS.to_vec()
    }

    fn page(&self) -> Option<&'static str> {
        Some("policy")
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(policy_run))
            .routes(routes!(policy_list))
            .routes(routes!(policy_explain))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            let scene = load(ctx.config.policies.as_deref())?;
            Ok(Started::Running(Running {
                handle: Arc::new(Arc::new(scene)),
                worker: None,
                from: Positions::new(),
                on_stop: None,
            }))
        })
    }
}

/// The policies in `dir` (every `*.policy` file), or the shipped ones.
pub fn load(dir: Option<&std::path::Path>) -> Result<PolicyScene, String> {
    let Some(dir) = dir else {
        return PolicyScene::load(citybrain_rules::shipped::POLICIES.iter().copied());
    };
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("reading --policies {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("reading --policies {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "policy") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            files.push((path.display().to_string(), text));
        }
    }
    files.sort();
    PolicyScene::load(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

fn policy_scene(state: &AppState) -> Result<Arc<PolicyScene>, ApiError> {
    state.scenes.handle::<Arc<PolicyScene>>("policy")
}

/// The loaded policies: id, title, issuing department, legal basis, effective dates (the
/// texts are published rules, so any authenticated caller may list them).
#[utoipa::path(get, path = "/policy/policies", tag = "policy", responses((status = 200, description = "The loaded policies", body = Object)))]
async fn policy_list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let scene = policy_scene(&state)?;
    let policies: Vec<_> = scene
        .policies
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "title": p.title,
                "department": p.department,
                "basis": p.basis,
                "effective": p.effective.map(|(from, to)| json!({"from": from.to_string(), "to": to.to_string()})),
            })
        })
        .collect();
    Ok(Json(json!({ "policies": policies })).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ExplainRequest {
    enterprise_id: String,
    #[serde(default)]
    purpose: String,
    /// As for a run (default: `market.enterprises`).
    #[serde(default)]
    inputs: Option<String>,
}

/// One enterprise against every loaded policy (the enterprise-facing page, an auditor's
/// question): eligible or not, clause by clause with the values read, the amount and any
/// exception. The enterprise's row is read with the caller's grants and audited.
#[utoipa::path(post, path = "/policy/explain", tag = "policy", request_body(content = ExplainRequest, content_type = "application/json"), responses((status = 200, description = "Each policy decided for the enterprise, clause by clause", body = Object)))]
async fn policy_explain(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<ExplainRequest>,
) -> Result<Response, ApiError> {
    let scene = policy_scene(&state)?;
    let call = DataCall {
        reader: Reader::Principal(me),
        purpose: if request.purpose.is_empty() {
            format!("explain policies for {}", request.enterprise_id)
        } else {
            request.purpose.clone()
        },
        kind: CallKind::Sql,
        now: now(),
    };
    let sql = format!(
        "SELECT * FROM ({}) AS facts WHERE enterprise_id = '{}' LIMIT 1",
        policy_inputs(request.inputs.as_deref()),
        request.enterprise_id.replace('\'', "''")
    );
    let row = state.sql.query_as(&sql, &call).await?;
    let id = request.enterprise_id.clone();
    let decisions = blocking(move || {
        let policies: Vec<&citybrain_rules::syntax::PolicyAst> = scene.policies.iter().collect();
        let facts = super::facts_from_row(&row.batches, &policies).map_err(|e| {
            let status = if e == "no such enterprise" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            ApiError::new(
                status,
                ErrorCode::CannotExplain,
                format!("enterprise {id}: {e}"),
            )
        })?;
        Ok(super::explain(&scene, &facts))
    })
    .await?;
    Ok(Json(json!({
        "enterprise_id": request.enterprise_id,
        "decisions": decisions,
    }))
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PolicyRunRequest {
    /// The run's name (e.g. "2025-annual"): recorded with each payout.
    run: String,
    #[serde(default)]
    purpose: String,
    /// The facts as SQL over the hub (joins, aggregations: kilograms of tea bought from
    /// farmers last year), one row per enterprise with `enterprise_id`; read with the
    /// caller's grants. Default: `SELECT * FROM market.enterprises`.
    #[serde(default)]
    inputs: Option<String>,
}

/// The facts policies read, as SQL: the request's, or `market.enterprises`.
fn policy_inputs(inputs: Option<&str>) -> String {
    inputs.map_or_else(
        || "SELECT * FROM market.enterprises".to_string(),
        |sql| sql.trim().trim_end_matches(';').to_string(),
    )
}

/// A matching run (亲清在线): every loaded policy against every enterprise in
/// `market.enterprises` (read with the caller's grants, audited), payouts written to
/// `policy.payouts` exactly once per policy, period and enterprise (see [`policy`]).
#[utoipa::path(post, path = "/policy/runs", tag = "policy", request_body(content = PolicyRunRequest, content_type = "application/json"), responses((status = 200, description = "What the run paid, per policy and in all", body = Object)))]
async fn policy_run(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<PolicyRunRequest>,
) -> Result<Response, ApiError> {
    let report = run_payouts(
        &state,
        &me,
        &request.run,
        &request.purpose,
        request.inputs.as_deref(),
    )
    .await?;
    Ok(Json(report).into_response())
}

/// A payout run as `me` (what `POST /api/v1/policy/runs` does): every loaded policy against
/// the facts (`inputs`, SQL read with `me`'s grants, or `market.enterprises`), each payout
/// written once ever. The demo city runs last period's this way at start.
pub async fn run_payouts(
    state: &AppState,
    me: &Principal,
    run: &str,
    purpose: &str,
    inputs: Option<&str>,
) -> Result<super::RunReport, ApiError> {
    let scene = policy_scene(state)?;
    crate::needs_writer(me, "a payout run needs a publisher or admin role")?;
    let run = run.trim().to_string();
    if run.is_empty()
        || run.len() > 100
        || !run
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.:/".contains(c))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRun,
            "run: give a name of 1 to 100 letters, digits and - _ . : / (e.g. 2025-annual)",
        ));
    }
    let _one_at_a_time = scene.running.try_lock().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::RunInProgress,
            "a payout run is in progress; run again when it has finished (it will pay only who is left)",
        )
    })?;
    let call = DataCall {
        reader: Reader::Principal(me.clone()),
        purpose: if purpose.is_empty() {
            format!("policy payout run {run}")
        } else {
            purpose.to_string()
        },
        kind: CallKind::Sql,
        now: now(),
    };
    let enterprises = state.sql.query_as(&policy_inputs(inputs), &call).await?;
    // The ledger reads itself: every id ever paid.
    let stored = state
        .sql
        .query("SELECT payout_id FROM policy.payouts")
        .await?;
    let paid: std::collections::HashSet<String> =
        crate::scene::text_values(&stored.batches, "payout_id")
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, e))?
            .into_iter()
            .collect();
    let (hub, gov, worker, me) = (
        state.hub.clone(),
        state.gov.clone(),
        scene.clone(),
        me.clone(),
    );
    blocking(move || {
        let policies: Vec<&citybrain_rules::syntax::PolicyAst> = worker.policies.iter().collect();
        let outcome = super::table_from_batches(&enterprises.batches, &policies)
            .and_then(|(ids, table)| super::pay(&hub, &worker, &run, &ids, &table, &paid, now()));
        crate::record_write(
            &gov,
            &me,
            "policy.payouts",
            format!("POST /api/v1/policy/runs {run}"),
            outcome.as_ref().map_or(0, |r| r.paid_now),
            outcome.is_ok(),
        )?;
        outcome
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::RunFailed, e))
    })
    .await
}
