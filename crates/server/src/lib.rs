//! The HTTP API: authentication, dataset management, ingest and SQL over the hub.
//!
//! Key decision: the server is a thin async shell. CPU and disk work (decoding, fsync)
//! runs on blocking threads via the synchronous hub, so the async runtime only moves
//! bytes. [`run`] takes its listener and shutdown signal, so tests run the real server on
//! port 0 and stop it the same way SIGTERM does.
//!
//! Here: the state, the router, the auth middleware and the helpers every route shares.
//! The hub's own routes (datasets: define, ingest, read, SQL) are in `datasets.rs`,
//! governance in `governance.rs`, the scenes' in `scenes/`.

pub mod briefing;
mod city;
mod cockpit;
pub mod cockpits;
mod datasets;
mod error;
mod extract;
mod governance;
mod limits;
mod listen;
pub mod mqtt;
mod ngsi;
pub mod openapi;
pub mod scene;
pub mod scenes;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use citybrain_core::{DatasetName, Timestamp};
use citybrain_gov::{Call, CallKind, Gov, Outcome, Principal, Touch};
use citybrain_hub::Hub;
use citybrain_sql::SqlEngine;
pub(crate) use datasets::{SMALL_BODY_LIMIT, known_definition, read_body};
use extract::Json;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use cockpit::built as cockpit_built;
pub use error::{ApiError, ErrorCode};
pub use listen::{ConnLimits, HttpTls, tls_identity};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub sql: SqlEngine,
    pub gov: Arc<Gov>,
    /// The scenes, running or not (see [`scene`]).
    pub scenes: Arc<scene::Scenes>,
    /// The city's event stream: index windows, alerts, parking, emergency runs (SSE).
    pub events: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Set at shutdown, so open event streams end and the graceful shutdown completes.
    pub closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// How many connections, and how slow a client may be.
    pub conn: ConnLimits,
    /// The city profile (`GET /api/v1/city`).
    pub city: Arc<citybrain_core::CityProfile>,
    /// Request rates per principal and open event streams (see [`limits`]).
    pub gate: Arc<limits::ClientGate>,
    /// NGSI-LD subscriptions, kept in the data directory.
    pub(crate) ngsi: Arc<ngsi::subscriptions::Subscriptions>,
    /// Entities deleted through NGSI-LD (their rows stay as history).
    pub(crate) ngsi_deleted: Arc<ngsi::deleted::Tombstones>,
    /// Each NGSI-LD dataset's entity ids, for creates (`ngsi::ids`).
    pub(crate) ngsi_ids: Arc<ngsi::ids::EntityIds>,
}

/// The current time, read here at the edge and passed into the hub.
pub fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp(micros)
}

impl AppState {
    /// The server's state with every scene started (see [`scene::Scenes::start`]).
    pub async fn start(
        hub: Arc<Hub>,
        sql: SqlEngine,
        gov: Arc<Gov>,
        config: scene::SceneConfig,
        body_limit: usize,
        conn: ConnLimits,
    ) -> Self {
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let alerts = scenes::alerts::LiveAlerts::new(
            hub.clone(),
            events.clone(),
            citybrain_alerts::AlertRules::default(),
        );
        let city = Arc::new(config.city.clone());
        let ngsi = Arc::new(ngsi::subscriptions::Subscriptions::open_or_set_aside(
            &config.data_dir,
        ));
        let ngsi_deleted = Arc::new(ngsi::deleted::Tombstones::open(&config.data_dir));
        let ctx = scene::SceneContext {
            hub: hub.clone(),
            sql: sql.clone(),
            gov: gov.clone(),
            events: events.clone(),
            alerts,
            config,
        };
        let scenes = Arc::new(scene::Scenes::new(scenes::all()));
        scenes.start(&ctx).await;
        let state = Self {
            hub,
            sql,
            gov,
            scenes,
            events,
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            body_limit,
            gate: Arc::new(limits::ClientGate::new(&conn)),
            conn,
            city,
            ngsi,
            ngsi_deleted,
            ngsi_ids: Default::default(),
        };
        ngsi::subscriptions::spawn_notifier(state.clone());
        state
    }

    /// Resolves when event streams are to end (at shutdown).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.closing.subscribe();
        async move {
            let _ = receiver.wait_for(|closing| *closing).await;
        }
    }
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes(&state.scenes).split_for_parts();
    let doc = Arc::new(openapi::finish(doc));
    let authenticated = api
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        // NGSI-LD's own API (ETSI's document, not ours), behind the same authentication.
        .nest("/ngsi-ld/v1", ngsi::router())
        // Inside authentication: only a caller who is someone is sent on.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            scene::forward::forward,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/", get(cockpit::index))
        .route("/assets/{*path}", get(cockpit::asset))
        .merge(authenticated)
        .with_state(state)
}

