//! The alerts scene: the traffic and parking scenes hand the board what they compute (closed
//! link bins, lot occupancy); its changes land in `alerts.events` and on the city's event
//! stream, and `GET /api/v1/alerts` lists the open ones. The board itself is created by the
//! server before any scene starts (every scene may raise alerts); this scene restores it
//! and serves it.
//!
//! After a restart each scene replays what it had stored; the board is rebuilt from that
//! replay without storing its changes again. The first live batch of each kind then
//! reconciles the board with what the dataset says is open, so an alert a crash kept from
//! being stored is stored then, and none is stored twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use citybrain_alerts::threshold::{self, ThresholdBoard};
use citybrain_alerts::{
    Active, AlertBoard, AlertEvent, AlertKind, AlertRules, LinkBin, LotReading, State, Subject,
};
use citybrain_core::{GeoPoint, Timestamp};
use citybrain_hub::Hub;
use citybrain_indices::LinkTravel;
use citybrain_parking::ParkingIndexRow;
use tokio::sync::broadcast;

use axum::extract::Extension;
use axum::response::{IntoResponse, Json, Response};
use citybrain_gov::Principal;
use citybrain_hub::Positions;
use futures::future::BoxFuture;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::scene::{Running, Scene, SceneContext, Started};
use crate::{ApiError, AppState};

pub struct AlertsScene;

impl Scene for AlertsScene {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn about(&self) -> &'static str {
        "Congestion and full-lot alerts: opened and closed by rules over the indices"
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        vec![citybrain_alerts::DEFINITION]
    }

    fn page(&self) -> Option<&'static str> {
        Some("overview")
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new().routes(routes!(alerts_active))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            // What the dataset says is open; the first live batch of each kind reconciles it.
            let stored = ctx
                .sql
                .query(STORED_OPEN_SQL)
                .await
                .map_err(|e| e.to_string())?;
            for batch in stored.batches {
                ctx.alerts.restore(&batch)?;
            }
            Ok(Started::Running(Running {
                handle: Arc::new(ctx.alerts.clone()),
                worker: None,
                from: Positions::new(),
                on_stop: None,
            }))
        })
    }
}

/// The open alerts (worst first per kind) with the rules that open and close them, and the
/// risk warnings in force (period not ended or ended within a week; `warnings.raised`);
/// the alerts' history is the dataset `alerts.events`.
#[utoipa::path(get, path = "/alerts", tag = "alerts", responses((status = 200, description = "Open alerts with the rules that open and close them", body = Object)))]
async fn alerts_active(
    axum::extract::State(state): axum::extract::State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let board = state.scenes.handle::<LiveAlerts>("alerts")?;
    let call = crate::read_call(
        &me,
        &[citybrain_alerts::DATASET, citybrain_warnings::RAISED],
        "GET /api/v1/alerts",
    );
    crate::record(&state, call).await?;
    let at = state
        .scenes
        .handle::<crate::scenes::indices::LiveIndices>("indices")
        .ok()
        .and_then(|live| live.latest())
        .map(|l| l.at);
    let rules = board.rules();
    // Risk warnings in force (数据碰撞预警), each addressed to the department owning the risk.
    let warnings = state
        .scenes
        .handle::<crate::scenes::warnings::LiveWarnings>("warnings")
        .map(|w| w.in_force(crate::now()))
        .unwrap_or_default();
    Ok(Json(json!({
        "at": at,
        "alerts": board.active(),
        "warnings": warnings,
        "rules": {
            "congestion": format!(
                "delay index >= {} for {} bins of 15 minutes with >= {} traversals each; closes under {}",
                rules.congestion_open, rules.congestion_bins, rules.min_traversals, rules.congestion_close
            ),
            "lot_full": format!("parking index >= {}; closes under {}", rules.lot_open, rules.lot_close),
            "threshold": board.threshold_rules().map(|r| r.rules.iter().map(|r| json!({
                "id": r.id, "dataset": r.dataset, "rule": r.describe(), "title": r.title,
            })).collect::<Vec<_>>()).unwrap_or_default(),
        },
    }))
    .into_response())
}

