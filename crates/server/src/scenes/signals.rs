//! The live signal scene: citybrain's controller driving the city's signals, here a SUMO
//! co-simulation standing in for the field (`citybrain up --signals-net ... --signals-routes
//! ...`). Phase decisions land in `signals.decisions` with their reason, emergency runs in
//! `signals.emergency_runs`; an emergency run is started by `POST /api/v1/signals/emergency`
//! and its progress streams on the indices' event stream (`type: "emergency"`).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, mpsc};

use citybrain_core::Timestamp;
use citybrain_hub::Hub;
use citybrain_sumo::{LiveCommand, LiveEvent, RunConfig};
use serde_json::json;
use tokio::sync::broadcast;

use crate::extract::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_gov::Principal;
use citybrain_hub::Positions;
use futures::future::BoxFuture;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ErrorCode;
use crate::scene::{Running, Scene, SceneContext, Started};
use crate::{ApiError, AppState};

/// Dataset definitions the scene writes (created at start when missing).
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "signals.decisions.toml",
        r#"name = "signals.decisions"
owner = "transport"
sharing = "unconditional"
description = "Every phase change of the signal controller: the phase, the signal state it shows (one character per link), and the reason it gave."
event_time = "ts"

[[fields]]
name = "ts"
type = "timestamp"

[[fields]]
name = "intersection"
type = "string"

[[fields]]
name = "phase"
type = "int"

[[fields]]
name = "state"
type = "string"

[[fields]]
name = "reason"
type = "string"
"#,
    ),
    (
        "signals.emergency_runs.toml",
        r#"name = "signals.emergency_runs"
owner = "transport"
sharing = "unconditional"
description = "Emergency runs (一键护航): route, departure, arrival and stops at signals."
event_time = "arrived"

[[fields]]
name = "run_id"
type = "string"

[[fields]]
name = "requested_by"
type = "string"

[[fields]]
name = "route"
type = "string"

[[fields]]
name = "departed"
type = "timestamp"

[[fields]]
name = "arrived"
type = "timestamp"

[[fields]]
name = "travel_s"
type = "float"

[[fields]]
name = "stops"
type = "int"
"#,
    ),
];

/// The signal scene's settings (`up --signals-net ... --signals-routes ...`).
#[derive(Debug, Clone)]
pub struct SignalsConfig {
    pub net: PathBuf,
    pub routes: PathBuf,
    /// Simulated seconds per second.
    pub speed: f64,
    /// The `sumo` binary.
    pub sumo: PathBuf,
}

pub struct SignalsScene;

impl Scene for SignalsScene {
    fn name(&self) -> &'static str {
        "signals"
    }

    fn about(&self) -> &'static str {
        "Adaptive signals and emergency green waves (一键护航) over the city's network"
    }

    /// In a cluster, on one node at a time: it drives one simulation and stores its runs.
    fn one_node(&self) -> bool {
        true
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        DEFINITIONS.to_vec()
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(signals_emergency))
            .routes(routes!(signals_network))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            let Some(args) = &ctx.config.signals else {
                return Ok(Started::Idle(
                    "no network to control: start with `citybrain up --signals-net NET --signals-routes ROUTES`".into(),
                ));
            };
            for path in [&args.net, &args.routes] {
                if !path.exists() {
                    return Err(format!("{} does not exist", path.display()));
                }
            }
            let config = RunConfig {
                sumo: args.sumo.clone(),
                net: args.net.clone(),
                routes: vec![args.routes.clone()],
                policy: Some(citybrain_signals::PolicyKind::Adaptive),
                timing: citybrain_signals::Timing::default(),
                ambulances: Vec::new(),
                preempt: true,
                max_end_s: u32::MAX,
                out_dir: ctx.config.data_dir.join("signals"),
            };
            let text = std::fs::read_to_string(&args.net)
                .map_err(|e| format!("reading {}: {e}", args.net.display()))?;
            let map = citybrain_sumo::map::geometry(&text)
                .map_err(|e| format!("{}: {e}", args.net.display()))?
                .to_json();
            let signals = LiveSignals::start(
                ctx.hub.clone(),
                config,
                map,
                args.speed,
                crate::now(),
                ctx.events.clone(),
            )
            .map_err(|e| format!("starting SUMO: {e}"))?;
            let stopping = signals.clone();
            Ok(Started::Running(Running {
                handle: Arc::new(signals),
                worker: None,
                from: Positions::new(),
                on_stop: Some(Box::new(move || stopping.stop())),
            }))
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct EmergencyRequest {
    /// The edges the emergency vehicle will take, in order.
    route: Vec<String>,
    #[serde(default = "default_priority")]
    priority: u8,
}