/// Every authenticated route with its OpenAPI operation: `routes!` adds both, so the
/// document cannot leave a route out.
pub fn api_routes(scenes: &scene::Scenes) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(datasets::list_datasets, datasets::create_dataset))
        .routes(routes!(
            datasets::get_dataset,
            datasets::update_dataset,
            datasets::delete_dataset
        ))
        .routes(routes!(datasets::ingest, datasets::read_records))
        .routes(routes!(governance::dataset_audit))
        .routes(routes!(governance::audit_key))
        .routes(routes!(governance::audit_head))
        .routes(routes!(datasets::sql))
        .routes(routes!(governance::whoami))
        .routes(routes!(city::profile))
        .routes(routes!(scene::list))
        .routes(routes!(cockpits::list))
        .routes(routes!(cockpits::get, cockpits::put, cockpits::delete))
        .routes(routes!(cockpits::panel))
        .routes(routes!(briefing::get))
        .routes(routes!(
            governance::list_departments,
            governance::create_department
        ))
        .routes(routes!(
            governance::list_principals,
            governance::create_principal
        ))
        .routes(routes!(governance::issue_token))
        .routes(routes!(governance::list_tokens))
        .routes(routes!(governance::revoke_token))
        .routes(routes!(governance::list_grants, governance::request_grant))
        .routes(routes!(governance::decide_grant))
        .routes(routes!(
            governance::list_linkages,
            governance::propose_linkage
        ))
        .routes(routes!(governance::decide_linkage))
        .merge(scenes.routes());
    OpenApiRouter::new()
        .nest("/api/v1", api)
        .routes(routes!(governance::metrics))
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// (and so in-flight batches, each fsynced before it is acknowledged) finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (hub, scenes, closing) = (
        state.hub.clone(),
        state.scenes.clone(),
        state.closing.clone(),
    );
    let shutdown = async move {
        shutdown.await;
        closing.send_replace(true);
    };
    let limits = state.conn.clone();
    briefing::schedule(state.clone());
    listen::serve(listener, router(state), limits, shutdown).await;
    // The feed closes, each scene applies what was queued and stops, then seals finish.
    tokio::task::spawn_blocking(move || {
        hub.close();
        scenes.stop();
    })
    .await
    .ok();
    Ok(())
}

/// Establishes the calling principal from the bearer token. Tokens are looked up by
/// their SHA-256 hash, so the comparison never touches the secret itself.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(token) = token else {
        return ApiError::unauthorized().into_response();
    };
    // Compressed bodies are not decoded: say so rather than read them as garbage.
    if let Some(encoding) = request.headers().get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedContentEncoding,
                format!(
                    "Content-Encoding '{encoding}' is not supported; send the body uncompressed"
                ),
            )
            .into_response();
        }
    }
    match state.gov.session(token, now()) {
        Ok(session) => {
            // A call another node of the hub sent on was counted there.
            if !scene::forward::proven(&state, &request)
                && let Err(wait) = state
                    .gate
                    .admit(session.principal.name.as_str(), std::time::Instant::now())
            {
                return state.gate.refusal(session.principal.name.as_str(), wait);
            }
            tracing::debug!(
                message = "Request.",
                principal = %session.principal.name,
                method = %request.method(),
                path = %request.uri().path()
            );
            request.extensions_mut().insert(session.principal.clone());
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme's name is
/// case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub(crate) fn dataset_name(text: &str) -> Result<DatasetName, ApiError> {
    DatasetName::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidDatasetName,
            e.to_string(),
        )
    })
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("worker failed: {e}"),
        )
    })?
}

/// A read of aggregate datasets (no personal fields) by `me`, for the audit trail.
pub(crate) fn read_call(me: &Principal, datasets: &[&str], detail: &str) -> Call {
    let mut call = Call::new(
        now(),
        me.name.as_str(),
        me.department.as_str(),
        CallKind::Read,
    );
    for name in datasets {
        call.datasets.push(Touch {
            dataset: DatasetName::parse(name).expect("valid name"),
            fields: Vec::new(),
        });
    }
    call.detail = detail.to_string();
    call
}

/// Records a data call; the append waits for its fsync, so off the async workers.
pub(crate) async fn record(state: &AppState, call: Call) -> Result<(), ApiError> {
    let gov = state.gov.clone();
    blocking(move || {
        gov.record(call)?;
        Ok(())
    })
    .await
}

/// Records a scene's write into one of its datasets as a data call of the principal who
/// asked for it.
pub(crate) fn record_write(
    gov: &Gov,
    me: &Principal,
    dataset: &str,
    detail: String,
    rows: u64,
    succeeded: bool,
) -> Result<(), ApiError> {
    let mut call = Call::new(
        now(),
        me.name.as_str(),
        me.department.as_str(),
        CallKind::Ingest,
    );
    call.datasets.push(Touch {
        dataset: DatasetName::parse(dataset).expect("scene dataset names are valid"),
        fields: Vec::new(),
    });
    call.detail = detail;
    call.rows = rows;
    if !succeeded {
        call.outcome = Outcome::Failed;
    }
    gov.record(call)?;
    Ok(())
}

/// Actions that change the city (start a run, pay) are for publishers and admins.
pub(crate) fn needs_writer(me: &Principal, message: &str) -> Result<(), ApiError> {
    if me.role == citybrain_gov::Role::Reader {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            message,
        ));
    }
    Ok(())
}
