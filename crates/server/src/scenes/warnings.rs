//! The warnings scene (数据碰撞预警): warning rules (`citybrain_warnings`) run on a schedule
//! as the department that owns each risk, through that department's grants, masks and
//! audit, like any of its queries: one query per period, the counts judged per area against
//! the area's baseline, and every (rule, area, period) that passes its threshold stored once
//! in `warnings.raised`, put on the city's event stream and listed by `GET /api/v1/warnings`
//! with the query that shows the evidence (`GET /api/v1/warnings/evidence`, run as the
//! reader).
//!
//! Exactly once: a warning's id is its rule, area and period; the ids stored are loaded at
//! start and a run stores only the others, one run at a time. Rules are the shipped ones,
//! or every `.toml` file in `DATA/warnings/`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_core::{PrincipalName, TimeZone, Timestamp};
use citybrain_gov::{CallKind, Principal, Role};
use citybrain_hub::{Hub, Positions};
use citybrain_sql::{DataCall, Reader, ResultFormat, SqlEngine};
use citybrain_warnings::{Judgement, Period, Rule, judge_series, warning_id};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ErrorCode;
use crate::extract::{Json, Query};
use crate::scene::{Running, Scene, SceneContext, Started, text_values};
use crate::{ApiError, AppState, now};

/// Where a city keeps its own rules, in the data directory.
pub const RULES_DIR: &str = "warnings";
/// How often the rules run on their own.
const EVERY: Duration = Duration::from_secs(300);
/// How long the counts of a period that has ended are kept between runs.
const CACHE_FOR: Duration = Duration::from_secs(3600);

pub struct WarningsScene;

impl Scene for WarningsScene {
    fn name(&self) -> &'static str {
        "warnings"
    }

    fn about(&self) -> &'static str {
        "Risk early warning from data collisions (数据碰撞预警): rules across departments' data, a baseline and a threshold per area and period"
    }

    /// In a cluster, on one node at a time: it runs its rules on a timer and notifies.
    fn one_node(&self) -> bool {
        true
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        citybrain_warnings::DEFINITIONS.to_vec()
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(list))
            .routes(routes!(evidence))
            .routes(routes!(run_now))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            let rules = load_rules(&ctx.config.data_dir.join(RULES_DIR)).map_err(|problems| {
                format!("the warning rules do not load: {}", problems.join("; "))
            })?;
            let stored = ctx
                .sql
                .query(&format!(
                    "SELECT warning_id FROM {}",
                    citybrain_warnings::RAISED
                ))
                .await
                .map_err(|e| e.to_string())?;
            // The warnings still in force, for the alert board.
            let recent = ctx
                .sql
                .query(&format!(
                    "SELECT * FROM {} ORDER BY period_start",
                    citybrain_warnings::RAISED
                ))
                .await
                .map_err(|e| e.to_string())?;
            let recent: Vec<serde_json::Value> = serde_json::from_slice(
                &citybrain_sql::encode(&recent, ResultFormat::Json).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            let recent: Vec<(Timestamp, serde_json::Value)> = recent
                .into_iter()
                .filter_map(|mut row| {
                    let end = Timestamp::parse(row["period_end"].as_str()?).ok()?;
                    row.as_object_mut()?.remove("_ingested_at");
                    Some((end, row))
                })
                .collect();
            let live = LiveWarnings {
                inner: Arc::new(Inner {
                    recent: Mutex::new(recent),
                    rules,
                    zone: ctx.config.city.time_zone.clone(),
                    sql: ctx.sql.clone(),
                    hub: ctx.hub.clone(),
                    gov: ctx.gov.clone(),
                    events: ctx.events.clone(),
                    raised: Mutex::new(
                        text_values(&stored.batches, "warning_id")?
                            .into_iter()
                            .collect(),
                    ),
                    cache: Mutex::new(HashMap::new()),
                    status: Mutex::new(BTreeMap::new()),
                    running: tokio::sync::Mutex::new(()),
                }),
            };
            let ticker = {
                let live = live.clone();
                tokio::spawn(async move {
                    let mut interval = tokio::time::interval(EVERY);
                    loop {
                        interval.tick().await;
                        if let Err(error) = live.run(now(), false).await {
                            tracing::error!(message = "A warning run failed.", %error);
                        }
                    }
                })
            };
            Ok(Started::Running(Running {
                handle: Arc::new(live),
                worker: None,
                from: Positions::new(),
                on_stop: Some(Box::new(move || ticker.abort())),
            }))
        })
    }
}