/// The SQL that finds the alerts the dataset says are open (the last change of each).
pub const STORED_OPEN_SQL: &str = "SELECT at, alert_id, kind, subject_id, subject_ref, district, loc, value, since, detail FROM \
     (SELECT *, row_number() OVER (PARTITION BY alert_id ORDER BY at DESC, state = 'closed' DESC) AS rn \
      FROM alerts.events) WHERE rn = 1 AND state = 'open'";

#[derive(Debug)]
struct Inner {
    board: AlertBoard,
    /// Threshold alerts, once the thresholds scene has started.
    thresholds: Option<ThresholdBoard>,
    /// Every (alert id, state) of a threshold alert stored: a reading the feed hands over
    /// again after a crash stores nothing twice.
    threshold_stored: HashSet<(String, State)>,
    /// Per kind, the open alerts stored before a restart, until the first live batch.
    to_reconcile: HashMap<AlertKind, Vec<AlertEvent>>,
}

#[derive(Debug, Clone)]
pub struct LiveAlerts {
    inner: Arc<Mutex<Inner>>,
    hub: Arc<Hub>,
    events: broadcast::Sender<Arc<str>>,
}

impl LiveAlerts {
    pub fn new(hub: Arc<Hub>, events: broadcast::Sender<Arc<str>>, rules: AlertRules) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                board: AlertBoard::new(rules),
                thresholds: None,
                threshold_stored: HashSet::new(),
                to_reconcile: HashMap::new(),
            })),
            hub,
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The board is never left half-changed by a panic elsewhere: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_place(&self, kind: AlertKind, id: i64, at: GeoPoint) {
        self.lock().board.set_place(Subject { kind, id }, at);
    }

    /// The alerts stored as open before a restart (rows of [`STORED_OPEN_SQL`]).
    pub fn restore(&self, batch: &RecordBatch) -> Result<(), String> {
        let events = stored_open_from_batch(batch)?;
        let mut inner = self.lock();
        for e in events {
            // Threshold alerts are resumed by their own scene (see `start_thresholds`).
            if let Some(kind) = AlertKind::parse(e.kind)
                && kind != AlertKind::Threshold
            {
                inner.to_reconcile.entry(kind).or_default().push(e);
            }
        }
        Ok(())
    }

    pub fn rules(&self) -> AlertRules {
        self.lock().board.rules().clone()
    }

    pub fn active(&self) -> Vec<Active> {
        let inner = self.lock();
        let mut all = inner.board.active();
        if let Some(t) = &inner.thresholds {
            all.extend(t.active());
        }
        all
    }

    /// The thresholds scene's board, resumed from what was stored (`stored`: every
    /// (alert id, state) of a threshold alert in the dataset).
    pub fn start_thresholds(&self, board: ThresholdBoard, stored: HashSet<(String, State)>) {
        let mut inner = self.lock();
        inner.thresholds = Some(board);
        inner.threshold_stored = stored;
    }

    pub fn threshold_rules(&self) -> Option<threshold::Rules> {
        self.lock().thresholds.as_ref().map(|t| t.rules().clone())
    }

    /// Sensor readings (time order per sensor): stores and broadcasts the threshold alerts
    /// they open and close, each (alert, state) once.
    pub fn readings(&self, readings: &[threshold::Reading]) {
        let changes = {
            let mut inner = self.lock();
            let Inner {
                thresholds,
                threshold_stored,
                ..
            } = &mut *inner;
            let Some(board) = thresholds else {
                return;
            };
            board
                .readings(readings)
                .into_iter()
                .filter(|e| threshold_stored.insert((e.alert_id.clone(), e.state)))
                .collect::<Vec<_>>()
        };
        self.emit(changes);
    }

    /// Stores and broadcasts `changes` (nothing when `emit` is false: a replay).
    fn emit(&self, changes: Vec<AlertEvent>) {
        crate::scene::store(&self.hub, citybrain_alerts::DATASET, &changes, &self.events);
    }

    fn reconciled(&self, inner: &mut Inner, kind: AlertKind, now: Timestamp) -> Vec<AlertEvent> {
        match inner.to_reconcile.remove(&kind) {
            Some(stored) => inner.board.reconcile(kind, &stored, now),
            None => Vec::new(),
        }
    }

    /// Closed link bins from the traffic indices; `emit` is false while replaying. `now` (the
    /// stream's time) dates the changes a reconciliation after a restart makes.
    pub fn links(&self, rows: &[LinkTravel], now: Option<Timestamp>, emit: bool) {
        let bins: Vec<LinkBin> = rows
            .iter()
            .map(|r| LinkBin {
                bin: r.bin,
                link_id: r.link_id,
                district: r.district.clone(),
                delay_index: r.delay_index,
                traversals: r.traversals,
            })
            .collect();
        let mut changes = {
            let mut inner = self.lock();
            let mut changes = inner.board.links(&bins);
            if emit && let Some(now) = now {
                let mut fixes = self.reconciled(&mut inner, AlertKind::Congestion, now);
                fixes.append(&mut changes);
                fixes
            } else {
                changes
            }
        };
        if emit {
            changes.sort_by_key(|c| c.at);
            self.emit(changes);
        }
    }

    /// Lot occupancy from the parking scene (rows of other scopes are ignored).
    pub fn lots(&self, rows: &[ParkingIndexRow], emit: bool) {
        let readings: Vec<LotReading> = rows
            .iter()
            .filter(|r| r.scope == "lot")
            .filter_map(|r| {
                Some(LotReading {
                    at: r.at,
                    lot_id: r.id.parse().ok()?,
                    district: None,
                    parking_index: r.parking_index,
                    free: r.free,
                    capacity: r.capacity,
                })
            })
            .collect();
        let Some(now) = readings.iter().map(|r| r.at).max() else {
            return;
        };
        let changes = {
            let mut inner = self.lock();
            let changes = inner.board.lots(&readings);
            if emit {
                let mut fixes = self.reconciled(&mut inner, AlertKind::LotFull, now);
                fixes.extend(changes);
                fixes
            } else {
                changes
            }
        };
        if emit {
            self.emit(changes);
        }
    }
}

