//! Scenes as plug-ins. A scene declares the datasets it writes, the datasets it reads from
//! the hub's change feed, its routes and its cockpit page; [`crate::scenes::all`] lists them
//! once, and the server starts each, runs its feed on a thread of its own and reports its
//! watermark on `GET /api/v1/scenes`.
//!
//! Exactly once, as the feed gives it: a scene's worker stores what a batch yields before
//! it returns, the runner then commits the batch's position, and after a crash the feed
//! hands over again what was not committed, so a scene's outputs must be idempotent (a
//! bill's id is fixed by its stay; see each scene for how).

use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use citybrain_core::DatasetName;
use citybrain_gov::Gov;
use citybrain_hub::{Change, DatasetDef, Hub, Positions};
use citybrain_sql::SqlEngine;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;
use utoipa_axum::router::OpenApiRouter;

pub mod forward;
mod lease;
mod runner;

use runner::{Runner, cluster_start};

use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// A scene: what a city runs on the hub to remove one pain point.
pub trait Scene: Send + Sync + 'static {
    /// Its name: the first segment of its routes (`/api/v1/<name>/...`) and its feed
    /// subscriber's name.
    fn name(&self) -> &'static str;
    /// One line for `GET /api/v1/scenes`.
    fn about(&self) -> &'static str;
    /// Definitions (file name, TOML text) of the datasets it writes, created at start.
    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
    /// The datasets it reads from the change feed.
    fn inputs(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// In a cluster, whether it runs on one node at a time (under a lease that moves to a
    /// survivor when its node dies): every scene that reads the change feed, stores what
    /// it yields or acts on a timer. The others (routes over SQL only) run on every node.
    fn one_node(&self) -> bool {
        !self.inputs().is_empty()
    }
    /// In a cluster, how much of its inputs' history (by ingest time) rebuilds its state
    /// before the place its last node committed: the node that takes it over replays that
    /// much again (outputs already stored are not stored twice). None: it rebuilds from
    /// the whole history at every start (as it does on one machine).
    fn replay_window(&self) -> Option<std::time::Duration> {
        None
    }
    /// Its cockpit page (`cockpit/src/pages/<page>`), if it has one.
    fn page(&self) -> Option<&'static str> {
        None
    }
    /// Its routes, full paths under `/api/v1` (each starting with `/<name>`). They exist
    /// whether or not the scene runs: a stopped scene answers 503 with why.
    fn routes(&self) -> OpenApiRouter<AppState>;
    /// Starts it: reads what it needs, rebuilds its state. `committed` is where its feed
    /// subscription stood at the last commit.
    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>>;
}

/// What a scene is started with.
#[derive(Clone)]
pub struct SceneContext {
    pub hub: Arc<Hub>,
    pub sql: SqlEngine,
    pub gov: Arc<Gov>,
    /// The city's event stream (`/api/v1/indices/stream`).
    pub events: broadcast::Sender<Arc<str>>,
    /// The alert board every scene may raise alerts on.
    pub alerts: crate::scenes::alerts::LiveAlerts,
    pub config: SceneConfig,
}

impl SceneContext {
    /// Whether the hub has the dataset `name`.
    pub fn has(&self, name: &str) -> bool {
        DatasetName::parse(name).is_ok_and(|n| self.hub.names().contains(&n))
    }
}

/// Creates the datasets `scene` writes that do not exist yet.
pub(crate) fn create_definitions(hub: &Hub, scene: &dyn Scene) -> Result<(), String> {
    for (file, text) in scene.definitions() {
        let def = DatasetDef::from_file_text(file, text).map_err(|e| format!("{file}: {e}"))?;
        if !hub.names().contains(&def.name) {
            hub.create_dataset(def, crate::now())
                .map_err(|e| format!("creating {file}: {e}"))?;
        } else if let Ok(old) = hub.definition(&def.name)
            && old.fields.len() < def.fields.len()
        {
            // A newer release added fields (nullable, at the end): a data directory made by
            // an older one gets them, its stored rows reading null there.
            hub.update_dataset(def, crate::now())
                .map_err(|e| format!("updating {file}: {e}"))?;
        }
    }
    Ok(())
}

