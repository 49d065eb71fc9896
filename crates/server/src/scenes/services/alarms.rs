//! Alarms to the nearest grid worker (issue 26, item 3), live: positions and alarms come
//! through the change feed (`community.worker_positions`, `community.alarms`, by HTTP or an
//! MQTT feed mapping), `citybrain_services::dispatch` picks the worker by road over
//! `transport.links`, a ticker on the wall clock replaces a worker who did not acknowledge
//! within a minute and escalates an alarm nobody reached in three, and workers report with
//! `POST /api/v1/services/alarms/{alarm_id}`. Every step is a row of `services.alarm_steps`.
//!
//! An alarm is dispatched once: the ids with stored steps are loaded at start and not raised
//! again. Known gap: an alarm still open when the server stops is not resumed after the
//! restart (its steps so far are stored; the office sees it unfinished).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch, StructArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_core::{GeoPoint, Timestamp};
use citybrain_gov::{CallKind, Principal, Role};
use citybrain_hub::Hub;
use citybrain_services::dispatch::{Alarm, Dispatcher, Roads, Step, StepKind, Workers};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ErrorCode;
use crate::extract::Json;
use crate::scene::{SceneContext, text_column, text_values};
use crate::{ApiError, AppState, blocking, now};

/// The roads, the workers where they last reported, the alarms being handled.
#[derive(Default)]
pub(crate) struct Desk {
    roads: Roads,
    workers: Workers,
    dispatcher: Dispatcher,
    /// Alarms dispatched (now or before a restart).
    seen: HashSet<String>,
}

pub(crate) type SharedDesk = Arc<Mutex<Desk>>;

pub(super) fn point(column: &StructArray, i: usize) -> Option<GeoPoint> {
    if column.is_null(i) {
        return None;
    }
    let lon = column
        .column_by_name("lon")?
        .as_primitive_opt::<Float64Type>()?;
    let lat = column
        .column_by_name("lat")?
        .as_primitive_opt::<Float64Type>()?;
    Some(GeoPoint {
        lon: lon.value(i),
        lat: lat.value(i),
    })
}

pub(super) fn points<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StructArray, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_struct_opt())
        .ok_or_else(|| format!("no point column {name}"))
}

/// The desk, with the road network from `transport.checkpoints` and `transport.links`
/// (none when the city has not published them: every alarm then escalates at once) and the
/// alarms already dispatched.
pub(crate) async fn open(ctx: &SceneContext) -> Result<Desk, String> {
    let mut desk = Desk::default();
    if ctx.has("transport.checkpoints") && ctx.has("transport.links") {
        let nodes = ctx
            .sql
            .query("SELECT checkpoint_id, loc FROM transport.checkpoints")
            .await
            .map_err(|e| e.to_string())?;
        let mut index: HashMap<i64, u32> = HashMap::new();
        let mut at = Vec::new();
        for batch in &nodes.batches {
            let ids = batch
                .column_by_name("checkpoint_id")
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or("no int column checkpoint_id")?;
            let locs = points(batch, "loc")?;
            for i in 0..batch.num_rows() {
                if let Some(p) = point(locs, i) {
                    index.entry(ids.value(i)).or_insert_with(|| {
                        at.push(p);
                        (at.len() - 1) as u32
                    });
                }
            }
        }
        let links = ctx
            .sql
            .query("SELECT from_checkpoint, to_checkpoint, length_m FROM transport.links")
            .await
            .map_err(|e| e.to_string())?;
        let mut edges = Vec::new();
        for batch in &links.batches {
            let int = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
                    .ok_or_else(|| format!("no int column {name}"))
            };
            let (from, to) = (int("from_checkpoint")?, int("to_checkpoint")?);
            let length = batch
                .column_by_name("length_m")
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .ok_or("no float column length_m")?;
            for i in 0..batch.num_rows() {
                if let (Some(a), Some(b)) = (index.get(&from.value(i)), index.get(&to.value(i))) {
                    edges.push((*a, *b, length.value(i)));
                }
            }
        }
        desk.roads = Roads::new(at, &edges);
    }
    let stored = ctx
        .sql
        .query(&format!(
            "SELECT DISTINCT alarm_id FROM {}",
            citybrain_services::ALARM_STEPS
        ))
        .await
        .map_err(|e| e.to_string())?;
    desk.seen.extend(text_values(&stored.batches, "alarm_id")?);
    Ok(desk)
}

impl Desk {
    /// Workers' position reports.
    pub(crate) fn positions(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let (ids, grids) = (
            text_column(batch, "worker_id")?,
            text_column(batch, "grid")?,
        );
        let locs = points(batch, "loc")?;
        let duty = batch
            .column_by_name("on_duty")
            .and_then(|c| c.as_boolean_opt())
            .ok_or("no bool column on_duty")?;
        for i in 0..batch.num_rows() {
            if let Some(p) = point(locs, i) {
                let busy = self
                    .workers
                    .index_of(ids.value(i))
                    .is_some_and(|w| self.workers.get(w).busy);
                self.workers
                    .set(&self.roads, ids.value(i), grids.value(i), p, duty.value(i));
                if let Some(w) = self.workers.index_of(ids.value(i)) {
                    self.workers.set_busy(w, busy);
                }
            }
        }
        Ok(())
    }

