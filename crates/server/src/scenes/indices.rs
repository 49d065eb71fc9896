//! The traffic indices scene: passages stored in `transport.anpr_passages` reach the
//! traffic operators through the change feed. Closed windows are stored in the `indices.*`
//! datasets (so SQL, grants and audit cover them) and, with the live view, broadcast on the
//! city's event stream; closed link bins feed the alert board.
//!
//! The stream's clock is the data's time, not the wall clock, so a replayed day closes its
//! windows as it goes; windows close when later passages arrive.
//!
//! After a restart the passages applied before the last commit within the last day and a
//! bit (today's census, the on-road window, open link windows) are replayed to rebuild the
//! operators' state, their outputs dropped; the feed then hands over what came after. A
//! crash between storing a batch's windows and committing its position stores that batch's
//! closed windows twice (the indices are not keyed); bills and alerts do not have this gap.

use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Json, Response};
use citybrain_core::DatasetName;
use citybrain_gov::Principal;
use citybrain_hub::{Change, Positions};
use citybrain_indices::{Link, Live, Outputs, TrafficConfig, TrafficIndices};
use futures::future::BoxFuture;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::scene::{Running, Scene, SceneContext, Started, Worker, store};
use crate::{ApiError, AppState};

/// The dataset whose records feed the traffic indices.
pub const PASSAGES: &str = "transport.anpr_passages";

/// The scene's handle: the latest live view.
#[derive(Debug, Clone, Default)]
pub struct LiveIndices {
    latest: Arc<Mutex<Option<Live>>>,
}

impl LiveIndices {
    pub fn latest(&self) -> Option<Live> {
        self.latest.lock().expect("latest lock").clone()
    }
}

pub struct IndicesScene;

impl Scene for IndicesScene {
    fn name(&self) -> &'static str {
        "indices"
    }

    fn about(&self) -> &'static str {
        "Traffic indices from plate reads: vehicles on the road, census, link travel times, delay index"
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        citybrain_indices::DEFINITIONS.to_vec()
    }

    /// In a cluster, the census of a day and the on-road window: the last day and a bit, as its warm-up on one machine.
    fn replay_window(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(26 * 3600))
    }

    fn inputs(&self) -> Vec<&'static str> {
        vec![PASSAGES]
    }

    fn page(&self) -> Option<&'static str> {
        Some("traffic")
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(traffic_live))
            .routes(routes!(indices_stream))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move { start(ctx, committed).await.map_err(|e| e.to_string()) })
    }
}

async fn start(ctx: &SceneContext, committed: Positions) -> Result<Started, ApiError> {
    let mut links = Vec::new();
    if ctx.has("transport.links") {
        for batch in ctx
            .sql
            .query("SELECT * FROM transport.links")
            .await?
            .batches
        {
            links.extend(citybrain_indices::links_from_batch(&batch).map_err(ApiError::internal)?);
        }
    }
    place_links(ctx, &links).await?;
    let passages = DatasetName::parse(PASSAGES).expect("a valid name");
    let on_road = DatasetName::parse("indices.on_road").expect("a valid name");
    let stored_before = ctx.hub.snapshot(&on_road)?.rows() > 0;
    // Where the feed starts, and up to where the warm-up replays.
    let from = match committed.get(&passages) {
        Some(_) => committed,
        // Indices stored before positions were committed: everything stored was applied.
        // (Not in a cluster, where the stored rows are every node's: there it starts
        // from the whole history, see `Scenes::start_one`.)
        None if stored_before && !ctx.hub.reads_other_nodes() => ctx
            .hub
            .head(&passages)
            .map(|p| Positions::from([(passages.clone(), p)]))
            .unwrap_or_default(),
        None => Positions::new(),
    };
    let mut warm = Vec::new();
    if let Some(up_to) = from.get(&passages) {
        // The last day and a bit of what was applied rebuilds the operators' state.
        let sql = format!(
            "SELECT ts, checkpoint_id, plate FROM {PASSAGES} \
             WHERE CAST(_ingested_at AS BIGINT) <= {up_to} \
               AND ts > (SELECT max(ts) FROM {PASSAGES} WHERE CAST(_ingested_at AS BIGINT) <= {up_to}) - INTERVAL '26 hours' \
             ORDER BY ts",
            up_to = up_to.0
        );
        warm = ctx.sql.query(&sql).await?.batches;
    }
    let handle = LiveIndices::default();
    let stored = StoredUpTo::read(ctx).await?;
    let worker = IndicesWorker {
        stored,
        fresh: from.is_empty() && !stored_before,
        indices: TrafficIndices::new(traffic_config(&ctx.config.city), links),
        ctx: ctx.clone(),
        handle: handle.clone(),
        warm,
    };
    Ok(Started::Running(Running {
        handle: Arc::new(handle),
        worker: Some(Box::new(worker)),
        from,
        on_stop: None,
    }))
}

