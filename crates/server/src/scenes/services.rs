//! The services scene (主动服务): residents' facts from five departments come through the
//! change feed into `citybrain_services::Engine`, which decides everyone each morning of the
//! data's clock and the residents a change touches at once; a resident eligible for a service
//! they do not receive becomes a row of `services.tasks` for their grid's worker, with why
//! and a deadline. Workers move tasks on (`POST /api/v1/services/tasks/{task_id}`), overdue
//! ones escalate, and every step is a row of `services.task_events`.
//!
//! Exactly once: the facts live in memory and are rebuilt from the feed at every start, but
//! the task book is loaded from `services.tasks` and `services.task_events` first, so the
//! replay opens no task twice and escalates none twice. A task's id is a number, never the
//! resident's id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Date32Type;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_core::{DatasetName, Date, GeoPoint, Timestamp};
use citybrain_gov::{CallKind, Principal, Role};
use citybrain_hub::{Change, Format, OnError, Positions};
use citybrain_services::{
    CertificateRow, Engine, EnrolmentRow, IncomeRow, InsuranceRow, NewTask, ResidentRow,
    ServiceRules, State as TaskState, TaskInfo, Update,
};
use citybrain_sql::{DataCall, Reader, ResultFormat};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ErrorCode;
use crate::extract::{Json, Query};
use crate::scene::{
    Running, Scene, SceneContext, Started, Worker, bools, ints, text_column, text_values,
    timestamps,
};
use crate::{ApiError, AppState, blocking, now};

mod alarms;
mod codes;

pub struct ServicesScene;

/// What the routes share with the worker.
#[derive(Clone)]
pub struct LiveServices {
    engine: Arc<Mutex<Engine>>,
    desk: alarms::SharedDesk,
    issuer: codes::SharedIssuer,
    /// Hotel bookings by guest id (`tourism.bookings`), for the check-in.
    bookings: Arc<Mutex<HashMap<String, Vec<super::verify::Booking>>>>,
    workers: Arc<Mutex<HashMap<String, String>>>,
    hub: Arc<citybrain_hub::Hub>,
}

impl Scene for ServicesScene {
    fn name(&self) -> &'static str {
        "services"
    }

    fn about(&self) -> &'static str {
        "Services that find the citizen (主动服务): residents eligible for a service they do not receive become tasks for their grid worker"
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        citybrain_services::DEFINITIONS.to_vec()
    }

    fn inputs(&self) -> Vec<&'static str> {
        let mut inputs = citybrain_services::INPUTS.to_vec();
        inputs.extend([
            citybrain_services::GRIDS,
            citybrain_services::POSITIONS,
            citybrain_services::ALARMS,
            citybrain_services::BOOKINGS,
        ]);
        inputs
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(list_tasks))
            .routes(routes!(move_task))
            .routes(routes!(alarms::report))
            .routes(routes!(codes::key))
            .routes(routes!(codes::issue))
            .routes(routes!(codes::verify))
            .routes(routes!(codes::explain))
            .routes(routes!(codes::revoke))
            .routes(routes!(codes::revoked))
            .routes(routes!(codes::qr))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            let rules = load_rules(ctx.config.services.as_deref()).map_err(|problems| {
                format!("the service rules do not load: {}", problems.join("; "))
            })?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut engine = Engine::new(rules, ctx.config.city.time_zone.clone(), threads);
            // The task book first, so the replay of the facts opens nothing twice.
            let tasks = ctx
                .sql
                .query(&format!(
                    "SELECT task_id, service, resident_id, grid, due_at FROM {}",
                    citybrain_services::TASKS
                ))
                .await
                .map_err(|e| e.to_string())?;
            for batch in &tasks.batches {
                let (ids, services, residents, grids) = (
                    text_column(batch, "task_id")?,
                    text_column(batch, "service")?,
                    text_column(batch, "resident_id")?,
                    text_column(batch, "grid")?,
                );
                let due = timestamps(batch, "due_at")?;
                for i in 0..batch.num_rows() {
                    engine.tasks.restore(TaskInfo {
                        id: ids.value(i).to_string(),
                        service: services.value(i).to_string(),
                        resident_id: residents.value(i).to_string(),
                        grid: grids.value(i).to_string(),
                        due_at: Timestamp(due.value(i)),
                        state: TaskState::Open,
                    });
                }
            }
            let events = ctx
                .sql
                .query(&format!(
                    "SELECT task_id, state FROM {}",
                    citybrain_services::TASK_EVENTS
                ))
                .await
                .map_err(|e| e.to_string())?;
            let (ids, states) = (
                text_values(&events.batches, "task_id")?,
                text_values(&events.batches, "state")?,
            );
            for (id, state) in ids.iter().zip(&states) {
                if let Some(state) = TaskState::parse(state) {
                    engine.tasks.restore_state(id, state);
                }
            }
            let desk = Arc::new(Mutex::new(alarms::open(ctx).await?));
            let live = LiveServices {
                engine: Arc::new(Mutex::new(engine)),
                desk: desk.clone(),
                issuer: Arc::new(Mutex::new(codes::open(ctx).await?)),
                bookings: Arc::new(Mutex::new(HashMap::new())),
                workers: Arc::new(Mutex::new(HashMap::new())),
                hub: ctx.hub.clone(),
            };
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let ticker = alarms::ticker(desk, ctx.hub.clone(), ctx.events.clone(), stop.clone());
            Ok(Started::Running(Running {
                handle: Arc::new(live.clone()),
                worker: Some(Box::new(ServicesWorker {
                    live,
                    events: ctx.events.clone(),
                })),
                // The facts live in memory: rebuilt from everything stored, every start.
                from: Positions::new(),
                on_stop: Some(Box::new(move || {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    let _ = ticker.join();
                })),
            }))
        })
    }
}