/// Parses rows of [`STORED_OPEN_SQL`].
fn stored_open_from_batch(batch: &RecordBatch) -> Result<Vec<AlertEvent>, String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("alerts.events: no column {name}"))
    };
    let text = |name: &str| -> Result<arrow::array::StringArray, String> {
        let c = arrow::compute::cast(col(name)?, &arrow::datatypes::DataType::Utf8)
            .map_err(|e| e.to_string())?;
        Ok(c.as_string::<i32>().clone())
    };
    let (alert_id, kind, district, detail, subject_ref) = (
        text("alert_id")?,
        text("kind")?,
        text("district")?,
        text("detail")?,
        text("subject_ref")?,
    );
    let at = col("at")?.as_primitive::<TimestampMicrosecondType>();
    let since = col("since")?.as_primitive::<TimestampMicrosecondType>();
    let subject_id = col("subject_id")?.as_primitive::<Int64Type>();
    let value = col("value")?.as_primitive::<Float64Type>();
    let loc = citybrain_hub::geo_points(col("loc")?)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for (i, loc) in loc.into_iter().enumerate() {
        let Some(kind) = AlertKind::parse(kind.value(i)) else {
            continue;
        };
        out.push(AlertEvent {
            at: Timestamp(at.value(i)),
            alert_id: alert_id.value(i).to_string(),
            kind: kind.name(),
            state: State::Open,
            subject: kind.subject_word(),
            subject_id: subject_id.value(i),
            subject_ref: subject_ref
                .is_valid(i)
                .then(|| subject_ref.value(i).to_string()),
            district: district.is_valid(i).then(|| district.value(i).to_string()),
            loc,
            value: value.value(i),
            since: Timestamp(since.value(i)),
            detail: detail.value(i).to_string(),
        });
    }
    Ok(out)
}