/// Links' midpoints, so congestion alerts carry a place.
async fn place_links(ctx: &SceneContext, links: &[Link]) -> Result<(), ApiError> {
    if !ctx.has("transport.checkpoints") {
        return Ok(());
    }
    let mut places = std::collections::HashMap::new();
    let rows = ctx
        .sql
        .query("SELECT checkpoint_id, loc FROM transport.checkpoints")
        .await?;
    for batch in rows.batches {
        let id = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let loc = citybrain_hub::geo_points(batch.column(1)).map_err(ApiError::internal)?;
        for (i, point) in loc.into_iter().enumerate() {
            if let Some(point) = point {
                places.insert(id.value(i), point);
            }
        }
    }
    for link in links {
        if let (Some(a), Some(b)) = (places.get(&link.from), places.get(&link.to)) {
            ctx.alerts.set_place(
                citybrain_alerts::AlertKind::Congestion,
                link.link_id,
                citybrain_core::GeoPoint {
                    lon: (a.lon + b.lon) / 2.0,
                    lat: (a.lat + b.lat) / 2.0,
                },
            );
        }
    }
    Ok(())
}

/// The newest window each output dataset holds: a catch-up that replays windows already
/// stored (after a restart, or on the node that took the scene over, which replays every
/// node's history) stores only those after it. Windows close in time order and each
/// dataset's rows of a step are one ingest, so "after the newest stored" is exact.
#[derive(Debug, Default)]
struct StoredUpTo {
    census_day: Option<String>,
    census_hour: Option<i64>,
    census_so_far: Option<i64>,
    on_road: Option<i64>,
    link_travel: Option<i64>,
    delay: Option<i64>,
}

impl StoredUpTo {
    async fn read(ctx: &SceneContext) -> Result<Self, ApiError> {
        let newest = |dataset: &'static str, column: &'static str| async move {
            if !ctx.has(dataset) {
                return Ok::<_, ApiError>(None);
            }
            let sql = format!("SELECT CAST(max({column}) AS BIGINT) AS m FROM {dataset}");
            let rows = ctx.sql.query(&sql).await?;
            Ok(rows.batches.iter().find_map(|b| {
                let m = b
                    .column(0)
                    .as_primitive_opt::<arrow::datatypes::Int64Type>()?;
                (!m.is_empty() && m.is_valid(0)).then(|| m.value(0))
            }))
        };
        let mut census_day = None;
        if ctx.has("indices.census_daily") {
            let rows = ctx
                .sql
                .query("SELECT CAST(max(day) AS VARCHAR) AS m FROM indices.census_daily")
                .await?;
            for batch in &rows.batches {
                let days = crate::scene::text_column(batch, "m").map_err(ApiError::internal)?;
                if !days.is_empty() && days.is_valid(0) {
                    census_day = Some(days.value(0).to_string());
                }
            }
        }
        Ok(Self {
            census_day,
            census_hour: newest("indices.census_hourly", "hour").await?,
            census_so_far: newest("indices.census_so_far", "at").await?,
            on_road: newest("indices.on_road", "at").await?,
            link_travel: newest("indices.link_travel", "bin").await?,
            delay: newest("indices.delay", "bin").await?,
        })
    }

    /// Drops from `out` the windows already stored.
    fn keep_new(&self, out: &mut Outputs) {
        fn after(newest: Option<i64>) -> impl Fn(&citybrain_core::Timestamp) -> bool {
            move |t| newest.is_none_or(|n| t.0 > n)
        }
        if let Some(day) = &self.census_day {
            out.census_days
                .retain(|r| r.day.to_string().as_str() > day.as_str());
        }
        out.census_hours
            .retain(|r| after(self.census_hour)(&r.hour));
        out.census_so_far
            .retain(|r| after(self.census_so_far)(&r.at));
        out.on_road.retain(|r| after(self.on_road)(&r.at));
        out.link_travel.retain(|r| after(self.link_travel)(&r.bin));
        out.delay.retain(|r| after(self.delay)(&r.bin));
    }
}

struct IndicesWorker {
    /// The newest windows stored before this start: not stored again.
    stored: StoredUpTo,
    /// Nothing was applied before: the catch-up's alerts are new and stored as they open.
    /// Otherwise the catch-up may repeat batches applied before a crash, so its alerts are
    /// only learnt, and `caught_up` stores what the dataset lacks.
    fresh: bool,
    indices: TrafficIndices,
    ctx: SceneContext,
    handle: LiveIndices,
    /// Passages applied before the restart, replayed first.
    warm: Vec<RecordBatch>,
}

