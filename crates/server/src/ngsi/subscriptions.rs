//! NGSI-LD subscriptions: a principal asks to be told, at an HTTP endpoint, when entities of
//! some types change; every row stored since its cursor is read as that principal (masked,
//! audited) and POSTed as a notification. At least once: the cursor moves only after the
//! endpoint answered 2xx, and it is kept on disk, so a failed endpoint is retried (1, 2, 4
//! ... 60 s apart) and a restart resends what was not acknowledged, never what was.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Extension, Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use citybrain_core::Timestamp;
use citybrain_gov::{Gov, Principal};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use citybrain_ngsi::Row;
use citybrain_ngsi::convert::{q_to_sql, term, to_entity};

use super::{Answer, Problem, body_json, dataset_for, rows};
use crate::{AppState, now};

const FILE: &str = "ngsi/subscriptions.json";
/// Rows per notification at most; more go in the next one.
const BATCH: usize = 500;

/// One subscription and how far its notifications have been acknowledged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Sub {
    id: String,
    /// The principal notifications are read as.
    owner: String,
    department: String,
    entity_types: Vec<String>,
    watched: Vec<String>,
    q: Option<String>,
    uri: String,
    attributes: Vec<String>,
    key_values: bool,
    created: String,
    /// The `_ingested_at` (µs) of the newest row acknowledged, and the rows acknowledged
    /// at exactly that instant (a later batch may share it).
    cursor: i64,
    at_cursor: Vec<String>,
    sent: u64,
    failures: u64,
    last_success: Option<String>,
    last_failure: Option<String>,
    last_error: Option<String>,
}

/// The subscriptions of this server, kept in `DATA/ngsi/subscriptions.json`.
#[derive(Debug)]
pub struct Subscriptions {
    path: PathBuf,
    list: Mutex<Vec<Sub>>,
    /// When each failing subscription may be tried again.
    retry: Mutex<std::collections::HashMap<String, (Instant, u32)>>,
}

impl Subscriptions {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(FILE);
        let list = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            list: Mutex::new(list),
            retry: Mutex::default(),
        })
    }

    /// As [`Subscriptions::open`]; a file that does not read is moved aside (and logged)
    /// rather than overwritten by the next save.
    pub fn open_or_set_aside(data_dir: &Path) -> Self {
        match Self::open(data_dir) {
            Ok(s) => s,
            Err(error) => {
                let path = data_dir.join(FILE);
                let aside = path.with_extension(format!("unreadable-{}", now().0));
                tracing::error!(message = "NGSI-LD subscriptions did not read; the file is set aside and none are active.", path = %path.display(), aside = %aside.display(), %error);
                let _ = std::fs::rename(&path, &aside);
                Self {
                    path,
                    list: Mutex::default(),
                    retry: Mutex::default(),
                }
            }
        }
    }

    /// Writes the list whole, durably (a new file renamed over the old).
    fn save(&self, list: &[Sub]) -> std::io::Result<()> {
        use std::io::Write;
        let dir = self.path.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".subscriptions.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Sub>)) -> std::io::Result<()> {
        let mut list = self.list.lock().expect("subscriptions lock");
        f(&mut list);
        self.save(&list)
    }

    fn all(&self) -> Vec<Sub> {
        self.list.lock().expect("subscriptions lock").clone()
    }
}

fn representation(s: &Sub) -> Value {
    json!({
        "id": s.id,
        "type": "Subscription",
        "entities": s.entity_types.iter().map(|t| json!({"type": t})).collect::<Vec<_>>(),
        "watchedAttributes": if s.watched.is_empty() { Value::Null } else { json!(s.watched) },
        "q": s.q,
        "isActive": true,
        "notification": {
            "attributes": s.attributes,
            "format": if s.key_values { "keyValues" } else { "normalized" },
            "endpoint": {"uri": s.uri, "accept": "application/json"},
            "status": if s.last_error.is_some() { "failed" } else { "ok" },
            "timesSent": s.sent,
            "timesFailed": s.failures,
            "lastSuccess": s.last_success,
            "lastFailure": s.last_failure,
        },
        "createdAt": s.created,
    })
}

