//! Cockpits as files: the definitions in `DATA/cockpits/` (one `<id>.toml` or `<id>.json`
//! each, kept as their author wrote them, comments included), the routes that list, apply
//! and delete them, and the one that runs a panel's query **as the viewer**: every panel is
//! a governed, masked, audited data call under the viewer's own grants, so a panel the
//! viewer may not read says which grant it needs and shows nothing. The format and its
//! checks are `citybrain-cockpits`'.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use citybrain_cockpits::{Cockpit, Kind, Panel, Period};
use citybrain_core::{DepartmentId, Timestamp};
use citybrain_gov::{Call, CallKind, GovError, Outcome, Principal};
use citybrain_sql::{DataCall, Reader, ResultFormat, SqlError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ErrorCode;
use crate::extract::{Json, Path, Query};
use crate::{ApiError, AppState, SMALL_BODY_LIMIT, blocking, now, read_body};

/// Where the definitions live.
pub fn dir(data: &FsPath) -> PathBuf {
    data.join("cockpits")
}

/// One stored definition and its file.
#[derive(Debug, Clone)]
pub struct Stored {
    pub cockpit: Cockpit,
    pub file: PathBuf,
}

/// Every definition in `dir`, and the files that do not read (each with why), so a hand
/// edit that broke a file shows up instead of a cockpit silently missing.
pub fn load(dir: &FsPath) -> (Vec<Stored>, Vec<(String, String)>) {
    let mut good = Vec::new();
    let mut broken = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (good, broken);
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("toml" | "json")
            )
        })
        .collect();
    files.sort();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let read = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| Cockpit::from_file_text(&name, &text).map_err(|e| e.to_string()));
        match read {
            Ok(cockpit) if file.file_stem().is_some_and(|s| *s == *cockpit.id) => {
                good.push(Stored { cockpit, file })
            }
            Ok(cockpit) => broken.push((
                name,
                format!(
                    "the file holds cockpit {:?}; name it {}.toml",
                    cockpit.id, cockpit.id
                ),
            )),
            Err(e) => broken.push((name, e)),
        }
    }
    good.sort_by(|a, b| (a.cockpit.order, &a.cockpit.id).cmp(&(b.cockpit.order, &b.cockpit.id)));
    (good, broken)
}

fn may_open(me: &Principal, cockpit: &Cockpit) -> bool {
    me.is_hub_admin() || cockpit.visible_to(me.department.as_str())
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::CockpitNotFound,
        format!(
            "no cockpit {id:?} that your department may open; GET /api/v1/cockpits lists yours"
        ),
    )
}

/// The cockpit `id` and its file if `me` may open it (404 otherwise, the same as one that
/// does not exist).
fn find(state: &AppState, me: &Principal, id: &str) -> Result<Stored, ApiError> {
    load(&dir(state.hub.dir()))
        .0
        .into_iter()
        .find(|s| s.cockpit.id == id && may_open(me, &s.cockpit))
        .ok_or_else(|| not_found(id))
}

/// [`find`] off the async runtime.
pub(crate) async fn find_for(
    state: &AppState,
    me: &Principal,
    id: &str,
) -> Result<Cockpit, ApiError> {
    let (state, me, id) = (state.clone(), me.clone(), id.to_string());
    blocking(move || find(&state, &me, &id).map(|s| s.cockpit)).await
}

#[utoipa::path(get, path = "/cockpits", tag = "cockpits", responses((status = 200, description = "The cockpits your department may open, in order; for admins also the files that do not read", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let data = state.hub.dir().to_path_buf();
    let (good, broken) = blocking(move || Ok(load(&dir(&data)))).await?;
    let cockpits: Vec<Value> = good
        .iter()
        .map(|s| &s.cockpit)
        .filter(|c| may_open(&me, c))
        .map(|c| {
            json!({
                "id": c.id,
                "department": c.department,
                "title": c.title,
                "purpose": c.purpose,
                "panels": c.panels.len(),
            })
        })
        .collect();
    let mut body = json!({ "cockpits": cockpits });
    if me.role == citybrain_gov::Role::Admin {
        body["unreadable"] = broken
            .iter()
            .map(|(file, why)| json!({ "file": file, "problem": why }))
            .collect();
    }
    Ok(Json(body).into_response())
}

#[utoipa::path(get, path = "/cockpits/{id}", tag = "cockpits", params(("id" = String, Path, description = "The cockpit")), responses((status = 200, description = "The cockpit's definition", body = Object)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let cockpit = find_for(&state, &me, &id).await?;
    Ok(Json(cockpit).into_response())
}