    /// Alarms not dispatched yet: each to the nearest available worker now.
    pub(crate) fn alarms(
        &mut self,
        batch: &RecordBatch,
        now: Timestamp,
    ) -> Result<Vec<Step>, String> {
        let (ids, kinds) = (text_column(batch, "alarm_id")?, text_column(batch, "kind")?);
        let locs = points(batch, "loc")?;
        let raised = batch
            .column_by_name("raised_at")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or("no timestamp column raised_at")?;
        let mut steps = Vec::new();
        for i in 0..batch.num_rows() {
            let (Some(loc), id) = (point(locs, i), ids.value(i)) else {
                continue;
            };
            if !self.seen.insert(id.to_string()) {
                continue;
            }
            let alarm = Alarm {
                alarm_id: id.to_string(),
                kind: kinds.value(i).to_string(),
                loc,
                raised_at: Timestamp(raised.value(i)),
            };
            steps.extend(
                self.dispatcher
                    .raise(&self.roads, &mut self.workers, alarm, now),
            );
        }
        Ok(steps)
    }

    pub(crate) fn tick(&mut self, now: Timestamp) -> Vec<Step> {
        self.dispatcher.tick(&self.roads, &mut self.workers, now)
    }
}

#[derive(Serialize)]
struct StepRow<'a> {
    step_id: String,
    alarm_id: &'a str,
    step: &'static str,
    worker_id: Option<&'a str>,
    at: String,
    eta_s: Option<f64>,
    why: Option<&'static str>,
}

/// Stores steps (a failure is logged: the scene goes on).
pub(crate) fn store(hub: &Hub, events: &tokio::sync::broadcast::Sender<Arc<str>>, steps: &[Step]) {
    let rows: Vec<StepRow> = steps
        .iter()
        .map(|s| StepRow {
            step_id: format!("{}/{}", s.alarm_id, s.seq),
            alarm_id: &s.alarm_id,
            step: s.kind.name(),
            worker_id: s.worker.as_deref(),
            at: s.at.to_string(),
            eta_s: match s.kind {
                StepKind::Assigned { eta_s } => Some((eta_s * 10.0).round() / 10.0),
                _ => None,
            },
            why: match s.kind {
                StepKind::Escalated { why } => Some(why),
                _ => None,
            },
        })
        .collect();
    crate::scene::store(hub, citybrain_services::ALARM_STEPS, &rows, events);
}

/// Runs the SLA clock every second until `stop`.
pub(crate) fn ticker(
    desk: SharedDesk,
    hub: Arc<Hub>,
    events: tokio::sync::broadcast::Sender<Arc<str>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let steps = desk.lock().expect("desk lock").tick(now());
            store(&hub, &events, &steps);
        }
    })
}

/// A worker's report on an alarm.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct AlarmReport {
    /// The worker reporting, e.g. W00003.
    pub worker_id: String,
    /// acknowledged (on my way) or on_site.
    pub state: String,
}

/// A grid worker reports on the alarm they were asked to go to: `acknowledged` (on the
/// way; otherwise the next worker is asked a minute after this one was) or `on_site`.
/// For the community department (publisher or admin).
#[utoipa::path(post, path = "/services/alarms/{alarm_id}", tag = "services", params(("alarm_id" = String, Path, description = "The alarm, as its sender named it")), request_body(content = AlarmReport, content_type = "application/json"), responses((status = 200, description = "The steps stored", body = Object)))]
pub(crate) async fn report(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(alarm_id): Path<String>,
    Json(body): Json<AlarmReport>,
) -> Result<Response, ApiError> {
    if me.department.as_str() != "community" || me.role < Role::Publisher {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "alarms are reported on by grid workers (the community department, publisher or admin)",
        ));
    }
    let on_site = match body.state.as_str() {
        "acknowledged" => false,
        "on_site" => true,
        other => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidBody,
                format!(
                    "state: acknowledged or on_site (got {:?})",
                    other.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    let live = state.scenes.handle::<super::LiveServices>("services")?;
    let (hub, gov, events) = (state.hub.clone(), state.gov.clone(), state.events.clone());
    let answer = blocking(move || {
        let mut desk = live.desk.lock().expect("desk lock");
        let desk = &mut *desk;
        let w = desk.workers.index_of(&body.worker_id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("no worker {} has reported a position", body.worker_id.chars().take(40).collect::<String>()),
            )
        })?;
        let at = now();
        let steps = if on_site {
            desk.dispatcher.on_site(&mut desk.workers, &alarm_id, w, at)
        } else {
            desk.dispatcher.acknowledge(&desk.workers, &alarm_id, w, at)
        }
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string()))?;
        let mut call = crate::read_call(
            &me,
            &[citybrain_services::ALARM_STEPS],
            &format!("POST /api/v1/services/alarms/{alarm_id} {}", body.state),
        );
        call.kind = CallKind::Ingest;
        call.rows = steps.len() as u64;
        gov.record(call)?;
        store(&hub, &events, &steps);
        Ok(json!({
            "alarm_id": alarm_id,
            "steps": steps.iter().map(|s| json!({"step": s.kind.name(), "seq": s.seq, "at": s.at.to_string()})).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(Json(answer).into_response())
}