/// Settings of scenes that need more than the hub's data.
#[derive(Debug, Clone, Default)]
pub struct SceneConfig {
    /// The signal scene's network, routes and speed (`up --signals-net ...`).
    pub signals: Option<crate::scenes::signals::SignalsConfig>,
    /// Where policy texts are (`up --policies DIR`); the shipped ones otherwise.
    pub policies: Option<PathBuf>,
    /// Where service rules are (`up --services DIR`); the shipped ones otherwise.
    pub services: Option<PathBuf>,
    /// The data directory (scenes keep working files under it).
    pub data_dir: PathBuf,
    /// The city: its zone and local plates (`citybrain.toml` in the data directory).
    pub city: citybrain_core::CityProfile,
    /// Where this node serves its API (`http://host:port`): in a cluster, the address a
    /// caller of a scene that runs here is sent to from the other nodes.
    pub address: String,
}

/// A started scene, or why it is not running.
pub enum Started {
    Running(Running),
    /// Not running, and why (no lots to manage, no network given).
    Idle(String),
}

/// A running scene.
pub struct Running {
    /// What its routes use: [`AppState::scene`] hands it out by type.
    pub handle: Arc<dyn Any + Send + Sync>,
    /// Applies the feed, when the scene reads one.
    pub worker: Option<Box<dyn Worker>>,
    /// Where its subscription starts: usually what it committed.
    pub from: Positions,
    /// Called at shutdown (after the feed is drained).
    pub on_stop: Option<Box<dyn FnOnce() + Send>>,
}

/// The part of a scene that consumes the change feed, on the scene's own thread.
pub trait Worker: Send {
    /// Rebuilds state from data applied before a restart; called once, first.
    fn warm(&mut self) {}
    /// Applies changes in feed order and stores what they yield before returning. Changes
    /// marked `replayed` come from the catch-up and may have been applied before a crash.
    fn apply(&mut self, changes: Vec<Change>);
    /// Called once the catch-up is applied (at once if there was none), before the first
    /// live change: the moment to reconcile with what was stored before a crash.
    fn caught_up(&mut self) {}
}

/// A scene's state as `GET /api/v1/scenes` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Starting,
    /// Rebuilding state and applying what it missed.
    CatchingUp,
    Running,
    /// Not running: nothing to do (see `reason`).
    Idle,
    Failed,
    Stopped,
    /// In a cluster: running on another node (see `reason`), or waiting for its lease.
    Elsewhere,
}

#[derive(Debug, Clone)]
struct Status {
    phase: Phase,
    reason: Option<String>,
    applied: Positions,
    committed: Positions,
    /// In a cluster, what it applied of each other node's rows.
    others: citybrain_hub::Origins,
    pending: usize,
}

struct Entry {
    scene: Box<dyn Scene>,
    status: Arc<Mutex<Status>>,
    handle: Mutex<Option<Arc<dyn Any + Send + Sync>>>,
    on_stop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set to end its feed loop (in a cluster, when its lease is lost); new per start.
    stop: Mutex<Arc<AtomicBool>>,
    /// In a cluster: it runs on one node at a time, under a lease (`lease`).
    leased: AtomicBool,
    /// In a cluster: this node holds its lease and runs it.
    held: AtomicBool,
    /// Unix ms until which this node's hold is sure (its lease's end).
    held_until: std::sync::atomic::AtomicI64,
    /// In a cluster: the node that holds its lease when it is not this one.
    holder: Mutex<Option<citybrain_hub::cluster::Holder>>,
}

/// The server's scenes.
pub struct Scenes {
    entries: Vec<Entry>,
    /// In a cluster: the hub and this node's id, for giving leases up at shutdown.
    lease_holder: Mutex<Option<(Arc<Hub>, String)>>,
    /// Set at shutdown: the lease keeper ends.
    closing: AtomicBool,
    /// In a cluster: what the lease keeper starts scenes with (taken at shutdown).
    keeper_ctx: Mutex<Option<SceneContext>>,
}