/// The rules in `dir` (every `.toml` file), or the shipped ones when it does not exist;
/// every problem at once, each naming its file.
pub fn load_rules(dir: &std::path::Path) -> Result<Vec<Rule>, Vec<String>> {
    let Some(files) = crate::scene::toml_files(dir)? else {
        return Ok(citybrain_warnings::shipped());
    };
    let mut rules: Vec<Rule> = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in files {
        match Rule::parse(&name, &text) {
            Ok(rule) if rules.iter().any(|r| r.name == rule.name) => {
                problems.push(format!("{name}: a second rule named {}", rule.name));
            }
            Ok(rule) => rules.push(rule),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

/// What the routes and the ticker share.
#[derive(Clone)]
pub struct LiveWarnings {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Vec<Rule>,
    zone: TimeZone,
    sql: SqlEngine,
    hub: Arc<Hub>,
    gov: Arc<citybrain_gov::Gov>,
    events: tokio::sync::broadcast::Sender<Arc<str>>,
    raised: Mutex<HashSet<String>>,
    /// Counts of periods that ended a day ago or more, by rule and period, and when they
    /// were counted: kept for an hour (late records, a grant or linkage approved since),
    /// and not used by a run asked for on demand.
    cache: Mutex<HashMap<(String, citybrain_core::Date), Counted>>,
    status: Mutex<BTreeMap<String, RuleStatus>>,
    running: tokio::sync::Mutex<()>,
    /// Every warning raised, with the end of its period (few: one per rule, area and
    /// period that passed a threshold), for the alert board.
    recent: Mutex<Vec<(Timestamp, serde_json::Value)>>,
}

/// A period's counts per area, and when they were counted.
type Counted = (std::time::Instant, BTreeMap<String, u64>);

/// A rule's last run, for `GET /api/v1/warnings`.
#[derive(Debug, Clone, Serialize)]
struct RuleStatus {
    at: String,
    periods: usize,
    areas: usize,
    raised: usize,
    error: Option<String>,
}

/// One row of `warnings.raised`.
#[derive(Debug, Clone, Serialize)]
pub struct Raised {
    pub warning_id: String,
    pub rule: String,
    pub title: String,
    pub title_zh: String,
    pub department: String,
    pub area: String,
    pub period_start: String,
    pub period_end: String,
    pub value: i64,
    pub baseline: f64,
    pub threshold: i64,
    pub p_value: f64,
    pub raised_at: String,
    pub evidence_sql: String,
}

impl LiveWarnings {
    /// Runs every rule for the periods up to the one `at` falls in; stores and returns the
    /// warnings not raised before. One run at a time.
    pub async fn run(&self, at: Timestamp, fresh: bool) -> Result<Vec<Raised>, String> {
        let _one = self.inner.running.lock().await;
        if fresh {
            self.inner.cache.lock().expect("cache lock").clear();
        }
        let mut all = Vec::new();
        for rule in &self.inner.rules {
            let outcome = self.run_rule(rule, at).await;
            let status = match outcome {
                Ok((raised, periods, areas)) => {
                    let status = RuleStatus {
                        at: at.to_string(),
                        periods,
                        areas,
                        raised: raised.len(),
                        error: None,
                    };
                    all.extend(raised);
                    status
                }
                Err(error) => {
                    // Said once, not at every run: a rule waiting for its grants fails
                    // the same way every five minutes.
                    let said = self
                        .inner
                        .status
                        .lock()
                        .expect("status lock")
                        .get(&rule.name)
                        .is_some_and(|s| s.error.as_ref() == Some(&error));
                    if !said && error.contains("does not exist") {
                        // A city that does not use the rule's department: not a fault.
                        tracing::info!(message = "A warning rule waits for its department.", rule = rule.name.as_str(), %error);
                    } else if !said {
                        tracing::warn!(message = "A warning rule could not run.", rule = rule.name.as_str(), %error);
                    }
                    RuleStatus {
                        at: at.to_string(),
                        periods: 0,
                        areas: 0,
                        raised: 0,
                        error: Some(error),
                    }
                }
            };
            self.inner
                .status
                .lock()
                .expect("status lock")
                .insert(rule.name.clone(), status);
        }
        {
            let mut recent = self.inner.recent.lock().expect("recent lock");
            for r in &all {
                if let (Ok(end), Ok(row)) =
                    (Timestamp::parse(&r.period_end), serde_json::to_value(r))
                {
                    recent.push((end, row));
                }
            }
        }
        if !all.is_empty() {
            crate::scene::store(
                &self.inner.hub,
                citybrain_warnings::RAISED,
                &all,
                &self.inner.events,
            );
        }
        Ok(all)
    }

    /// The rule's department, as the reader of its queries.
    fn reader(rule: &Rule) -> Result<Principal, String> {
        Ok(Principal {
            name: PrincipalName::parse(&format!("warnings_{}", rule.name))
                .map_err(|e| e.to_string())?,
            department: citybrain_core::DepartmentId::parse(&rule.department)
                .map_err(|e| e.to_string())?,
            role: Role::Reader,
        })
    }

    async fn counts(
        &self,
        rule: &Rule,
        period: &Period,
        at: Timestamp,
    ) -> Result<BTreeMap<String, u64>, String> {
        let key = (rule.name.clone(), period.first_day);
        if let Some((when, hit)) = self.inner.cache.lock().expect("cache lock").get(&key)
            && when.elapsed() < CACHE_FOR
        {
            return Ok(hit.clone());
        }
        let call = DataCall {
            reader: Reader::Principal(Self::reader(rule)?),
            purpose: format!("warning rule {}: {}", rule.name, rule.title.en),
            kind: CallKind::Sql,
            now: at,
        };
        let result = self
            .inner
            .sql
            .query_as(&rule.query(period), &call)
            .await
            .map_err(|e| e.to_string())?;
        let mut counts = BTreeMap::new();
        for batch in &result.batches {
            let areas = crate::scene::text_column(batch, "area")?;
            let values = batch
                .column_by_name("value")
                .ok_or("the rule's query returns no column value")?;
            let values = arrow::compute::cast(values, &DataType::Int64)
                .map_err(|e| format!("value is not a count: {e}"))?;
            let values = values.as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                if areas.is_null(i) || values.is_null(i) {
                    continue;
                }
                counts.insert(areas.value(i).to_string(), values.value(i).max(0) as u64);
            }
        }
        // A period that ended a day ago or more is not expected to change.
        if period.end.0 + citybrain_core::time::MICROS_PER_DAY <= at.0 {
            self.inner
                .cache
                .lock()
                .expect("cache lock")
                .insert(key, (std::time::Instant::now(), counts.clone()));
        }
        Ok(counts)
    }

    async fn run_rule(
        &self,
        rule: &Rule,
        at: Timestamp,
    ) -> Result<(Vec<Raised>, usize, usize), String> {
        let department =
            citybrain_core::DepartmentId::parse(&rule.department).map_err(|e| e.to_string())?;
        if !self
            .inner
            .gov
            .department_exists(&department)
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "department {department} does not exist: create it and give it the grants the rule needs (docs/warnings.md)"
            ));
        }
        let zone = &self.inner.zone;
        let current = Period::of(at, rule.every, zone);
        let n = rule.baseline_periods as usize;
        let total = n + rule.look_back as usize + 1;
        let periods: Vec<Period> = (0..total)
            .rev()
            .map(|k| current.back(k as i32, rule.every, zone))
            .collect();
        let mut by_period = Vec::with_capacity(total);
        for period in &periods {
            by_period.push(self.counts(rule, period, at).await?);
        }
        let areas: BTreeSet<&String> = by_period.iter().flat_map(|c| c.keys()).collect();
        let mut raised = Vec::new();
        let known = self.inner.raised.lock().expect("raised lock").clone();
        for area in &areas {
            let series: Vec<u64> = by_period
                .iter()
                .map(|c| c.get(*area).copied().unwrap_or(0))
                .collect();
            let judged: Vec<Judgement> = judge_series(rule, &series);
            for (j, period) in judged.iter().zip(&periods[n..]) {
                let id = warning_id(&rule.name, area, period);
                if !j.warn || known.contains(&id) {
                    continue;
                }
                raised.push(Raised {
                    warning_id: id,
                    rule: rule.name.clone(),
                    title: rule.title.en.clone(),
                    title_zh: rule.title.zh.clone(),
                    department: rule.department.clone(),
                    area: area.to_string(),
                    period_start: period.start.to_string(),
                    period_end: period.end.to_string(),
                    value: j.value as i64,
                    baseline: (j.baseline * 1000.0).round() / 1000.0,
                    threshold: j.threshold as i64,
                    p_value: j.p_value,
                    raised_at: at.to_string(),
                    evidence_sql: rule.evidence_query(area, period),
                });
            }
        }
        self.inner
            .raised
            .lock()
            .expect("raised lock")
            .extend(raised.iter().map(|r| r.warning_id.clone()));
        Ok((raised, periods.len(), areas.len()))
    }

    /// The warnings in force at `at`: those of a period that has not ended or ended less
    /// than a week before, newest first. The alert board (`GET /api/v1/alerts`) shows them
    /// beside the traffic and parking alerts, each addressed to its department.
    pub fn in_force(&self, at: Timestamp) -> Vec<serde_json::Value> {
        let since = Timestamp(at.0 - 7 * citybrain_core::time::MICROS_PER_DAY);
        let recent = self.inner.recent.lock().expect("recent lock");
        recent
            .iter()
            .rev()
            .filter(|(end, _)| *end > since)
            .map(|(_, row)| row.clone())
            .collect()
    }

    fn status(&self) -> serde_json::Value {
        let status = self.inner.status.lock().expect("status lock");
        serde_json::Value::Array(
            self.inner
                .rules
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "title": r.title,
                        "description": r.description,
                        "department": r.department,
                        "every": r.every,
                        "baseline_periods": r.baseline_periods,
                        "min_value": r.min_value,
                        "alpha": r.alpha,
                        "last_run": status.get(&r.name),
                    })
                })
                .collect(),
        )
    }
}

