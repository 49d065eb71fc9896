//! The parking scene's start (lots, what was stored before a restart) and its routes.

use std::sync::{Arc, RwLock};

use crate::extract::Query;
use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use citybrain_core::DatasetName;
use citybrain_gov::{CallKind, Principal};
use citybrain_hub::Positions;
use citybrain_sql::ResultFormat;
use citybrain_sql::{DataCall, Reader};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{GATE_EVENTS, LiveParking, ParkingWorker, SENSOR_EVENTS, Stored, lots_from_batch};
use crate::error::ErrorCode;
use crate::scene::{Running, Scene, SceneContext, Started};
use crate::{ApiError, AppState, blocking, now};

pub struct ParkingScene;

impl Scene for ParkingScene {
    fn name(&self) -> &'static str {
        "parking"
    }

    fn about(&self) -> &'static str {
        "Parking: free berths and guidance, leave first and pay later, anomalies"
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        citybrain_parking::DEFINITIONS.to_vec()
    }

    /// In a cluster, sessions open across midnight: the last two days, as its warm-up on one machine.
    fn replay_window(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(2 * 24 * 3600))
    }

    fn inputs(&self) -> Vec<&'static str> {
        vec![GATE_EVENTS, SENSOR_EVENTS]
    }

    fn page(&self) -> Option<&'static str> {
        Some("parking")
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(parking_guide))
            .routes(routes!(parking_overdue))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move { start(ctx, committed).await.map_err(|e| e.to_string()) })
    }
}

/// The rows' first timestamp column, as one value.
fn first_time(batches: &[arrow::array::RecordBatch]) -> Option<citybrain_core::Timestamp> {
    batches
        .first()?
        .column(0)
        .as_primitive_opt::<TimestampMicrosecondType>()?
        .iter()
        .flatten()
        .next()
        .map(citybrain_core::Timestamp)
}