/// What an apply did.
#[derive(Debug, serde::Serialize)]
pub struct Applied {
    pub id: String,
    pub created: bool,
    /// Panels the applying principal may not read itself (they are stored: the viewers'
    /// grants decide).
    pub warnings: Vec<String>,
}

/// Checks and stores a definition (`name` is the file name it came as, `.toml` or
/// `.json`): the format's checks, the departments, the applier's right, and every panel's
/// query planned as the applier (a statement that does not plan, or lacks the columns its
/// kind draws, is refused with the panel named).
pub async fn apply(
    state: &AppState,
    me: &Principal,
    name: &str,
    text: &str,
) -> Result<Applied, ApiError> {
    let cockpit = Cockpit::from_file_text(name, text).map_err(|e| {
        ApiError::bad_request(ErrorCode::InvalidCockpit, e.to_string())
            .with_details(json!(e.problems))
    })?;
    let department = DepartmentId::parse(&cockpit.department)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidCockpit, e.to_string()))?;
    if !me.administers(&department) {
        return Err(GovError::Forbidden(format!(
            "{} ({} in {}) may not change the cockpits of {department}; its admins may",
            me.name,
            me.role.name(),
            me.department
        ))
        .into());
    }
    for d in std::iter::once(&cockpit.department).chain(&cockpit.shared_with) {
        let id = DepartmentId::parse(d)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidCockpit, e.to_string()))?;
        if !state.gov.department_exists(&id)? {
            return Err(ApiError::bad_request(
                ErrorCode::UnknownDepartment,
                format!("cockpit {}: department {d} does not exist", cockpit.id),
            ));
        }
    }
    let period = Period::around(now(), &state.city.time_zone);
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for panel in &cockpit.panels {
        let sql = citybrain_cockpits::bind(&panel.sql, &period);
        let call = data_call(me, &cockpit, panel);
        match state.sql.describe_as(&sql, &call).await {
            Ok(described) => {
                let names: Vec<&str> = described
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                if let Err(missing) = check_columns(panel, &names) {
                    problems.push(missing);
                }
            }
            Err(SqlError::Denied(why)) => warnings.push(format!(
                "panel {:?}: you may not read it yourself ({why}); its viewers' grants decide",
                panel.id
            )),
            Err(e) => problems.push(format!("panel {:?}: {e}", panel.id)),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidCockpit,
            format!("{name}: {}", problems.join("; ")),
        )
        .with_details(json!(problems)));
    }
    let folder = dir(state.hub.dir());
    let (id, text) = (cockpit.id.clone(), text.to_string());
    let json = name.ends_with(".json") || text.trim_start().starts_with('{');
    let created = blocking(move || {
        write_durably(&folder, &id, json, &text).map_err(|e| {
            ApiError::internal(format!("storing cockpit {id} in {}: {e}", folder.display()))
        })
    })
    .await?;
    record(state, me, &format!("apply cockpit {}", cockpit.id))?;
    Ok(Applied {
        id: cockpit.id,
        created,
        warnings,
    })
}

/// The columns a panel's kind draws, named when missing.
fn check_columns(panel: &Panel, names: &[&str]) -> Result<(), String> {
    let mut missing: Vec<&str> = panel
        .kind
        .required_columns(panel.layer)
        .iter()
        .copied()
        .filter(|c| !names.contains(c))
        .collect();
    if panel.kind == Kind::Map
        && panel.layer == Some(citybrain_cockpits::Layer::Points)
        && !names.contains(&"loc")
        && !(names.contains(&"lon") && names.contains(&"lat"))
    {
        missing.push("loc (or lon and lat)");
    }
    missing.extend(
        panel
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|c| !names.contains(c)),
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "panel {:?}: a {:?} panel needs the column(s) {}; the query returns {}",
            panel.id,
            panel.kind,
            missing.join(", "),
            names.join(", ")
        ))
    }
}

/// Writes `<id>.toml` (or `.json`) whole or not at all, and drops the other spelling.
/// Whether the cockpit is new.
fn write_durably(folder: &FsPath, id: &str, json: bool, text: &str) -> std::io::Result<bool> {
    use std::io::Write;
    std::fs::create_dir_all(folder)?;
    let (ext, other) = if json {
        ("json", "toml")
    } else {
        ("toml", "json")
    };
    let path = folder.join(format!("{id}.{ext}"));
    let other = folder.join(format!("{id}.{other}"));
    let created = !path.exists() && !other.exists();
    // A name of its own per call: two applies of one cockpit at once must not share it.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = folder.join(format!(".{id}.{ext}.{}.{call}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if other.exists() {
        std::fs::remove_file(&other)?;
    }
    std::fs::File::open(folder)?.sync_all()?;
    Ok(created)
}