impl std::fmt::Debug for Scenes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.scene.name()))
            .finish()
    }
}

impl Scenes {
    /// The scenes, none started yet.
    pub fn new(scenes: Vec<Box<dyn Scene>>) -> Self {
        let entries = scenes
            .into_iter()
            .map(|scene| Entry {
                scene,
                status: Arc::new(Mutex::new(Status {
                    phase: Phase::Starting,
                    reason: None,
                    applied: Positions::new(),
                    committed: Positions::new(),
                    others: citybrain_hub::Origins::new(),
                    pending: 0,
                })),
                handle: Mutex::new(None),
                on_stop: Mutex::new(None),
                thread: Mutex::new(None),
                stop: Mutex::new(Arc::new(AtomicBool::new(false))),
                leased: AtomicBool::new(false),
                held: AtomicBool::new(false),
                held_until: std::sync::atomic::AtomicI64::new(0),
                holder: Mutex::new(None),
            })
            .collect();
        Self {
            entries,
            lease_holder: Mutex::new(None),
            closing: AtomicBool::new(false),
            keeper_ctx: Mutex::new(None),
        }
    }

    /// Every scene's routes, merged.
    pub fn routes(&self) -> OpenApiRouter<AppState> {
        self.entries.iter().fold(OpenApiRouter::new(), |router, e| {
            router.merge(e.scene.routes())
        })
    }

    /// Starts each scene in list order: creates its datasets, starts it, and runs its
    /// feed. A scene that fails to start is marked failed with why; the others run. In a
    /// cluster a scene that runs on one node at a time ([`Scene::one_node`]) is started by
    /// the lease keeper instead, on the node that takes its lease (`lease`).
    pub async fn start(self: &Arc<Self>, ctx: &SceneContext) {
        let node = ctx.hub.leases().and(ctx.hub.node_id()).map(str::to_string);
        let mut leased = false;
        for entry in &self.entries {
            let name = entry.scene.name();
            if node.is_some() && entry.scene.one_node() {
                create_definitions(&ctx.hub, entry.scene.as_ref()).unwrap_or_else(|reason| {
                    tracing::error!(message = "A scene's datasets could not be created.", scene = name, %reason);
                });
                entry.leased.store(true, Ordering::SeqCst);
                let mut status = entry.status.lock().expect("status lock");
                status.phase = Phase::Elsewhere;
                status.reason = Some(
                    "waiting for its lease (it runs on one node of the cluster at a time)".into(),
                );
                leased = true;
                continue;
            }
            let outcome = self.start_one(entry, ctx).await;
            let mut status = entry.status.lock().expect("status lock");
            match outcome {
                Ok(()) => {}
                Err(reason) => {
                    tracing::error!(message = "A scene failed to start; the others run.", scene = name, %reason);
                    status.phase = Phase::Failed;
                    status.reason = Some(reason);
                }
            }
        }
        if let (true, Some(node)) = (leased, node) {
            *self.lease_holder.lock().expect("lease lock") = Some((ctx.hub.clone(), node.clone()));
            // The first round now, so a lone node's scenes run before it says it is up.
            self.keep_leases(ctx, &node).await;
            *self.keeper_ctx.lock().expect("keeper lock") = Some(ctx.clone());
            lease::spawn_keeper(self, node);
        }
    }

