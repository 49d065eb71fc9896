//! Treat first, pay later (先看病后付费): hospitals' visits and payments, insurance
//! memberships and credit ratings come through the change feed into
//! `citybrain_medical::paylater::Book`, which decides each visit (on credit, or declined and
//! why), consolidates a patient's day into one bill, and on the data's clock sends the
//! reminder and the overdue notice. Every output is a row of `paylater.charges` or
//! `paylater.bill_steps`; a notifier sends the reminder and notice rows. At the desk,
//! `POST /api/v1/paylater/line` says whether a patient may be treated first, what they owe and
//! their bills.
//!
//! Exactly once: the book lives in memory and is rebuilt from the feed at every start, but
//! the stored charges and steps are loaded first, so the replay decides no visit twice and
//! sends no step twice (see the book). Live changes are applied as they were stored; the
//! catch-up comes dataset by dataset, so replayed changes are held until it ends and applied
//! in the order things happened.

use std::sync::{Arc, RwLock};

use arrow::array::{Array, RecordBatch};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_core::{Fen, Timestamp};
use citybrain_gov::{CallKind, Principal};
use citybrain_hub::{Change, Hub, Positions};
use citybrain_medical::paylater::{
    self, BillStep, Book, Charge, Declined, Input, Outputs, Payment, Step, Terms, Visit,
};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ErrorCode;
use crate::extract::Json;
use crate::scene::{Running, Scene, SceneContext, Started, Worker, ints, text_column, timestamps};
use crate::{ApiError, AppState, blocking};

/// Where a city sets its terms, in the data directory.
pub const TERMS_FILE: &str = "paylater.toml";

pub struct PayLaterScene;

impl Scene for PayLaterScene {
    fn name(&self) -> &'static str {
        "paylater"
    }

    fn about(&self) -> &'static str {
        "Treat first, pay later (先看病后付费): a credit line per patient, a day's visits in one bill, reminders and overdue notices once"
    }

    fn definitions(&self) -> Vec<(&'static str, &'static str)> {
        paylater::DEFINITIONS.to_vec()
    }

    fn inputs(&self) -> Vec<&'static str> {
        vec![
            paylater::MEMBERS,
            paylater::RATINGS,
            paylater::VISITS,
            paylater::PAYMENTS,
        ]
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new().routes(routes!(line))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        _committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            let terms = load_terms(&ctx.config.data_dir)?;
            let mut book = Book::new(terms, ctx.config.city.time_zone.clone());
            // What was stored first, so the replay decides and sends nothing twice.
            let charges = ctx
                .sql
                .query(&format!(
                    "SELECT visit_id, patient_id, hospital, at, amount, bill_id, declined FROM {} ORDER BY at, visit_id",
                    paylater::CHARGES
                ))
                .await
                .map_err(|e| e.to_string())?;
            for batch in &charges.batches {
                for charge in charges_of(batch)? {
                    book.restore_charge(&charge);
                }
            }
            let steps = ctx
                .sql
                .query(&format!(
                    "SELECT bill_id, step FROM {}",
                    paylater::BILL_STEPS
                ))
                .await
                .map_err(|e| e.to_string())?;
            for batch in &steps.batches {
                let (bills, names) = (text_column(batch, "bill_id")?, text_column(batch, "step")?);
                for i in 0..batch.num_rows() {
                    if let Some(step) = Step::parse(names.value(i)) {
                        book.restore_step(bills.value(i), step);
                    }
                }
            }
            let late = book.restored();
            let live = LivePayLater {
                book: Arc::new(RwLock::new(book)),
            };
            let worker = PayLaterWorker {
                live: live.clone(),
                hub: ctx.hub.clone(),
                events: ctx.events.clone(),
                held: Vec::new(),
            };
            worker.store(late);
            Ok(Started::Running(Running {
                handle: Arc::new(live),
                worker: Some(Box::new(worker)),
                // The book lives in memory: rebuilt from everything stored, every start.
                from: Positions::new(),
                on_stop: None,
            }))
        })
    }
}