fn record(state: &AppState, me: &Principal, what: &str) -> Result<(), ApiError> {
    let mut call = Call::new(
        now(),
        me.name.as_str(),
        me.department.as_str(),
        CallKind::Manage,
    );
    call.outcome = Outcome::Ok;
    call.detail = what.to_string();
    state.gov.record(call)?;
    Ok(())
}

#[utoipa::path(put, path = "/cockpits/{id}", tag = "cockpits", params(("id" = String, Path, description = "The cockpit")), request_body(content = String, description = "The definition: TOML (any Content-Type but JSON, e.g. text/plain or application/toml) or JSON (application/json)", content_type = "text/plain"), responses((status = 200, description = "Applied: created or replaced, with warnings", body = Object)))]
pub async fn put(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, SMALL_BODY_LIMIT).await?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::bad_request(ErrorCode::InvalidCockpit, "the definition is not UTF-8")
    })?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let name = format!("{id}.{}", if json { "json" } else { "toml" });
    let declared = Cockpit::from_file_text(&name, text).map(|c| c.id);
    if let Ok(declared) = &declared
        && *declared != id
    {
        return Err(ApiError::bad_request(
            ErrorCode::NameMismatch,
            format!("the path names cockpit {id} but the definition is {declared}"),
        ));
    }
    let applied = apply(&state, &me, &name, text).await?;
    let status = if applied.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(applied)).into_response())
}

#[utoipa::path(delete, path = "/cockpits/{id}", tag = "cockpits", params(("id" = String, Path, description = "The cockpit")), responses((status = 200, description = "Deleted", body = Object)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stored = {
        let (state, me, id) = (state.clone(), me.clone(), id.clone());
        blocking(move || find(&state, &me, &id)).await?
    };
    let department = DepartmentId::parse(&stored.cockpit.department)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !me.administers(&department) {
        return Err(GovError::Forbidden(format!(
            "{} may not delete the cockpits of {department}; its admins may",
            me.name
        ))
        .into());
    }
    std::fs::remove_file(&stored.file)
        .map_err(|e| ApiError::internal(format!("deleting {}: {e}", stored.file.display())))?;
    record(&state, &me, &format!("delete cockpit {id}"))?;
    Ok(Json(json!({ "deleted": id })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PanelParams {
    /// The instant shown (RFC 3339); default: the city's live time (the newest passage the
    /// traffic indices applied), else now.
    at: Option<String>,
    /// Download the panel's whole result instead (not cut to the panel's limit): `excel`
    /// (CSV with a UTF-8 byte-order mark), `xlsx`, `csv` or `geojson`. Audited as an
    /// export, masked as every answer.
    format: Option<String>,
}

/// The file a panel's download is named as.
fn download_name(cockpit: &str, panel: &str, at: Timestamp, format: ResultFormat) -> String {
    let ext = match format {
        ResultFormat::Xlsx => "xlsx",
        ResultFormat::GeoJson => "geojson",
        ResultFormat::ArrowIpc => "arrow",
        ResultFormat::Json => "json",
        ResultFormat::Csv | ResultFormat::CsvExcel => "csv",
    };
    let day: String = at.to_string().chars().take(10).collect();
    format!("{cockpit}-{panel}-{day}.{ext}")
}

/// What a cockpit may be asked to show: the years the city's zone table covers (and the
/// engine's nanosecond timestamps hold).
pub(crate) const RANGE: &str = "pick an instant between 1970 and 2100";

pub(crate) fn in_range(at: Timestamp) -> bool {
    (0..4_102_444_800_000_000).contains(&at.0)
}

/// The instant a cockpit shows when the viewer names none.
pub fn live_time(state: &AppState) -> Timestamp {
    state
        .scenes
        .handle::<crate::scenes::indices::LiveIndices>("indices")
        .ok()
        .and_then(|h| h.latest())
        .map_or_else(now, |l| l.at)
}

fn data_call(me: &Principal, cockpit: &Cockpit, panel: &Panel) -> DataCall {
    DataCall {
        reader: Reader::Principal(me.clone()),
        purpose: format!("cockpit {}: {}", cockpit.id, panel.title.en),
        kind: CallKind::Sql,
        now: now(),
    }
}

/// A panel's rows as the viewer may see them, or why it may not.
pub enum PanelResult {
    Rows(Vec<serde_json::Map<String, Value>>),
    /// The viewer lacks a grant (the message names it); nothing was read.
    Denied(String),
}

/// Runs one panel's query as `me` over `period` (audited with the cockpit as purpose).
pub async fn run_panel(
    state: &AppState,
    me: &Principal,
    cockpit: &Cockpit,
    panel: &Panel,
    period: &Period,
) -> Result<PanelResult, ApiError> {
    let sql = citybrain_cockpits::bind(&panel.sql, period);
    let result = match state
        .sql
        .query_as(&sql, &data_call(me, cockpit, panel))
        .await
    {
        Ok(result) => result,
        Err(SqlError::Denied(why)) => return Ok(PanelResult::Denied(why)),
        Err(e) => return Err(e.into()),
    };
    let names: Vec<&str> = result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    check_columns(panel, &names)
        .map_err(|e| ApiError::bad_request(ErrorCode::PanelMisdefined, e))?;
    let bytes = citybrain_sql::encode(&result, ResultFormat::Json)?;
    let mut rows: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("reading a panel's rows back: {e}")))?;
    let limit = match panel.kind {
        Kind::Kpi => 1,
        Kind::Ranking | Kind::Alerts => panel.limit.unwrap_or(10) as usize,
        Kind::Series | Kind::Map => panel.limit.map_or(usize::MAX, |l| l as usize),
    };
    rows.truncate(limit);
    Ok(PanelResult::Rows(rows))
}