    async fn start_one(&self, entry: &Entry, ctx: &SceneContext) -> Result<(), String> {
        let scene = &entry.scene;
        create_definitions(&ctx.hub, scene.as_ref())?;
        let leased = entry.leased.load(Ordering::SeqCst);
        // In a cluster a scene rebuilds from its inputs' whole history wherever it starts
        // (its outputs are idempotent): positions are each node's own, and the node it
        // last ran on may be gone.
        // In a cluster: where the scene's last node committed, per node, and where the
        // replay starts (see `cluster_start`).
        let cluster = if leased {
            Some(cluster_start(ctx, scene.as_ref()).await?)
        } else {
            None
        };
        let committed = if leased {
            Positions::new()
        } else {
            ctx.hub.committed(scene.name()).map_err(|e| e.to_string())?
        };
        let running = match scene.start(ctx, committed).await? {
            Started::Idle(reason) => {
                let mut status = entry.status.lock().expect("status lock");
                status.phase = Phase::Idle;
                status.reason = Some(reason);
                return Ok(());
            }
            Started::Running(running) => running,
        };
        *entry.handle.lock().expect("handle lock") = Some(running.handle);
        *entry.on_stop.lock().expect("stop lock") = running.on_stop;
        let Some(worker) = running.worker else {
            let mut status = entry.status.lock().expect("status lock");
            status.phase = Phase::Running;
            status.reason = None;
            return Ok(());
        };
        let inputs = scene
            .inputs()
            .into_iter()
            .map(DatasetName::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let (subscription, from, others) = match cluster {
            Some(start) => (
                ctx.hub
                    .subscribe_all_nodes(&inputs, &start.replay_own, &start.replay_others)
                    .map_err(|e| format!("subscribing to the change feed: {e}"))?,
                start.own,
                start.others,
            ),
            None => (
                ctx.hub
                    .subscribe(&inputs, &running.from)
                    .map_err(|e| format!("subscribing to the change feed: {e}"))?,
                running.from,
                citybrain_hub::Origins::new(),
            ),
        };
        let stop = Arc::new(AtomicBool::new(false));
        *entry.stop.lock().expect("stop lock") = stop.clone();
        {
            let mut status = entry.status.lock().expect("status lock");
            status.phase = Phase::CatchingUp;
            status.reason = None;
            status.others = others.clone();
            // Applied once the worker has warmed up (see `Runner::run`).
            status.committed = from.clone();
            status.pending = subscription.pending();
        }
        let runner = Runner {
            from,
            others,
            name: scene.name(),
            hub: ctx.hub.clone(),
            status: entry.status.clone(),
            worker,
            subscription,
            stop,
            node: ctx.hub.node_id().filter(|_| leased).map(str::to_string),
        };
        let thread = std::thread::Builder::new()
            .name(format!("scene-{}", scene.name()))
            .spawn(move || runner.run())
            .map_err(|e| format!("starting the scene's thread: {e}"))?;
        *entry.thread.lock().expect("thread lock") = Some(thread);
        Ok(())
    }

    /// In a cluster: the node that runs scene `name` when it is another one (its calls
    /// are sent there, `forward`).
    pub fn elsewhere(&self, name: &str) -> Option<citybrain_hub::cluster::Holder> {
        let entry = self.entries.iter().find(|e| e.scene.name() == name)?;
        if !entry.leased.load(Ordering::SeqCst) || entry.held.load(Ordering::SeqCst) {
            return None;
        }
        if !matches!(
            entry.status.lock().expect("status lock").phase,
            Phase::Elsewhere
        ) {
            return None;
        }
        entry.holder.lock().expect("holder lock").clone()
    }

    /// The running scene `name`'s handle, as `T`.
    pub fn handle<T: Clone + 'static>(&self, name: &str) -> Result<T, ApiError> {
        let entry = self.entries.iter().find(|e| e.scene.name() == name);
        let handle = entry.and_then(|e| e.handle.lock().expect("handle lock").clone());
        match handle.as_deref().and_then(|h| h.downcast_ref::<T>()) {
            Some(handle) => Ok(handle.clone()),
            None => {
                let why = entry
                    .and_then(|e| e.status.lock().expect("status lock").reason.clone())
                    .unwrap_or_else(|| "it has not started".into());
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::SceneUnavailable,
                    format!("the {name} scene is not running: {why}"),
                ))
            }
        }
    }

    /// Waits for every scene's feed to drain (the hub's feed must be closed first), then
    /// runs their stop hooks. In a cluster the leases this node held are given up, so
    /// another node takes its scenes at once.
    pub fn stop(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.keeper_ctx.lock().expect("keeper lock").take();
        for entry in &self.entries {
            Self::stop_one(entry);
            let mut status = entry.status.lock().expect("status lock");
            if matches!(status.phase, Phase::Running | Phase::CatchingUp) {
                status.phase = Phase::Stopped;
            }
        }
        if let Some((hub, node)) = self.lease_holder.lock().expect("lease lock").take() {
            for entry in self
                .entries
                .iter()
                .filter(|e| e.held.swap(false, Ordering::SeqCst))
            {
                if let Some(leases) = hub.leases()
                    && let Err(error) = leases.release(&lease::name(entry.scene.name()), &node)
                {
                    tracing::warn!(message = "A scene's lease could not be given up; another node takes it once it lapses.", scene = entry.scene.name(), %error);
                }
            }
        }
    }

    /// Ends a scene's feed loop (waiting for the batch in hand) and runs its stop hook.
    fn stop_one(entry: &Entry) {
        entry
            .stop
            .lock()
            .expect("stop lock")
            .store(true, Ordering::SeqCst);
        if let Some(thread) = entry.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
        if let Some(stop) = entry.on_stop.lock().expect("stop lock").take() {
            stop();
        }
        *entry.handle.lock().expect("handle lock") = None;
    }

    /// Waits until scene `name` has applied every input up to the position stored when
    /// the call began (its watermark, as `GET /api/v1/scenes` shows it); false if it is not
    /// running or has not got there within `limit`.
    pub async fn caught_up(&self, name: &str, hub: &Hub, limit: std::time::Duration) -> bool {
        let Some(entry) = self.entries.iter().find(|e| e.scene.name() == name) else {
            return false;
        };
        let targets: Vec<_> = entry
            .scene
            .inputs()
            .into_iter()
            .filter_map(|n| DatasetName::parse(n).ok())
            .filter_map(|n| hub.head(&n).map(|p| (n, p)))
            .collect();
        let deadline = std::time::Instant::now() + limit;
        loop {
            {
                let status = entry.status.lock().expect("status lock");
                match status.phase {
                    Phase::Failed | Phase::Idle | Phase::Stopped => return false,
                    _ => {}
                }
                if targets
                    .iter()
                    .all(|(n, p)| status.applied.get(n).is_some_and(|a| a >= p))
                {
                    return true;
                }
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Every scene's state and watermark.
    pub fn report(&self, hub: &Hub) -> serde_json::Value {
        let scenes: Vec<_> = self
            .entries
            .iter()
            .map(|entry| {
                let scene = &entry.scene;
                let status = entry.status.lock().expect("status lock").clone();
                let feed: Vec<_> = scene
                    .inputs()
                    .into_iter()
                    .filter_map(|name| DatasetName::parse(name).ok())
                    .map(|name| {
                        let head = hub.head(&name);
                        let applied = status.applied.get(&name).copied();
                        let lag_s = match (head, applied) {
                            (Some(h), Some(a)) => (h.0 - a.0).max(0) as f64 / 1e6,
                            (Some(_), None) => f64::INFINITY,
                            (None, _) => 0.0,
                        };
                        // In a cluster, what it applied of each other node's rows.
                        let nodes: BTreeMap<&str, _> = status
                            .others
                            .iter()
                            .filter_map(|(node, p)| Some((node.as_str(), p.get(&name)?)))
                            .collect();
                        json!({
                            "dataset": name,
                            "applied": applied,
                            "nodes": nodes,
                            "committed": status.committed.get(&name),
                            "head": head,
                            "caught_up": head.is_none() || applied >= head,
                            "lag_s": if lag_s.is_finite() { json!(lag_s) } else { json!(null) },
                        })
                    })
                    .collect();
                let outputs: Vec<_> = scene
                    .definitions()
                    .iter()
                    .filter_map(|(f, t)| DatasetDef::from_file_text(f, t).ok())
                    .map(|d| d.name)
                    .collect();
                json!({
                    "name": scene.name(),
                    "about": scene.about(),
                    "state": status.phase,
                    "reason": status.reason,
                    "page": scene.page(),
                    "outputs": outputs,
                    "feed": feed,
                    "pending": status.pending,
                })
            })
            .collect();
        json!({ "scenes": scenes })
    }
}

/// `GET /api/v1/scenes`: each scene's state and, per dataset it reads, the position it
/// has applied and committed, the newest stored, and how far behind it is.
#[utoipa::path(get, path = "/scenes", tag = "scenes", responses((status = 200, description = "Each scene: state, reason, page, outputs, and per input dataset the applied, committed and head positions and lag", body = Object)))]
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    Json(state.scenes.report(&state.hub)).into_response()
}

/// A batch's column `name` as plain UTF-8 text, whether stored as such or handed over by
/// SQL as string views.
pub(crate) fn text_column(
    batch: &arrow::array::RecordBatch,
    name: &str,
) -> Result<arrow::array::StringArray, String> {
    use arrow::array::AsArray;
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column {name}"))?;
    let cast = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)
        .map_err(|e| format!("{name} is not text: {e}"))?;
    Ok(cast.as_string::<i32>().clone())
}