/// The indices' settings for `city`: its zone and local plates, the defaults otherwise.
pub fn traffic_config(city: &citybrain_core::CityProfile) -> TrafficConfig {
    TrafficConfig {
        local_prefixes: city.plate_prefixes.clone(),
        zone: city.time_zone.clone(),
        ..TrafficConfig::default()
    }
}

fn publish(ctx: &SceneContext, out: Outputs) {
    let (hub, events) = (&ctx.hub, &ctx.events);
    store(hub, "indices.census_daily", &out.census_days, events);
    store(hub, "indices.census_hourly", &out.census_hours, events);
    store(hub, "indices.census_so_far", &out.census_so_far, events);
    store(hub, "indices.on_road", &out.on_road, events);
    store(hub, "indices.link_travel", &out.link_travel, events);
    store(hub, "indices.delay", &out.delay, events);
}

impl IndicesWorker {
    fn push(&mut self, batch: &RecordBatch) {
        if let Err(error) = self.indices.push_batch(batch) {
            tracing::error!(message = "A passage batch was unusable for the indices.", %error);
        }
    }
}

impl Worker for IndicesWorker {
    fn warm(&mut self) {
        if self.warm.is_empty() {
            return;
        }
        for batch in std::mem::take(&mut self.warm) {
            self.push(&batch);
            // Stored before the restart; the alert board still learns from it.
            let out = self.indices.take_outputs();
            let now = Some(self.indices.live().at);
            self.ctx.alerts.links(&out.link_travel, now, false);
        }
        *self.handle.latest.lock().expect("latest lock") = Some(self.indices.live());
    }

    fn caught_up(&mut self) {
        // No new bins: only the reconciliation with `alerts.events`.
        let now = Some(self.indices.live().at);
        self.ctx.alerts.links(&[], now, true);
    }

    /// The catch-up's windows are stored (they may be the ones a crash kept from being
    /// stored); after a restart its alerts are only learnt (see `fresh`), and `caught_up`
    /// reconciles the board with what `alerts.events` says is open, so none is stored twice.
    fn apply(&mut self, changes: Vec<Change>) {
        let (replayed, live): (Vec<_>, Vec<_>) = changes.into_iter().partition(|c| c.replayed);
        // The catch-up change by change, so the live view and the stored windows advance
        // while a long one (a fresh start over a stored day) is applied.
        for change in replayed {
            self.step(&[change], self.fresh);
        }
        if !live.is_empty() {
            self.step(&live, true);
        }
    }
}

impl IndicesWorker {
    fn step(&mut self, changes: &[Change], emit: bool) {
        for change in changes {
            for batch in &change.batches {
                self.push(batch);
            }
        }
        let mut out = self.indices.take_outputs();
        let live = self.indices.live();
        let now = Some(live.at);
        // The alert board learns from every window, stored before or not.
        self.ctx.alerts.links(&out.link_travel, now, emit);
        self.stored.keep_new(&mut out);
        publish(&self.ctx, out);
        let event = json!({"type": "live", "live": &live});
        *self.handle.latest.lock().expect("latest lock") = Some(live);
        let _ = self.ctx.events.send(event.to_string().into());
    }
}

fn read_call(me: &Principal, detail: &str) -> citybrain_gov::Call {
    crate::read_call(me, &["indices.on_road", "indices.census_daily"], detail)
}

/// The live traffic view: the stream's time, vehicles on the road, today's census so far.
#[utoipa::path(get, path = "/indices/traffic/live", tag = "indices", responses((status = 200, description = "The live view: stream time, vehicles on the road, census so far", body = Object)))]
async fn traffic_live(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let live = state.scenes.handle::<LiveIndices>("indices")?;
    crate::record(&state, read_call(&me, "GET /api/v1/indices/traffic/live")).await?;
    Ok(Json(json!({ "live": live.latest() })).into_response())
}

/// Server-Sent Events: `live` after every applied batch, `rows` as index windows close,
/// alerts, parking and emergency runs as they happen.
#[utoipa::path(get, path = "/indices/stream", tag = "indices", responses((status = 200, description = "Server-Sent Events: live, rows, alerts, emergency", body = String, content_type = "text/event-stream")))]
async fn indices_stream(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let live = state.scenes.handle::<LiveIndices>("indices")?;
    let slot = state.gate.stream()?;
    crate::record(&state, read_call(&me, "GET /api/v1/indices/stream")).await?;
    let first = live
        .latest()
        .map(|l| json!({"type": "live", "live": l}).to_string());
    let receiver = state.events.subscribe();
    let updates = futures::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(text) => return Some((text.to_string(), rx)),
                // A slow client skips what it missed; the datasets keep everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures::stream::iter(first)
        .chain(updates)
        .take_until(state.closed())
        .map(move |text| {
            // The stream holds its place until it ends.
            let _ = &slot;
            Ok::<_, std::convert::Infallible>(Event::default().data(text))
        });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