/// The service rules in `dir` (every `.policy` file, and `services.toml` for the deadlines,
/// 7 days each without one), or the shipped ones; every problem at once, naming its file.
pub fn load_rules(dir: Option<&std::path::Path>) -> Result<ServiceRules, Vec<String>> {
    let Some(dir) = dir else {
        return Ok(ServiceRules::shipped());
    };
    let entries = std::fs::read_dir(dir).map_err(|e| vec![format!("{}: {e}", dir.display())])?;
    let mut paths: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(vec![format!("{}: no .policy files", dir.display())]);
    }
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path.display().to_string(), text)),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    let sla = match std::fs::read_to_string(dir.join("services.toml")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "default_sla_days = 7\n".into(),
        Err(e) => {
            problems.push(format!("{}: {e}", dir.join("services.toml").display()));
            String::new()
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    ServiceRules::load(&files, &sla)
}

struct ServicesWorker {
    live: LiveServices,
    events: tokio::sync::broadcast::Sender<Arc<str>>,
}

#[derive(Serialize)]
struct TaskRow<'a> {
    task_id: &'a str,
    service: &'a str,
    title: &'a str,
    department: &'a str,
    resident_id: &'a str,
    resident_name: &'a str,
    home: Option<GeoPoint>,
    community: &'a str,
    grid: &'a str,
    worker_id: Option<&'a str>,
    opened_at: String,
    due_at: String,
    why: &'a str,
}

#[derive(Serialize)]
struct EventRow<'a> {
    event_id: String,
    task_id: &'a str,
    service: &'a str,
    grid: &'a str,
    state: &'static str,
    at: String,
    by: &'a str,
    reason: Option<&'a str>,
}