/// The `.toml` files of a folder where a city keeps its own definitions (warning rules,
/// form templates), sorted, as (path, text); None when the folder does not exist (the
/// shipped ones apply). Every unreadable file is a problem naming it.
pub fn toml_files(dir: &std::path::Path) -> Result<Option<Vec<(String, String)>>, Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(vec![format!("{}: {e}", dir.display())]),
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((name, text)),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(Some(files))
    } else {
        Err(problems)
    }
}

/// Column `name` of a stored batch as timestamps (µs).
pub(crate) fn timestamps<'a>(
    batch: &'a arrow::array::RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::TimestampMicrosecondArray, String> {
    use arrow::array::AsArray;
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>())
        .ok_or_else(|| format!("no timestamp column {name}"))
}

/// Column `name` of a stored batch as integers (counts, money in fen).
pub(crate) fn ints<'a>(
    batch: &'a arrow::array::RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::Int64Array, String> {
    use arrow::array::AsArray;
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>())
        .ok_or_else(|| format!("no int column {name}"))
}

/// Column `name` of a stored batch as booleans.
pub(crate) fn bools<'a>(
    batch: &'a arrow::array::RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::BooleanArray, String> {
    use arrow::array::AsArray;
    batch
        .column_by_name(name)
        .and_then(|c| c.as_boolean_opt())
        .ok_or_else(|| format!("no bool column {name}"))
}

