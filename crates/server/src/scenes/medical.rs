//! The medical scene (浙医互认): hospitals publish test results into `health.test_results`;
//! when a doctor orders a test, `POST /api/v1/medical/recognise` answers whether a result
//! another hospital has stands in for it, which, and why (or why not), by the rules of
//! `citybrain_medical` over the test types in `health.test_types`. Every answer is a data
//! call on that patient's results, audited, and a row of `medical.recognitions`, the ledger
//! the counters (tests avoided, money saved) and a patient's "who read my results"
//! (`GET /api/v1/medical/readers`) come from.
//!
//! State: every result is held in memory by patient (the feed replays the datasets from the
//! start at every start; a result delivered twice is kept once). An order is counted once:
//! its recognition id is the asking department and its order id, claimed before the row is
//! stored and loaded from the ledger at start, so asking again (a retry, a crash between the
//! store and the answer) answers without a second row.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_core::{DatasetName, Timestamp};
use citybrain_gov::{CallKind, Principal};
use citybrain_hub::{Change, Format, OnError, Positions};
use citybrain_medical::{Catalogue, Order, ResultIndex, StoredResult, TestType};
use citybrain_sql::{DataCall, Reader, ResultFormat};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ErrorCode;
use crate::extract::{Json, Query};
use crate::scene::{Running, Scene, SceneContext, Started, Worker, text_column};
use crate::{ApiError, AppState, blocking, now};

pub struct MedicalScene;

impl Scene for MedicalScene {
    fn name(&self) -> &'static str {
        "medical"
    }

    fn about(&self) -> &'static str {
        "Medical results recognised across hospitals (浙医互认): a repeat test avoided when a valid result exists"
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        citybrain_medical::DEFINITIONS.to_vec()
    }

    fn inputs(&self) -> Vec<&'static str> {
        vec![citybrain_medical::RESULTS, citybrain_medical::TYPES]
    }

    fn page(&self) -> Option<&'static str> {
        Some("medical")
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(recognise_route))
            .routes(routes!(readers))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            let live = LiveMedical {
                ledger: Some(Ledger::start(ctx.hub.clone())),
                ..LiveMedical::default()
            };
            let stored = ctx
                .sql
                .query(&format!(
                    "SELECT recognition_id FROM {}",
                    citybrain_medical::RECOGNITIONS
                ))
                .await
                .map_err(|e| e.to_string())?;
            live.answered
                .lock()
                .expect("answered lock")
                .extend(crate::scene::text_values(
                    &stored.batches,
                    "recognition_id",
                )?);
            Ok(Started::Running(Running {
                handle: Arc::new(live.clone()),
                worker: Some(Box::new(MedicalWorker { live })),
                // The index lives in memory: rebuilt from everything stored, every start.
                from: Positions::new(),
                on_stop: None,
            }))
        })
    }
}

/// What the routes read: the results by patient, the test types, the orders answered.
#[derive(Clone, Default)]
pub struct LiveMedical {
    state: Arc<RwLock<Known>>,
    answered: Arc<Mutex<HashSet<String>>>,
    ledger: Option<Ledger>,
}