/// Starts the scene when `parking.lots` has lots. A restart replays the last two days of
/// reads applied before the last commit (sessions open then close with a bill, and bills
/// a crash kept from being stored are issued, once); the feed then hands over the rest.
async fn start(ctx: &SceneContext, committed: Positions) -> Result<Started, ApiError> {
    if !ctx.has("parking.lots") {
        return Ok(Started::Idle(
            "no lots to manage: load parking.lots (the demo city has them)".into(),
        ));
    }
    let mut lots = Vec::new();
    for batch in ctx.sql.query("SELECT * FROM parking.lots").await?.batches {
        lots.extend(
            lots_from_batch(&batch, &ctx.config.city.time_zone).map_err(ApiError::internal)?,
        );
    }
    if lots.is_empty() {
        return Ok(Started::Idle(
            "parking.lots has no lots: load some and restart".into(),
        ));
    }
    for lot in &lots {
        ctx.alerts.set_place(
            citybrain_alerts::AlertKind::LotFull,
            i64::from(lot.id.0),
            lot.loc,
        );
    }
    let parking =
        citybrain_parking::Parking::new(lots, citybrain_parking::SessionConfig::default())
            .map_err(|e| ApiError::internal(format!("parking.lots: {e}")))?;
    let mut stored = Stored::default();
    for batch in ctx
        .sql
        .query("SELECT bill_id FROM parking.bills")
        .await?
        .batches
    {
        stored
            .bills
            .extend(batch.column(0).as_primitive::<Int64Type>().iter().flatten());
    }
    let index = DatasetName::parse("parking.index").expect("a valid name");
    let stored_before = ctx.hub.snapshot(&index)?.rows() > 0;
    let inputs: Vec<DatasetName> = [GATE_EVENTS, SENSOR_EVENTS]
        .iter()
        .map(|n| DatasetName::parse(n).expect("valid names"))
        .collect();
    let from = if !committed.is_empty() {
        committed
    } else if stored_before && !ctx.hub.reads_other_nodes() {
        // Outputs stored before positions were committed: everything stored was applied.
        // (Not in a cluster, where it starts from every node's whole history.)
        inputs
            .iter()
            .filter_map(|n| Some((n.clone(), ctx.hub.head(n)?)))
            .collect()
    } else {
        Positions::new()
    };
    let mut warm = Vec::new();
    if !from.is_empty() {
        stored.index_up_to = first_time(
            &ctx.sql
                .query("SELECT max(at) FROM parking.index")
                .await?
                .batches,
        );
        let window = "ts > (SELECT max(ts) FROM parking.gate_events) - INTERVAL '2 days'";
        if ctx.has(GATE_EVENTS) {
            let rows = ctx
                .sql
                .query(&format!(
                    "SELECT ts, lot_id, plate, kind FROM parking.anomalies WHERE {window}"
                ))
                .await?;
            for batch in rows.batches {
                let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
                let lot = batch.column(1).as_primitive::<Int64Type>();
                let text = |i: usize| {
                    arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8)
                        .map_err(|e| ApiError::internal(e.to_string()))
                };
                let (plate, kind) = (text(2)?, text(3)?);
                let (plate, kind) = (plate.as_string::<i32>(), kind.as_string::<i32>());
                for i in 0..batch.num_rows() {
                    stored.anomalies.insert((
                        ts.value(i),
                        lot.value(i),
                        plate.value(i).to_string(),
                        kind.value(i).to_string(),
                    ));
                }
            }
        }
        if ctx.has(GATE_EVENTS) && ctx.has(SENSOR_EVENTS) {
            let applied = |name: &str| {
                let position = DatasetName::parse(name)
                    .ok()
                    .and_then(|n| from.get(&n).copied())
                    .map_or(i64::MIN, |p| p.0);
                format!("CAST(_ingested_at AS BIGINT) <= {position}")
            };
            // Gate reads and sensor readings applied before the restart, in one time order.
            warm = ctx
                .sql
                .query(&format!(
                    "SELECT * FROM (\
                       SELECT ts, lot_id, plate, direction, CAST(NULL AS VARCHAR) AS spot, CAST(NULL AS VARCHAR) AS status, CAST(NULL AS BIGINT) AS available FROM {GATE_EVENTS} WHERE {} \
                       UNION ALL \
                       SELECT ts, lot_id, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), spot, status, available FROM {SENSOR_EVENTS} WHERE {}) \
                     WHERE {window} ORDER BY ts",
                    applied(GATE_EVENTS),
                    applied(SENSOR_EVENTS)
                ))
                .await?
                .batches;
        }
    }
    let state = Arc::new(RwLock::new(parking));
    let applied = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let worker = ParkingWorker {
        ctx: ctx.clone(),
        state: state.clone(),
        stored,
        applied: applied.clone(),
        warm,
    };
    Ok(Started::Running(Running {
        handle: Arc::new(LiveParking { state, applied }),
        worker: Some(Box::new(worker)),
        from,
        on_stop: None,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct GuideParams {
    lat: f64,
    lon: f64,
    #[serde(default = "default_radius")]
    radius_m: f64,
    #[serde(default)]
    arrive_in_min: u32,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_radius() -> f64 {
    2_500.0
}

fn default_limit() -> usize {
    10
}

/// Lots near a place, most likely to have a free berth on arrival first.
#[utoipa::path(get, path = "/parking/guide", tag = "parking", params(GuideParams), responses((status = 200, description = "Lots near the place ranked by the chance of a free berth on arrival", body = Object)))]
async fn parking_guide(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<GuideParams>,
) -> Result<Response, ApiError> {
    let parking = state.scenes.handle::<LiveParking>("parking")?;
    let at = citybrain_core::GeoPoint::new(params.lon, params.lat)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidLocation, format!("lat/lon: {e}")))?;
    if !(params.radius_m > 0.0 && params.radius_m <= 20_000.0) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRadius,
            "radius_m must be above 0 and at most 20000",
        ));
    }
    let query = citybrain_parking::GuideQuery {
        at,
        radius_m: params.radius_m,
        arrive_in_min: params.arrive_in_min.min(24 * 60),
        limit: params.limit.clamp(1, 100),
    };
    // The audit append waits for its group commit (an fsync): off the async workers, so a
    // wait does not hold up other requests.
    let gov = state.gov.clone();
    let lots = blocking(move || {
        let lots = parking.guide(&query);
        let mut call = crate::read_call(
            &me,
            &["parking.lots", "parking.index"],
            "GET /api/v1/parking/guide",
        );
        call.rows = lots.len() as u64;
        gov.record(call)?;
        Ok(lots)
    })
    .await?;
    Ok(Json(json!({ "lots": lots })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OverdueParams {
    /// Hours a driver has to pay after leaving (default 48).
    #[serde(default = "default_grace")]
    grace_hours: u32,
    #[serde(default)]
    purpose: String,
}

fn default_grace() -> u32 {
    48
}

/// Bills with no payment once the grace period after the exit has passed: the follow-up
/// list. A governed SQL call as the caller, so plates are masked unless a grant says
/// otherwise, and the call is audited.
#[utoipa::path(get, path = "/parking/overdue", tag = "parking", params(OverdueParams), responses((status = 200, description = "Bills unpaid past the grace period (a JSON array)", body = Object)))]
async fn parking_overdue(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<OverdueParams>,
) -> Result<Response, ApiError> {
    let grace = params.grace_hours.min(24 * 365);
    let at = now();
    let sql = format!(
        "SELECT b.bill_id, b.lot_id, b.plate, b.entry, b.exit, b.amount \
           FROM parking.bills b LEFT JOIN parking.payments p ON b.bill_id = p.bill_id \
          WHERE p.bill_id IS NULL AND b.exit + INTERVAL '{grace} hours' < TIMESTAMP '{at}' \
          ORDER BY b.exit"
    );
    let call = DataCall {
        reader: Reader::Principal(me),
        purpose: if params.purpose.is_empty() {
            format!("parking bills unpaid {grace} hours after exit")
        } else {
            params.purpose
        },
        kind: CallKind::Read,
        now: at,
    };
    let result = state.sql.query_as(&sql, &call).await?;
    let bytes = citybrain_sql::encode(&result, ResultFormat::Json)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