/// Every value of column `name` in `batches` as text: the ids a scene's ledger holds.
pub(crate) fn text_values(
    batches: &[arrow::array::RecordBatch],
    name: &str,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for batch in batches {
        let column = text_column(batch, name)?;
        out.extend(column.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// Rows per event on the event stream at most; the full rows are in the datasets.
const EVENT_ROWS: usize = 500;

/// Stores a scene's output rows in `dataset` (when it exists) and puts them on the event
/// stream. A failure is logged: the scene goes on, and the rows are missing from the
/// dataset (the log says which).
pub(crate) fn store<T: Serialize>(
    hub: &Hub,
    dataset: &str,
    rows: &[T],
    events: &broadcast::Sender<Arc<str>>,
) {
    if rows.is_empty() {
        return;
    }
    let name = DatasetName::parse(dataset).expect("scene dataset names are valid");
    if hub.names().contains(&name) {
        let body = citybrain_indices::to_ndjson(rows);
        let stored = hub.ingest(
            &name,
            citybrain_hub::Format::Ndjson,
            &body,
            citybrain_hub::OnError::Reject,
            crate::now(),
        );
        if let Err(error) = stored {
            tracing::error!(message = "Storing a scene's rows failed.", dataset, %error);
        }
    }
    let shown = &rows[rows.len().saturating_sub(EVENT_ROWS)..];
    let event = json!({"type": "rows", "dataset": dataset, "rows": shown, "total": rows.len()});
    let _ = events.send(event.to_string().into());
}