/// A row to store in the ledger, and who waits for it.
type Pending = (Vec<u8>, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Group commit for the ledger: answers given at the same time store their rows in one
/// ingest (one fsync) instead of one each. A thread takes the first row waiting and every
/// other row queued by then, stores them together and tells each caller; a caller answers
/// only once its row is stored.
#[derive(Clone)]
struct Ledger {
    rows: std::sync::mpsc::Sender<Pending>,
}

/// Rows per ingest at most.
const LEDGER_BATCH: usize = 1_024;

impl Ledger {
    fn start(hub: Arc<citybrain_hub::Hub>) -> Self {
        let (rows, queue) = std::sync::mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("medical-ledger".into())
            .spawn(move || {
                let name =
                    DatasetName::parse(citybrain_medical::RECOGNITIONS).expect("a valid name");
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < LEDGER_BATCH {
                        match queue.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    let body: Vec<u8> = batch
                        .iter()
                        .flat_map(|(row, _)| row.iter().copied())
                        .collect();
                    let stored = hub
                        .ingest(&name, Format::Ndjson, &body, OnError::Reject, now())
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    for (_, waiting) in batch {
                        let _ = waiting.send(stored.clone());
                    }
                }
            })
            .expect("starting the medical ledger's thread");
        Self { rows }
    }

    /// Stores one NDJSON row (ending in a newline) and waits until it is on disk.
    async fn store(&self, row: Vec<u8>) -> Result<(), ApiError> {
        let (done, stored) = tokio::sync::oneshot::channel();
        self.rows
            .send((row, done))
            .map_err(|_| ApiError::internal("the medical ledger's writer stopped"))?;
        stored
            .await
            .map_err(|_| ApiError::internal("the medical ledger's writer stopped"))?
            .map_err(|e| ApiError::internal(format!("storing the recognition: {e}")))
    }
}

#[derive(Default)]
struct Known {
    catalogue: Catalogue,
    results: ResultIndex,
}

impl LiveMedical {
    /// Whether the order `recognition_id` (department/order id) was answered and stored.
    pub fn answered(&self, recognition_id: &str) -> bool {
        self.answered
            .lock()
            .expect("answered lock")
            .contains(recognition_id)
    }

    /// How many results and test types the scene holds.
    pub fn counts(&self) -> (usize, usize) {
        let known = self.state.read().expect("medical lock");
        (known.results.len(), known.catalogue.len())
    }
}

struct MedicalWorker {
    live: LiveMedical,
}

impl Worker for MedicalWorker {
    fn apply(&mut self, changes: Vec<Change>) {
        let mut known = self.live.state.write().expect("medical lock");
        for change in changes {
            for batch in &change.batches {
                let outcome = if change.dataset.as_str() == citybrain_medical::RESULTS {
                    add_results(&mut known.results, batch)
                } else {
                    add_types(&mut known.catalogue, batch)
                };
                if let Err(error) = outcome {
                    tracing::error!(message = "A batch was unusable for the medical scene.", dataset = change.dataset.as_str(), %error);
                }
            }
        }
    }
}

fn add_results(index: &mut ResultIndex, batch: &RecordBatch) -> Result<(), String> {
    let text = |name| text_column(batch, name);
    let (ids, patients, tests, sites, hospitals) = (
        text("result_id")?,
        text("patient_id")?,
        text("test_code")?,
        text("body_site")?,
        text("hospital")?,
    );
    let at = batch
        .column_by_name("performed_at")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or("no timestamp column performed_at")?;
    for i in 0..batch.num_rows() {
        index.insert(
            patients.value(i),
            StoredResult {
                result_id: ids.value(i).to_string(),
                test_code: tests.value(i).to_string(),
                body_site: (!sites.is_null(i)).then(|| sites.value(i).to_string()),
                hospital: hospitals.value(i).to_string(),
                performed_at: Timestamp(at.value(i)),
            },
        );
    }
    Ok(())
}

fn add_types(catalogue: &mut Catalogue, batch: &RecordBatch) -> Result<(), String> {
    let int = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| format!("no int column {name}"))
    };
    let (codes, names, names_zh) = (
        text_column(batch, "code")?,
        text_column(batch, "name")?,
        text_column(batch, "name_zh")?,
    );
    let (valid, child, price) = (
        int("validity_days")?,
        int("child_validity_days")?,
        int("price")?,
    );
    let by_site = batch
        .column_by_name("by_site")
        .and_then(|c| c.as_boolean_opt())
        .ok_or("no bool column by_site")?;
    let days = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    for i in 0..batch.num_rows() {
        catalogue.set(TestType {
            code: codes.value(i).to_string(),
            name: names.value(i).to_string(),
            name_zh: names_zh.value(i).to_string(),
            validity_days: days(valid.value(i)),
            child_validity_days: days(child.value(i)),
            by_site: by_site.value(i),
            price: price.value(i),
        });
    }
    Ok(())
}