async fn as_caller(
    state: &AppState,
    me: &Principal,
    sql: &str,
    purpose: String,
) -> Result<serde_json::Value, ApiError> {
    let call = DataCall {
        reader: Reader::Principal(me.clone()),
        purpose,
        kind: CallKind::Sql,
        now: now(),
    };
    let result = state.sql.query_as(sql, &call).await?;
    serde_json::from_slice(&citybrain_sql::encode(&result, ResultFormat::Json)?)
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only the warnings to this department (default: all).
    #[serde(default)]
    department: Option<String>,
    /// At most this many, newest period first (default 100, at most 1,000).
    #[serde(default)]
    limit: Option<u32>,
}

/// The warnings raised, newest period first, each with the query that shows its evidence,
/// and the rules with their last run. `warnings.raised` holds counts per area only and is
/// shared with every department; reading it is audited like any read.
#[utoipa::path(get, path = "/warnings", tag = "warnings", params(ListParams), responses((status = 200, description = "Warnings (rule, area, period, count, baseline, threshold, evidence query) and the rules", body = Object)))]
async fn list(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let live = state.scenes.handle::<LiveWarnings>("warnings")?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1_000);
    let filter = match &params.department {
        Some(d) => {
            let d = citybrain_core::DepartmentId::parse(d).map_err(|e| {
                ApiError::bad_request(ErrorCode::InvalidQuery, format!("department: {e}"))
            })?;
            format!("WHERE department = '{}'", d.as_str())
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT * FROM {} {filter} ORDER BY period_start DESC, value DESC LIMIT {limit}",
        citybrain_warnings::RAISED
    );
    let rows = as_caller(&state, &me, &sql, "the warnings raised".into()).await?;
    Ok(Json(json!({ "warnings": rows, "rules": live.status() })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EvidenceParams {
    /// The warning's id (rule/area/first day of the period).
    id: String,
}

/// The cases behind one warning: its rule's evidence query for its area and period, run
/// as the caller (through the caller's grants and masks, audited): a department without a
/// grant on a dataset the query reads is refused, naming the grant.
#[utoipa::path(get, path = "/warnings/evidence", tag = "warnings", params(EvidenceParams), responses((status = 200, description = "The warning and the rows of its evidence query", body = Object)))]
async fn evidence(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<EvidenceParams>,
) -> Result<Response, ApiError> {
    let live = state.scenes.handle::<LiveWarnings>("warnings")?;
    let id = params.id;
    let known = live.inner.raised.lock().expect("raised lock").contains(&id);
    if !known || id.len() > 200 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such warning: take its warning_id from GET /api/v1/warnings",
        ));
    }
    // The id is one the scene made, so it is safe in a literal once quotes are doubled.
    let sql = format!(
        "SELECT * FROM {} WHERE warning_id = '{}'",
        citybrain_warnings::RAISED,
        id.replace('\'', "''")
    );
    let warning = as_caller(&state, &me, &sql, format!("warning {id}")).await?;
    let Some(row) = warning.as_array().and_then(|rows| rows.first()).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such warning: take its warning_id from GET /api/v1/warnings",
        ));
    };
    let query = row["evidence_sql"].as_str().unwrap_or_default().to_string();
    let rows = as_caller(&state, &me, &query, format!("evidence of warning {id}")).await?;
    Ok(Json(json!({ "warning": row, "evidence": rows })).into_response())
}

/// Runs every warning rule now, counting every period afresh (they also run every five
/// minutes) and answers with the warnings it raised that were not raised before. For
/// admins (of any department).
#[utoipa::path(post, path = "/warnings/run", tag = "warnings", responses((status = 200, description = "The warnings this run raised, and the rules with their last run", body = Object)))]
async fn run_now(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    if me.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "only admins run the warning rules on demand; they run every five minutes on their own",
        ));
    }
    let live = state.scenes.handle::<LiveWarnings>("warnings")?;
    let raised = live.run(now(), true).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "raised": raised, "rules": live.status() })).into_response())
}