fn default_priority() -> u8 {
    1
}

/// Starts an emergency run (一键护航): the vehicle leaves now along `route` and every light
/// ahead turns green for it in time. Its progress streams on `/api/v1/indices/stream`
/// (`type: "emergency"`); the finished run lands in `signals.emergency_runs`.
#[utoipa::path(post, path = "/signals/emergency", tag = "signals", request_body(content = EmergencyRequest, content_type = "application/json"), responses((status = 202, description = "Started: its run id", body = Object)))]
async fn signals_emergency(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<EmergencyRequest>,
) -> Result<Response, ApiError> {
    let signals = state.scenes.handle::<LiveSignals>("signals")?;
    crate::needs_writer(
        &me,
        "starting an emergency run needs a publisher or admin role (a reader may only watch)",
    )?;
    if request.route.len() < 2 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRoute,
            "route: give at least two edges, in driving order",
        ));
    }
    let gov = state.gov.clone();
    let who = me.name.as_str().to_string();
    let run_id = crate::blocking(move || {
        let outcome = signals.emergency(request.route, request.priority, &who);
        crate::record_write(
            &gov,
            &me,
            "signals.emergency_runs",
            "POST /api/v1/signals/emergency".into(),
            0,
            outcome.is_ok(),
        )?;
        outcome.map_err(|e| ApiError::bad_request(ErrorCode::InvalidRoute, format!("route: {e}")))
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run_id": run_id }))).into_response())
}

/// The network under control as a map: its roads and its lights (by the ids decisions name)
/// in longitude and latitude, and whether those are on Earth (`georeferenced`: a UTM
/// network) or a diagram of a generated one. What the signals page draws.
#[utoipa::path(get, path = "/signals/network", tag = "signals", responses((status = 200, description = "GeoJSON of the roads (`edges`) and the lights (`lights`), `bounds` and `georeferenced`", body = Object), (status = 404, description = "No network is under control (the message says how to start one)")))]
async fn signals_network(State(state): State<AppState>) -> Result<Response, ApiError> {
    // No network under control is no such resource (404, saying how to start one), not
    // a server fault.
    let signals = state.scenes.handle::<LiveSignals>("signals").map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::SceneUnavailable,
            e.message().to_string(),
        )
    })?;
    Ok(Json(signals.map.as_ref().clone()).into_response())
}