/// The terms in `DATA/paylater.toml`, or the defaults when there is none.
pub fn load_terms(data_dir: &std::path::Path) -> Result<Terms, String> {
    let path = data_dir.join(TERMS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Terms::parse(&text).map_err(|e| {
            format!(
                "{}: {e} (fields: limit, window_hours, remind_hours, refused_ratings, insurance_required)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Terms::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// What the route reads.
#[derive(Clone)]
pub struct LivePayLater {
    book: Arc<RwLock<Book>>,
}

impl LivePayLater {
    /// The data's clock and the number of bills: to wait on in tests.
    pub fn progress(&self) -> (Timestamp, usize) {
        let book = self.book.read().expect("paylater lock");
        (book.clock(), book.bills())
    }
}

struct PayLaterWorker {
    live: LivePayLater,
    hub: Arc<Hub>,
    events: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Replayed inputs, held until the catch-up ends.
    held: Vec<Input>,
}

#[derive(Serialize)]
struct ChargeRow<'a> {
    visit_id: &'a str,
    patient_id: &'a str,
    hospital: &'a str,
    at: String,
    amount: i64,
    on_credit: bool,
    bill_id: Option<&'a str>,
    declined: Option<&'static str>,
}

#[derive(Serialize)]
struct StepRow<'a> {
    step_id: String,
    bill_id: &'a str,
    patient_id: &'a str,
    step: &'static str,
    at: String,
    amount: i64,
    due_at: String,
}

impl PayLaterWorker {
    /// Stores the charges, then the steps: a stop between the two loses only steps, which
    /// the next start sends (see `Book::restored`).
    fn store(&self, out: Outputs) {
        let charges: Vec<ChargeRow> = out
            .charges
            .iter()
            .map(|c| ChargeRow {
                visit_id: &c.visit_id,
                patient_id: &c.patient_id,
                hospital: &c.hospital,
                at: c.at.to_string(),
                amount: c.amount.0,
                on_credit: c.declined.is_none(),
                bill_id: c.bill_id.as_deref(),
                declined: c.declined.map(Declined::name),
            })
            .collect();
        crate::scene::store(&self.hub, paylater::CHARGES, &charges, &self.events);
        let steps: Vec<StepRow> = out
            .steps
            .iter()
            .map(|s: &BillStep| StepRow {
                step_id: s.id(),
                bill_id: &s.bill_id,
                patient_id: &s.patient_id,
                step: s.step.name(),
                at: s.at.to_string(),
                amount: s.amount.0,
                due_at: s.due_at.to_string(),
            })
            .collect();
        crate::scene::store(&self.hub, paylater::BILL_STEPS, &steps, &self.events);
    }

    /// Applies `inputs`: live ones in the order they were stored (the clock is the latest
    /// seen, as they arrive), the catch-up's in the order things happened.
    fn run(&self, mut inputs: Vec<Input>, sort: bool) {
        if sort {
            Input::sort(&mut inputs);
        }
        let mut all = Outputs::default();
        {
            let mut book = self.live.book.write().expect("paylater lock");
            for input in &inputs {
                let out = book.apply(input);
                all.charges.extend(out.charges);
                all.steps.extend(out.steps);
            }
        }
        self.store(all);
    }
}

impl Worker for PayLaterWorker {
    fn apply(&mut self, changes: Vec<Change>) {
        let mut inputs = Vec::new();
        let mut replayed = false;
        for change in changes {
            replayed |= change.replayed;
            for batch in &change.batches {
                if let Err(error) = inputs_of(change.dataset.as_str(), batch, &mut inputs) {
                    tracing::error!(message = "A batch was unusable for the pay-later scene.", dataset = change.dataset.as_str(), %error);
                }
            }
        }
        if replayed {
            self.held.extend(inputs);
        } else {
            self.run(inputs, false);
        }
    }

    fn caught_up(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.run(held, true);
    }
}

fn inputs_of(dataset: &str, batch: &RecordBatch, out: &mut Vec<Input>) -> Result<(), String> {
    let text = |name| text_column(batch, name);
    let at = timestamps(batch, "at")?;
    match dataset {
        paylater::MEMBERS => {
            let (patients, status) = (text("patient_id")?, text("status")?);
            for i in 0..batch.num_rows() {
                out.push(Input::Member {
                    patient_id: patients.value(i).to_string(),
                    active: status.value(i) == "active",
                    at: Timestamp(at.value(i)),
                });
            }
        }
        paylater::RATINGS => {
            let (patients, ratings) = (text("patient_id")?, text("rating")?);
            for i in 0..batch.num_rows() {
                out.push(Input::Rating {
                    patient_id: patients.value(i).to_string(),
                    rating: ratings.value(i).to_string(),
                    at: Timestamp(at.value(i)),
                });
            }
        }
        paylater::VISITS => {
            let (ids, patients, hospitals) =
                (text("visit_id")?, text("patient_id")?, text("hospital")?);
            let amount = ints(batch, "amount")?;
            for i in 0..batch.num_rows() {
                out.push(Input::Visit(Visit {
                    visit_id: ids.value(i).to_string(),
                    patient_id: patients.value(i).to_string(),
                    hospital: hospitals.value(i).to_string(),
                    at: Timestamp(at.value(i)),
                    amount: Fen(amount.value(i)),
                }));
            }
        }
        paylater::PAYMENTS => {
            let (ids, visits) = (text("payment_id")?, text("visit_id")?);
            let amount = ints(batch, "amount")?;
            for i in 0..batch.num_rows() {
                out.push(Input::Payment(Payment {
                    payment_id: ids.value(i).to_string(),
                    visit_id: visits.value(i).to_string(),
                    amount: Fen(amount.value(i)),
                    at: Timestamp(at.value(i)),
                }));
            }
        }
        other => return Err(format!("not an input of the scene: {other}")),
    }
    Ok(())
}

fn charges_of(batch: &RecordBatch) -> Result<Vec<Charge>, String> {
    let text = |name| text_column(batch, name);
    let (visits, patients, hospitals, bills, declined) = (
        text("visit_id")?,
        text("patient_id")?,
        text("hospital")?,
        text("bill_id")?,
        text("declined")?,
    );
    let (at, amount) = (timestamps(batch, "at")?, ints(batch, "amount")?);
    Ok((0..batch.num_rows())
        .map(|i| Charge {
            visit_id: visits.value(i).to_string(),
            patient_id: patients.value(i).to_string(),
            hospital: hospitals.value(i).to_string(),
            at: Timestamp(at.value(i)),
            amount: Fen(amount.value(i)),
            bill_id: (!bills.is_null(i)).then(|| bills.value(i).to_string()),
            declined: if declined.is_null(i) {
                None
            } else {
                Declined::parse(declined.value(i))
            },
        })
        .collect())
}

/// A desk's question: may this patient be treated first, and pay later?
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct LineRequest {
    /// The patient's id (resident id number), as the hospital holds it.
    pub patient_id: String,
    /// What the visit is expected to cost, in fen (default 0: only whether the line is open).
    #[serde(default)]
    pub amount_fen: i64,
    /// Why the hospital looks (kept in the audit trail).
    #[serde(default)]
    pub purpose: String,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidBody, message)
}

/// Whether a patient may be treated first and pay later, for a visit of `amount_fen`: the
/// line's limit, what they owe, what is left, why a visit would be declined, and their bills.
/// For callers that see paylater.charges with patient_id raw (health, or a hospital granted
/// it); a read of that patient's bills, audited.
#[utoipa::path(post, path = "/paylater/line", tag = "paylater", request_body(content = LineRequest, content_type = "application/json"), responses((status = 200, description = "The patient's line: on credit or not and why (en, zh), limit, owed, available, bills", body = Object)))]
async fn line(
    State(state): State<AppState>,
    Extension(me): Extension<Principal>,
    Json(request): Json<LineRequest>,
) -> Result<Response, ApiError> {
    super::services::check_key("patient_id", &request.patient_id, ErrorCode::InvalidBody)?;
    if !(0..=10_000_000_000).contains(&request.amount_fen) {
        return Err(invalid(
            "amount_fen: give what the visit costs in fen, 0 to 10,000,000,000",
        ));
    }
    citybrain_gov::check_purpose(&request.purpose).map_err(|e| invalid(e.to_string()))?;
    super::medical::check_access(&state, &me, paylater::CHARGES)?;
    let live = state.scenes.handle::<LivePayLater>("paylater")?;
    let (answer, clock) = {
        let book = live.book.read().expect("paylater lock");
        let mut answer = book.line(&request.patient_id);
        answer.declined = book.decline(&request.patient_id, Fen(request.amount_fen));
        (answer, book.clock())
    };
    let mut call = crate::read_call(
        &me,
        &[paylater::CHARGES, paylater::BILL_STEPS],
        "POST /api/v1/paylater/line",
    );
    call.kind = CallKind::Read;
    call.purpose = if request.purpose.is_empty() {
        "treat first, pay later: the patient's line at the desk".into()
    } else {
        request.purpose.clone()
    };
    call.rows = answer.bills.len() as u64;
    let gov = state.gov.clone();
    blocking(move || Ok(gov.record(call)?)).await?;
    let (why, why_zh) = answer
        .declined
        .map_or(("the line is open", "可先诊疗后付费"), Declined::why);
    Ok(Json(json!({
        "patient_id": request.patient_id,
        "on_credit": answer.declined.is_none(),
        "declined": answer.declined,
        "why": why,
        "why_zh": why_zh,
        "limit_fen": answer.limit.0,
        "owed_fen": answer.owed.0,
        "available_fen": answer.available.0,
        "bills": answer.bills,
        "as_of": clock.to_string(),
    }))
    .into_response())
}