impl ServicesWorker {
    fn store(&self, engine: &mut Engine, opened: Vec<NewTask>) {
        let workers = self.live.workers.lock().expect("workers lock");
        let rows: Vec<TaskRow> = opened
            .iter()
            .map(|t| {
                let r = engine.population.get(t.resident);
                let s = &engine.rules.services[t.service];
                TaskRow {
                    task_id: &t.task_id,
                    service: &s.name,
                    title: &s.title,
                    department: &s.department,
                    resident_id: &r.id,
                    resident_name: &r.name,
                    home: r.home,
                    community: &r.community,
                    grid: &r.grid,
                    worker_id: workers.get(&r.grid).map(String::as_str),
                    opened_at: t.opened_at.to_string(),
                    due_at: t.due_at.to_string(),
                    why: &t.why,
                }
            })
            .collect();
        crate::scene::store(
            &self.live.hub,
            citybrain_services::TASKS,
            &rows,
            &self.events,
        );
        drop(rows);
        let escalated = engine.overdue();
        let rows: Vec<EventRow> = escalated
            .iter()
            .filter_map(|(id, at)| {
                let t = engine.tasks.get(id)?;
                Some(EventRow {
                    event_id: format!("{id}/escalated"),
                    task_id: id,
                    service: &t.service,
                    grid: &t.grid,
                    state: TaskState::Escalated.name(),
                    at: at.to_string(),
                    by: "citybrain",
                    reason: Some("the deadline passed while the task was open or accepted"),
                })
            })
            .collect();
        crate::scene::store(
            &self.live.hub,
            citybrain_services::TASK_EVENTS,
            &rows,
            &self.events,
        );
    }
}

impl Worker for ServicesWorker {
    fn apply(&mut self, changes: Vec<Change>) {
        let engine = self.live.engine.clone();
        let mut engine = engine.lock().expect("services lock");
        let mut facts = Vec::new();
        for change in changes {
            for batch in &change.batches {
                let handled = match change.dataset.as_str() {
                    citybrain_services::GRIDS => Some(self.add_grids(batch)),
                    citybrain_services::BOOKINGS => Some(self.add_bookings(batch)),
                    citybrain_services::POSITIONS => {
                        Some(self.live.desk.lock().expect("desk lock").positions(batch))
                    }
                    citybrain_services::ALARMS => {
                        let steps = self
                            .live
                            .desk
                            .lock()
                            .expect("desk lock")
                            .alarms(batch, now());
                        Some(steps.map(|steps| alarms::store(&self.live.hub, &self.events, &steps)))
                    }
                    _ => None,
                };
                if let Some(outcome) = handled {
                    if let Err(error) = outcome {
                        tracing::error!(message = "A batch was unusable for the services scene.", dataset = change.dataset.as_str(), %error);
                    }
                    continue;
                }
                match updates(change.dataset.as_str(), batch) {
                    Ok(updates) => facts.extend(updates),
                    Err(error) => {
                        tracing::error!(message = "A batch was unusable for the services scene.", dataset = change.dataset.as_str(), %error);
                    }
                }
            }
        }
        // In the order the facts became true: the catch-up after a restart comes dataset
        // by dataset, and a day's registry rows must not be decided before the
        // enrolments of the day before. (Stable: one instant keeps the feed's order.)
        facts.sort_by_key(Update::at);
        let mut opened = Vec::new();
        for u in &facts {
            opened.extend(engine.apply(u));
        }
        self.store(&mut engine, opened);
    }

    fn caught_up(&mut self) {
        let engine = self.live.engine.clone();
        let mut engine = engine.lock().expect("services lock");
        let opened = engine.caught_up();
        self.store(&mut engine, opened);
    }
}

impl LiveServices {
    /// A resident's name and whether they live here, by the id on their card.
    pub fn identity(&self, id: &str) -> Option<(String, bool)> {
        let engine = self.engine.lock().expect("services lock");
        let r = engine
            .population
            .index_of(id)
            .map(|i| engine.population.get(i))?;
        r.registered.then(|| (r.name.clone(), r.living))
    }

    /// A code checked as a scanner would, and that it is the card holder's: (kind, value)
    /// or why not.
    pub fn check_code(
        &self,
        code: &str,
        id: &str,
        at: Timestamp,
    ) -> Result<(String, String), String> {
        let issuer = self.issuer.lock().expect("issuer lock");
        let public = issuer.key.verifying_key();
        let payload =
            citybrain_services::codes::verify(&public, code, at, &|c| issuer.revoked.contains(c))
                .map_err(|r| r.name().to_string())?;
        if !citybrain_services::codes::holds(&public, &payload, id) {
            return Err("not_the_holders".into());
        }
        Ok((payload.kind, payload.value))
    }