fn may_see(me: &Principal, s: &Sub) -> bool {
    s.owner == me.name.as_str() || me.is_hub_admin()
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    body: Body,
) -> Answer {
    let Value::Object(body) = body_json(body).await? else {
        return Err(Problem::bad("a subscription is a JSON object"));
    };
    let types: Vec<String> = body
        .get("entities")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .filter_map(|x| x.get("type").and_then(Value::as_str))
                .map(|t| term(t).to_string())
                .collect()
        })
        .unwrap_or_default();
    if types.is_empty() {
        return Err(Problem::bad(
            "entities: give at least one entity type, [{\"type\": \"AirQualityObserved\"}]",
        ));
    }
    let q = body.get("q").and_then(Value::as_str).map(str::to_string);
    for t in &types {
        let (def, ngsi) = dataset_for(&state, t)?;
        if let Some(q) = &q {
            q_to_sql(&def, &ngsi, q).map_err(Problem::bad)?;
        }
    }
    let notification = body.get("notification").cloned().unwrap_or(Value::Null);
    let uri = notification["endpoint"]["uri"]
        .as_str()
        .ok_or_else(|| Problem::bad("notification.endpoint.uri: where to send notifications"))?
        .to_string();
    if !uri.starts_with("http://") {
        return Err(Problem::bad(format!(
            "notification.endpoint.uri '{uri}': http:// endpoints are supported (https and mqtt are not yet)"
        )));
    }
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| term(s).to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let id = match body.get("id").and_then(Value::as_str) {
        Some(id) if id.contains(':') => id.to_string(),
        Some(id) => return Err(Problem::bad(format!("id '{id}' is not a URI"))),
        None => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| {
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    e.to_string(),
                )
            })?;
            format!("urn:ngsi-ld:Subscription:{}", u64::from_le_bytes(bytes))
        }
    };
    let subs = &state.ngsi;
    if subs.all().iter().any(|s| s.id == id) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("subscription {id} exists"),
        ));
    }
    let created = now();
    let sub = Sub {
        id: id.clone(),
        owner: me.name.as_str().to_string(),
        department: me.department.as_str().to_string(),
        entity_types: types,
        watched: names(
            &body
                .get("watchedAttributes")
                .cloned()
                .unwrap_or(Value::Null),
        ),
        q,
        uri,
        attributes: names(&notification["attributes"]),
        key_values: matches!(
            notification["format"].as_str(),
            Some("keyValues" | "simplified")
        ),
        created: created.to_string(),
        // Changes from now on.
        cursor: created.0,
        at_cursor: Vec::new(),
        sent: 0,
        failures: 0,
        last_success: None,
        last_failure: None,
        last_error: None,
    };
    subs.update(|l| l.push(sub)).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("storing the subscription: {e}"),
        )
    })?;
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/ngsi-ld/v1/subscriptions/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Answer {
    let mine: Vec<Value> = state
        .ngsi
        .all()
        .iter()
        .filter(|s| may_see(&me, s))
        .map(representation)
        .collect();
    Ok(axum::Json(Value::Array(mine)).into_response())
}