#[utoipa::path(get, path = "/cockpits/{id}/panels/{panel}", tag = "cockpits", params(("id" = String, Path, description = "The cockpit"), ("panel" = String, Path, description = "The panel"), PanelParams), responses((status = 200, description = "The panel's rows as the viewer may see them (or `denied` with the grant it needs), the period, and the level of a KPI", body = Object)))]
pub async fn panel(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Path((id, panel_id)): Path<(String, String)>,
    Query(params): Query<PanelParams>,
) -> Result<Response, ApiError> {
    let at = match params.at.as_deref() {
        Some(text) => Timestamp::parse(text)
            .map_err(|e| e.to_string())
            .and_then(|at| in_range(at).then_some(at).ok_or_else(|| RANGE.to_string()))
            .map_err(|e| {
                ApiError::bad_request(ErrorCode::InvalidQuery, format!("at={text}: {e}"))
            })?,
        None => live_time(&state),
    };
    let cockpit = find_for(&state, &me, &id).await?;
    let panel = cockpit.panel(&panel_id).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::CockpitNotFound,
            format!("cockpit {id} has no panel {panel_id:?}"),
        )
    })?;
    let period = Period::around(at, &state.city.time_zone);
    if let Some(text) = params.format.as_deref() {
        let format = ResultFormat::parse(text)
            .filter(|f| *f != ResultFormat::Json)
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidFormat,
                    format!("format={text}: a panel downloads as excel (CSV with a UTF-8 byte-order mark), xlsx, csv, arrow or geojson"),
                )
            })?;
        let sql = citybrain_cockpits::bind(&panel.sql, &period);
        let mut call = data_call(&me, &cockpit, &panel);
        call.kind = CallKind::Export;
        let result = state.sql.query_as(&sql, &call).await?;
        let bytes = citybrain_sql::encode(&result, format)?;
        let name = download_name(&cockpit.id, &panel.id, period.at, format);
        return Ok((
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    format.content_type().to_string(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            bytes,
        )
            .into_response());
    }
    let mut body = json!({
        "cockpit": cockpit.id,
        "panel": panel.id,
        "at": period.at.to_string(),
        "day_start": period.day_start.to_string(),
        "day_end": period.day_end.to_string(),
    });
    match run_panel(&state, &me, &cockpit, &panel, &period).await? {
        PanelResult::Rows(rows) => {
            if panel.kind == Kind::Kpi
                && let Some(value) = rows
                    .first()
                    .and_then(|r| r.get("value"))
                    .and_then(Value::as_f64)
            {
                body["level"] = json!(panel.level(value).map(|l| l.name()));
            }
            body["rows"] = Value::Array(rows.into_iter().map(Value::Object).collect());
        }
        PanelResult::Denied(why) => body["denied"] = json!(why),
    }
    Ok(Json(body).into_response())
}