    /// The bookings of `id` at `hotel` that cover `day`.
    pub fn bookings_of(&self, id: &str, hotel: &str, day: Date) -> Vec<super::verify::Booking> {
        self.bookings
            .lock()
            .expect("bookings lock")
            .get(id)
            .map(|all| {
                all.iter()
                    .filter(|b| {
                        b.hotel == hotel
                            && b.check_in <= day
                            && i64::from(day.0 - b.check_in.0) < b.nights
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl ServicesWorker {
    fn add_bookings(&self, batch: &RecordBatch) -> Result<(), String> {
        let (residents, hotels, rooms) = (
            text_column(batch, "resident_id")?,
            text_column(batch, "hotel")?,
            text_column(batch, "room")?,
        );
        let days = batch
            .column_by_name("check_in")
            .and_then(|c| c.as_primitive_opt::<Date32Type>())
            .ok_or("no date column check_in")?;
        let nights = ints(batch, "nights")?;
        let mut map = self.live.bookings.lock().expect("bookings lock");
        for i in 0..batch.num_rows() {
            let entry = map.entry(residents.value(i).to_string()).or_default();
            let booking = super::verify::Booking {
                hotel: hotels.value(i).to_string(),
                room: rooms.value(i).to_string(),
                check_in: Date(days.value(i)),
                nights: nights.value(i),
            };
            if !entry.contains(&booking) {
                entry.push(booking);
            }
        }
        Ok(())
    }

    fn add_grids(&self, batch: &RecordBatch) -> Result<(), String> {
        let (grids, workers) = (
            text_column(batch, "grid")?,
            text_column(batch, "worker_id")?,
        );
        let mut map = self.live.workers.lock().expect("workers lock");
        for i in 0..batch.num_rows() {
            map.insert(grids.value(i).to_string(), workers.value(i).to_string());
        }
        Ok(())
    }
}

/// A stored batch of one of the scene's inputs as facts.
fn updates(dataset: &str, batch: &RecordBatch) -> Result<Vec<Update>, String> {
    let text = |name| text_column(batch, name);
    let n = batch.num_rows();
    let mut out = Vec::with_capacity(n);
    match dataset {
        citybrain_services::RESIDENTS => {
            let (ids, names, sexes, households, communities, grids, statuses) = (
                text("resident_id")?,
                text("name")?,
                text("sex")?,
                text("household_id")?,
                text("community")?,
                text("grid")?,
                text("status")?,
            );
            let births = batch
                .column_by_name("birth_date")
                .and_then(|c| c.as_primitive_opt::<Date32Type>())
                .ok_or("no date column birth_date")?;
            let homes = alarms::points(batch, "home")?;
            let (local, at) = (
                bools(batch, "local_hukou")?,
                timestamps(batch, "recorded_at")?,
            );
            for i in 0..n {
                out.push(Update::Resident(ResidentRow {
                    resident_id: ids.value(i).to_string(),
                    name: names.value(i).to_string(),
                    sex: sexes.value(i).to_string(),
                    birth_date: Date(births.value(i)),
                    household_id: households.value(i).to_string(),
                    community: communities.value(i).to_string(),
                    grid: grids.value(i).to_string(),
                    home: alarms::point(homes, i),
                    local_hukou: local.value(i),
                    status: statuses.value(i).to_string(),
                    recorded_at: Timestamp(at.value(i)),
                }));
            }
        }
        citybrain_services::CERTIFICATES => {
            let (ids, residents, categories, statuses) = (
                text("certificate_id")?,
                text("resident_id")?,
                text("category")?,
                text("status")?,
            );
            let (levels, at) = (ints(batch, "level")?, timestamps(batch, "issued_at")?);
            for i in 0..n {
                out.push(Update::Certificate(CertificateRow {
                    certificate_id: ids.value(i).to_string(),
                    resident_id: residents.value(i).to_string(),
                    level: levels.value(i),
                    category: categories.value(i).to_string(),
                    status: statuses.value(i).to_string(),
                    issued_at: Timestamp(at.value(i)),
                }));
            }
        }
        citybrain_services::INCOMES => {
            let (ids, households) = (text("assessment_id")?, text("household_id")?);
            let (incomes, at) = (
                ints(batch, "income_per_person")?,
                timestamps(batch, "assessed_at")?,
            );
            for i in 0..n {
                out.push(Update::Income(IncomeRow {
                    assessment_id: ids.value(i).to_string(),
                    household_id: households.value(i).to_string(),
                    income_per_person: incomes.value(i),
                    assessed_at: Timestamp(at.value(i)),
                }));
            }
        }
        citybrain_services::INSURANCE => {
            let residents = text("resident_id")?;
            let (employed, pensions, at) = (
                bools(batch, "employed")?,
                ints(batch, "pension")?,
                timestamps(batch, "updated_at")?,
            );
            for i in 0..n {
                out.push(Update::Insurance(InsuranceRow {
                    resident_id: residents.value(i).to_string(),
                    employed: employed.value(i),
                    pension: pensions.value(i),
                    updated_at: Timestamp(at.value(i)),
                }));
            }
        }
        citybrain_services::ENROLMENTS => {
            let (ids, residents, services) = (
                text("enrolment_id")?,
                text("resident_id")?,
                text("service")?,
            );
            let at = timestamps(batch, "enrolled_at")?;
            for i in 0..n {
                out.push(Update::Enrolment(EnrolmentRow {
                    enrolment_id: ids.value(i).to_string(),
                    resident_id: residents.value(i).to_string(),
                    service: services.value(i).to_string(),
                    enrolled_at: Timestamp(at.value(i)),
                }));
            }
        }
        other => return Err(format!("not an input of the services scene: {other}")),
    }
    Ok(out)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TasksParams {
    /// The grid, e.g. C0001-G3.
    grid: String,
    /// Only tasks in this state: open, accepted, done, refused or escalated.
    #[serde(default)]
    state: Option<String>,
    /// Why you read them (kept in the audit trail).
    #[serde(default)]
    purpose: String,
}

/// An id that goes into a SQL literal or a lookup (a grid, a resident): 1 to 40 letters,
/// digits, `-` or `_`; refused with `code` naming `field` otherwise.
pub(crate) fn check_key(field: &str, value: &str, code: ErrorCode) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 40
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            code,
            format!(
                "{field}: give 1 to 40 letters, digits, - or _ (got {:?})",
                value.chars().take(50).collect::<String>()
            ),
        ))
    }
}

/// A grid's tasks, soonest deadline first, each with its state: read as the caller, so
/// the resident's fields are masked as the caller's grants say (a grid worker's grant names
/// what they see raw), and audited.
#[utoipa::path(get, path = "/services/tasks", tag = "services", params(TasksParams), responses((status = 200, description = "The grid's tasks: what, for whom (masked by your grants), why, due by, state", body = Object)))]
async fn list_tasks(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<TasksParams>,
) -> Result<Response, ApiError> {
    check_key("grid", &params.grid, ErrorCode::InvalidQuery)?;
    let wanted = match &params.state {
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("state: open, accepted, done, refused or escalated (got {s:?})"),
            )
        })?),
        None => None,
    };
    let live = state.scenes.handle::<LiveServices>("services")?;
    // The grid is checked to letters, digits, - and _ above, so it is safe in a literal.
    let sql = format!(
        "SELECT task_id, service, title, department, resident_id, resident_name, home, community, grid, worker_id, opened_at, due_at, why \
           FROM {} WHERE grid = '{}' ORDER BY due_at, task_id LIMIT 10000",
        citybrain_services::TASKS,
        params.grid
    );
    let call = DataCall {
        reader: Reader::Principal(me),
        purpose: if params.purpose.is_empty() {
            format!("the tasks of grid {}", params.grid)
        } else {
            params.purpose
        },
        kind: CallKind::Sql,
        now: now(),
    };
    let result = state.sql.query_as(&sql, &call).await?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&citybrain_sql::encode(&result, ResultFormat::Json)?)
            .map_err(|e| ApiError::internal(e.to_string()))?;
    let engine = live.engine.lock().expect("services lock");
    let tasks: Vec<serde_json::Value> = rows
        .into_iter()
        .filter_map(|mut row| {
            let id = row["task_id"].as_str()?.to_string();
            let task_state = engine.tasks.get(&id).map_or(TaskState::Open, |t| t.state);
            if wanted.is_some_and(|w| w != task_state) {
                return None;
            }
            row["state"] = json!(task_state.name());
            Some(row)
        })
        .collect();
    Ok(Json(json!({ "grid": params.grid, "tasks": tasks })).into_response())
}