/// A doctor's order, as the hospital sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RecognitionRequest {
    /// The hospital's id of the order: asking again for it answers again, counted once.
    pub order_id: String,
    /// The patient's id (resident id number), as the hospital holds it.
    pub patient_id: String,
    /// The test's code in health.test_types, e.g. CT.
    pub test_code: String,
    /// For imaging: where, e.g. chest.
    #[serde(default)]
    pub body_site: Option<String>,
    /// An emergency: a valid result is shown, and the test may be repeated.
    #[serde(default)]
    pub emergency: bool,
    /// The patient's condition changed since: the same.
    #[serde(default)]
    pub changed_condition: bool,
    /// The patient is under 14 (shorter validity).
    #[serde(default)]
    pub child: bool,
    /// When the test is ordered (RFC 3339); default now.
    #[serde(default)]
    pub at: Option<String>,
    /// Why the hospital reads the patient's results (kept in the audit trail).
    #[serde(default)]
    pub purpose: String,
}

#[derive(Serialize)]
struct RecognitionRow<'a> {
    recognition_id: &'a str,
    at: String,
    hospital: &'a str,
    principal: &'a str,
    patient_id: &'a str,
    test_code: &'a str,
    recognised: bool,
    reason: &'static str,
    result_id: Option<&'a str>,
    result_hospital: Option<&'a str>,
    saved: i64,
    purpose: &'a str,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidOrder, message)
}

/// An id as hospitals send them: letters, digits and `-_./:`, at most 64.
fn check_id(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field}: give 1 to 64 letters, digits or - _ . / : (got {:?})",
            value.chars().take(70).collect::<String>()
        )))
    }
}

/// The caller must see `health.test_results` with `patient_id` raw: a hospital matches its
/// own patient's id, which a pseudonym would never equal.
pub(crate) fn check_access(
    state: &AppState,
    me: &Principal,
    dataset: &str,
) -> Result<(), ApiError> {
    let name = DatasetName::parse(dataset).expect("a valid name");
    let def = state.hub.definition(&name)?;
    let view = state.gov.view(&def, me, now())?;
    let raw = view
        .columns
        .iter()
        .any(|c| c.name == "patient_id" && c.mask.is_none());
    if raw {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::GrantRequired,
            format!(
                "{dataset}: your department sees patient_id masked; ask health for a grant with patient_id raw (citybrain grants request {dataset} --raw patient_id --purpose ...)"
            ),
        ))
    }
}