#[derive(Debug, Clone)]
pub struct LiveSignals {
    map: Arc<serde_json::Value>,
    tx: mpsc::Sender<LiveCommand>,
    stop: Arc<AtomicBool>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    requested_by: Arc<Mutex<std::collections::HashMap<String, (String, String)>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl LiveSignals {
    /// Starts SUMO under citybrain's controller on its own thread, `speed` simulated seconds
    /// per second, from `start` (the wall-clock time of simulated second 0).
    pub fn start(
        hub: Arc<Hub>,
        mut config: RunConfig,
        map: serde_json::Value,
        speed: f64,
        start: Timestamp,
        events: broadcast::Sender<Arc<str>>,
    ) -> std::io::Result<Self> {
        // Emergency vehicles need their type in the simulation.
        std::fs::create_dir_all(&config.out_dir)?;
        let types: PathBuf = config.out_dir.join("ambulance.type.xml");
        std::fs::write(&types, citybrain_sumo::routes::ambulances_xml(&[]))?;
        config.routes.push(types);
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let requested_by: Arc<Mutex<std::collections::HashMap<String, (String, String)>>> =
            Arc::default();
        let (flag, who) = (stop.clone(), requested_by.clone());
        let thread = std::thread::Builder::new()
            .name("live-signals".into())
            .spawn(move || {
                let at = |t: u32| Timestamp(start.0 + i64::from(t) * 1_000_000);
                let mut decisions = Vec::new();
                let mut last_flush = 0;
                let mut on_event = |event: LiveEvent| match event {
                    LiveEvent::Decision {
                        t,
                        intersection,
                        phase,
                        state,
                        reason,
                    } => {
                        decisions.push(json!({"ts": at(t).to_string(),
                            "intersection": intersection, "phase": phase, "state": state,
                            "reason": reason}));
                        if t >= last_flush + 5 {
                            last_flush = t;
                            crate::scene::store(&hub, "signals.decisions", &decisions, &events);
                            decisions.clear();
                        }
                    }
                    LiveEvent::Progress {
                        id,
                        t,
                        edge,
                        speed,
                        next_light,
                        eta_s,
                        stops,
                    } => {
                        let e = json!({"type": "emergency", "run_id": id, "ts": at(t).to_string(),
                                       "state": "driving", "edge": edge, "speed": speed,
                                       "next_light": next_light, "eta_s": eta_s, "stops": stops});
                        let _ = events.send(e.to_string().into());
                    }
                    LiveEvent::Arrived {
                        id,
                        t,
                        departed,
                        stops,
                    } => {
                        let (by, route) = who
                            .lock()
                            .ok()
                            .and_then(|m| m.get(&id).cloned())
                            .unwrap_or_default();
                        let row = json!({"run_id": id, "requested_by": by, "route": route,
                                         "departed": at(departed).to_string(),
                                         "arrived": at(t).to_string(),
                                         "travel_s": f64::from(t - departed), "stops": stops});
                        crate::scene::store(
                            &hub,
                            "signals.emergency_runs",
                            std::slice::from_ref(&row),
                            &events,
                        );
                        let mut e = row;
                        e["ts"] = e["arrived"].clone();
                        e["type"] = json!("emergency");
                        e["state"] = json!("arrived");
                        let _ = events.send(e.to_string().into());
                    }
                };
                let live = citybrain_sumo::Live {
                    inbox: &rx,
                    on_event: &mut on_event,
                    speed,
                    stop: &flag,
                };
                if let Err(error) = citybrain_sumo::run_with(&config, Some(live)) {
                    tracing::error!(message = "The live signal scene stopped.", %error);
                }
                crate::scene::store(&hub, "signals.decisions", &decisions, &events);
            })?;
        Ok(Self {
            map: Arc::new(map),
            tx,
            stop,
            thread: Arc::new(Mutex::new(Some(thread))),
            requested_by,
            next_id: Arc::default(),
        })
    }

    /// Sends an emergency vehicle along `edges`; returns its run id once SUMO has taken it.
    pub fn emergency(
        &self,
        edges: Vec<String>,
        priority: u8,
        requested_by: &str,
    ) -> Result<String, String> {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("emergency_{n}");
        if let Ok(mut m) = self.requested_by.lock() {
            m.insert(id.clone(), (requested_by.to_string(), edges.join(" ")));
        }
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(LiveCommand::Emergency {
                id: id.clone(),
                edges,
                priority,
                reply,
            })
            .map_err(|_| "the signal scene has stopped".to_string())?;
        answer
            .recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|_| "the signal scene did not answer".to_string())??;
        Ok(id)
    }

    /// Stops the co-simulation and waits until SUMO has been closed (its trip file written).
    pub fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}