pub(super) async fn get(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
) -> Answer {
    state
        .ngsi
        .all()
        .iter()
        .find(|s| s.id == id && may_see(&me, s))
        .map(|s| axum::Json(representation(s)).into_response())
        .ok_or_else(|| Problem::not_found(format!("no subscription {id} of yours")))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
) -> Answer {
    if !state
        .ngsi
        .all()
        .iter()
        .any(|s| s.id == id && may_see(&me, s))
    {
        return Err(Problem::not_found(format!("no subscription {id} of yours")));
    }
    state
        .ngsi
        .update(|l| l.retain(|s| s.id != id))
        .map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn principal(gov: &Gov, name: &str) -> Option<Principal> {
    gov.principals(&Gov::admin_principal())
        .ok()?
        .into_iter()
        .find(|p| p.name.as_str() == name)
}

/// A row's identity for the boundary set: entity, instant observed, instant stored.
fn row_key(row: &Row, id_field: &str) -> String {
    format!(
        "{}|{}",
        row.get(id_field)
            .and_then(Value::as_str)
            .unwrap_or_default(),
        row.get("_ingested_at")
            .map(Value::to_string)
            .unwrap_or_default()
    )
}

/// One round for one subscription: reads what is new (as its owner), sends it, and moves
/// the cursor when the endpoint acknowledged. Returns whether anything was sent.
async fn round(state: &AppState, sub: &Sub) -> Result<bool, String> {
    let me = principal(&state.gov, &sub.owner)
        .ok_or_else(|| format!("principal {} no longer exists", sub.owner))?;
    let since = Timestamp(sub.cursor).to_string();
    // Rows of every type, with their stored instant; a type that filled its batch may have
    // more up to its last instant, so nothing at or past that instant is sent this round.
    let mut found_all: Vec<(i64, String, Value)> = Vec::new();
    let mut horizon = i64::MAX;
    for t in &sub.entity_types {
        let (def, ngsi) = dataset_for(state, t).map_err(|p| p.detail)?;
        let mut cond = vec![format!("_ingested_at >= TIMESTAMP '{since}'")];
        if let Some(q) = &sub.q {
            cond.push(format!("({})", q_to_sql(&def, &ngsi, q)?));
        }
        let watched: Vec<String> = sub
            .watched
            .iter()
            .map(|a| ngsi.field_of(a))
            .filter(|f| def.fields.iter().any(|d| &d.name == f))
            .map(|f| format!("{f} IS NOT NULL"))
            .collect();
        if !watched.is_empty() {
            cond.push(format!("({})", watched.join(" OR ")));
        }
        let sql = format!(
            "SELECT *, CAST(_ingested_at AS BIGINT) AS _ngsi_us FROM {} WHERE {} ORDER BY _ingested_at, {} LIMIT {BATCH}",
            def.name,
            cond.join(" AND "),
            ngsi.id
        );
        let found = rows(
            state,
            &me,
            &sql,
            &format!("NGSI-LD subscription {}", sub.id),
        )
        .await
        .map_err(|p| p.detail)?;
        let attrs = (!sub.attributes.is_empty()).then_some(sub.attributes.as_slice());
        let stamp = |row: &Row| {
            row.get("_ngsi_us")
                .and_then(Value::as_i64)
                .unwrap_or(sub.cursor)
        };
        if found.len() == BATCH
            && let Some(last) = found.last()
        {
            horizon = horizon.min(stamp(last));
        }
        for row in found {
            let us = stamp(&row);
            let key = row_key(&row, &ngsi.id);
            if us == sub.cursor && sub.at_cursor.contains(&key) {
                continue; // acknowledged before
            }
            found_all.push((us, key, to_entity(&def, &ngsi, &row, attrs, sub.key_values)));
        }
    }
    // Past the horizon, unless that leaves nothing (one instant holding a whole batch).
    if found_all.iter().any(|(us, _, _)| *us < horizon) {
        found_all.retain(|(us, _, _)| *us < horizon);
    }
    if found_all.is_empty() {
        return Ok(false);
    }
    let mut newest = (sub.cursor, sub.at_cursor.clone());
    let mut data = Vec::with_capacity(found_all.len());
    for (us, key, entity) in found_all {
        match us.cmp(&newest.0) {
            std::cmp::Ordering::Greater => newest = (us, vec![key]),
            std::cmp::Ordering::Equal => newest.1.push(key),
            std::cmp::Ordering::Less => {}
        }
        data.push(entity);
    }
    let notification = json!({
        "id": format!("urn:ngsi-ld:Notification:{}:{}", sub.id, newest.0),
        "type": "Notification",
        "subscriptionId": sub.id,
        "notifiedAt": now().to_string(),
        "data": data,
    });
    let uri = sub.uri.clone();
    let status = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        agent
            .post(&uri)
            .header("Content-Type", "application/json")
            .send(notification.to_string().as_bytes())
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    if !(200..300).contains(&status) {
        return Err(format!("the endpoint answered {status}"));
    }
    let id = sub.id.clone();
    state
        .ngsi
        .update(|l| {
            if let Some(s) = l.iter_mut().find(|s| s.id == id) {
                s.cursor = newest.0;
                s.at_cursor = newest.1;
                s.sent += 1;
                s.last_success = Some(now().to_string());
                s.last_error = None;
            }
        })
        .map_err(|e| format!("recording the delivery: {e}"))?;
    Ok(true)
}

/// Sends notifications until the server closes: every subscription each second (at once
/// again while one has more to send), a failing one after its back-off.
pub fn spawn_notifier(state: AppState) {
    tokio::spawn(async move {
        let mut closing = state.closing.subscribe();
        loop {
            let mut busy = false;
            for sub in state.ngsi.all() {
                let wait = state
                    .ngsi
                    .retry
                    .lock()
                    .expect("retry lock")
                    .get(&sub.id)
                    .copied();
                if wait.is_some_and(|(until, _)| Instant::now() < until) {
                    continue;
                }
                match round(&state, &sub).await {
                    Ok(sent) => {
                        busy |= sent;
                        state.ngsi.retry.lock().expect("retry lock").remove(&sub.id);
                    }
                    Err(error) => {
                        let tries = wait.map_or(0, |(_, n)| n) + 1;
                        let delay =
                            Duration::from_secs(1u64 << tries.min(6)).min(Duration::from_secs(60));
                        tracing::warn!(message = "An NGSI-LD notification failed; it will be sent again.", subscription = %sub.id, %error, retry_in_s = delay.as_secs());
                        state
                            .ngsi
                            .retry
                            .lock()
                            .expect("retry lock")
                            .insert(sub.id.clone(), (Instant::now() + delay, tries));
                        let id = sub.id.clone();
                        let _ = state.ngsi.update(|l| {
                            if let Some(s) = l.iter_mut().find(|s| s.id == id) {
                                s.failures += 1;
                                s.last_failure = Some(now().to_string());
                                s.last_error = Some(error);
                            }
                        });
                    }
                }
            }
            if *closing.borrow() {
                return;
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = closing.changed() => return,
                }
            }
        }
    });
}