/// A move of a task by a person.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct TaskMove {
    /// accepted, done or refused.
    pub state: String,
    /// Why (required to refuse).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Moves a task on: `accepted`, `done`, or `refused` with a reason; an escalated task is
/// done or refused by the community office. Grid workers (the community department, as
/// publisher or admin) and the service's own department may move a task. Each state is
/// stored once: asking again for the state a task is in answers `already`.
#[utoipa::path(post, path = "/services/tasks/{task_id}", tag = "services", params(("task_id" = String, Path, description = "The task, e.g. T0000042")), request_body(content = TaskMove, content_type = "application/json"), responses((status = 200, description = "The task's new state", body = Object)))]
async fn move_task(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(task_id): Path<String>,
    Json(request): Json<TaskMove>,
) -> Result<Response, ApiError> {
    let to = match TaskState::parse(&request.state) {
        Some(s @ (TaskState::Accepted | TaskState::Done | TaskState::Refused)) => s,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidBody,
                format!(
                    "state: accepted, done or refused (got {:?}); escalation is citybrain's",
                    request.state.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(r) = reason
        && (r.chars().count() > 500 || r.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            "reason: at most 500 characters, no control characters",
        ));
    }
    if to == TaskState::Refused && reason.is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            "reason: say why the task is refused (the resident declined, moved away, ...)",
        ));
    }
    let live = state.scenes.handle::<LiveServices>("services")?;
    let reason = reason.map(str::to_string);
    let (hub, gov) = (state.hub.clone(), state.gov.clone());
    let answer = blocking(move || {
        // Held while the event is stored, so two calls cannot both move one task.
        let mut engine = live.engine.lock().expect("services lock");
        let task = engine
            .tasks
            .get(&task_id)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::TaskNotFound,
                    format!("no task {task_id}"),
                )
            })?;
        let department = engine
            .rules
            .services
            .iter()
            .find(|s| s.name == task.service)
            .map(|s| s.department.clone())
            .unwrap_or_default();
        let may = (me.department.as_str() == "community" && me.role >= Role::Publisher)
            || me.department.as_str() == department;
        if !may {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!(
                    "tasks are moved by grid workers (the community department, publisher or admin) or by {department}, whose service it is"
                ),
            ));
        }
        if task.state == to {
            return Ok(json!({"task_id": task.id, "state": to.name(), "already": true}));
        }
        engine.tasks.check_move(&task_id, to).map_err(|e| {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::TaskMoveRefused, e.to_string())
        })?;
        let row = EventRow {
            event_id: format!("{task_id}/{}", to.name()),
            task_id: &task_id,
            service: &task.service,
            grid: &task.grid,
            state: to.name(),
            at: now().to_string(),
            by: me.name.as_str(),
            reason: reason.as_deref(),
        };
        let mut body = serde_json::to_vec(&row).map_err(|e| ApiError::internal(e.to_string()))?;
        body.push(b'\n');
        let name = DatasetName::parse(citybrain_services::TASK_EVENTS).expect("a valid name");
        let mut call = crate::read_call(
            &me,
            &[citybrain_services::TASK_EVENTS],
            &format!("POST /api/v1/services/tasks/{task_id} {}", to.name()),
        );
        call.kind = CallKind::Ingest;
        call.rows = 1;
        gov.record(call)?;
        hub.ingest(&name, Format::Ndjson, &body, OnError::Reject, now())?;
        engine.tasks.set_state(&task_id, to);
        Ok(json!({"task_id": task_id, "state": to.name(), "already": false}))
    })
    .await?;
    Ok(Json(answer).into_response())
}