/// Answers one order (see the module): decided, audited, and stored once in the ledger.
pub async fn recognise(
    state: &AppState,
    me: &Principal,
    request: RecognitionRequest,
) -> Result<serde_json::Value, ApiError> {
    check_id("order_id", &request.order_id)?;
    check_id("patient_id", &request.patient_id)?;
    check_id("test_code", &request.test_code)?;
    if let Some(site) = &request.body_site
        && (site.chars().count() > 40 || site.chars().any(char::is_control))
    {
        return Err(invalid(
            "body_site: at most 40 characters, no control characters",
        ));
    }
    citybrain_gov::check_purpose(&request.purpose).map_err(|e| invalid(e.to_string()))?;
    let at = match &request.at {
        Some(text) => Timestamp::parse(text).map_err(|e| {
            invalid(format!(
                "at: {e} (RFC 3339, e.g. 2026-11-22T09:30:00+08:00)"
            ))
        })?,
        None => now(),
    };
    check_access(state, me, citybrain_medical::RESULTS)?;
    let live = state.scenes.handle::<LiveMedical>("medical")?;
    let (decision, considered) = {
        let known = live.state.read().expect("medical lock");
        let results = known.results.of(&request.patient_id);
        let order = Order {
            test_code: &request.test_code,
            body_site: request.body_site.as_deref(),
            at,
            emergency: request.emergency,
            changed_condition: request.changed_condition,
            child: request.child,
        };
        (
            citybrain_medical::decide(&known.catalogue, &order, results),
            results.len(),
        )
    };
    let recognition_id = format!("{}/{}", me.department, request.order_id);
    // Claimed before it is stored, so two calls for one order store one row.
    let first = live
        .answered
        .lock()
        .expect("answered lock")
        .insert(recognition_id.clone());
    let purpose = if request.purpose.is_empty() {
        format!("recognition of a {} order", request.test_code)
    } else {
        request.purpose.clone()
    };
    let mut call = crate::read_call(
        me,
        &[citybrain_medical::RESULTS],
        &format!("POST /api/v1/medical/recognise order {}", request.order_id),
    );
    call.kind = CallKind::Read;
    call.purpose = purpose.clone();
    call.rows = considered as u64;
    let gov = state.gov.clone();
    let mut stored = blocking(move || Ok(gov.record(call)?)).await.map(|_| ());
    if stored.is_ok() && first {
        let result = decision.result.as_ref();
        let row = RecognitionRow {
            recognition_id: &recognition_id,
            at: at.to_string(),
            hospital: me.department.as_str(),
            principal: me.name.as_str(),
            patient_id: &request.patient_id,
            test_code: &request.test_code,
            recognised: decision.recognised,
            reason: decision.reason.name(),
            result_id: result.map(|r| r.result_id.as_str()),
            result_hospital: result.map(|r| r.hospital.as_str()),
            saved: decision.saved.0,
            purpose: &purpose,
        };
        let mut body = serde_json::to_vec(&row).map_err(|e| ApiError::internal(e.to_string()))?;
        body.push(b'\n');
        stored = match &live.ledger {
            Some(ledger) => ledger.store(body).await,
            None => Err(ApiError::internal("the medical ledger is not running")),
        };
    }
    if let Err(error) = stored {
        if first {
            live.answered
                .lock()
                .expect("answered lock")
                .remove(&recognition_id);
        }
        return Err(error);
    }
    Ok(json!({
        "recognition_id": recognition_id,
        "counted": first,
        "recognised": decision.recognised,
        "reason": decision.reason,
        "why": decision.why,
        "why_zh": decision.why_zh,
        "result": decision.result,
        "age_days": decision.age_days,
        "valid_days": decision.valid_days,
        "saved_fen": decision.saved.0,
    }))
}

/// Whether a valid result from any hospital stands in for a test being ordered, which, and
/// why (or why not). A read of the patient's results by the calling department: audited, and
/// a row of medical.recognitions (asking again for one order_id adds none).
#[utoipa::path(post, path = "/medical/recognise", tag = "medical", request_body(content = RecognitionRequest, content_type = "application/json"), responses((status = 200, description = "The answer: recognised or not, the result, why (en, zh), the money saved", body = Object)))]
async fn recognise_route(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<RecognitionRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(recognise(&state, &me, request).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReadersParams {
    /// The patient's id.
    patient_id: String,
    /// Why you ask (kept in the audit trail).
    #[serde(default)]
    purpose: String,
}

/// Who read a patient's results through recognition: when, which hospital, for which test,
/// and why; newest first. For callers that see medical.recognitions with patient_id raw
/// (health, or a citizen service granted it), read through the caller's grants and audited.
#[utoipa::path(get, path = "/medical/readers", tag = "medical", params(ReadersParams), responses((status = 200, description = "The reads of this patient's results, newest first", body = Object)))]
async fn readers(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Query(params): Query<ReadersParams>,
) -> Result<Response, ApiError> {
    check_id("patient_id", &params.patient_id)?;
    check_access(&state, &me, citybrain_medical::RECOGNITIONS)?;
    // The id is checked to letters, digits and - _ . / : above, so it is safe in a literal.
    let sql = format!(
        "SELECT at, hospital, principal, test_code, recognised, reason, result_hospital, purpose \
           FROM {} WHERE patient_id = '{}' ORDER BY at DESC LIMIT 1000",
        citybrain_medical::RECOGNITIONS,
        params.patient_id
    );
    let call = DataCall {
        reader: Reader::Principal(me),
        purpose: if params.purpose.is_empty() {
            "who read a patient's results".into()
        } else {
            params.purpose
        },
        kind: CallKind::Sql,
        now: now(),
    };
    let result = state.sql.query_as(&sql, &call).await?;
    let rows: serde_json::Value =
        serde_json::from_slice(&citybrain_sql::encode(&result, ResultFormat::Json)?)
            .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({ "patient_id": params.patient_id, "reads": rows })).into_response())
}
