//! The thresholds scene (超标告警): sensor readings (air and water quality, noise, waste
//! containers, weather: the Smart Data Models datasets of the village map, or any dataset a
//! rule names) are compared with the limits of `thresholds.toml` as they arrive on the
//! change feed; a reading past a limit opens an alert on the board (`kind = threshold`, the
//! sensor's entity id in `subject_ref`), one back past the safer limit closes it.
//!
//! Exactly once: the board resumes from the alerts `alerts.events` holds open, and every
//! (alert id, state) stored is remembered, so readings the feed hands over again after a
//! crash store nothing twice. Rules are `DATA/alerts/thresholds.toml`, else the shipped
//! ones; a rule whose dataset is missing at start is skipped (say so on
//! `GET /api/v1/thresholds`); a dataset created later is watched from the next start.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Json, Response};
use citybrain_alerts::threshold::{Reading, Rules, ThresholdBoard};
use citybrain_alerts::{AlertEvent, State as AlertState};
use citybrain_core::{DatasetName, Timestamp};
use citybrain_gov::Principal;
use citybrain_hub::{Change, Positions};
use futures::future::BoxFuture;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::scene::{Running, Scene, SceneContext, Started, Worker, text_column, timestamps};
use crate::scenes::alerts::LiveAlerts;
use crate::{ApiError, AppState};

/// A city's own rules, in the data directory.
pub const RULES_FILE: &str = "alerts/thresholds.toml";

#[derive(Default)]
pub struct ThresholdsScene {
    /// The datasets the rules read, known once the rules are loaded at start.
    inputs: OnceLock<Vec<&'static str>>,
}

impl Scene for ThresholdsScene {
    fn name(&self) -> &'static str {
        "thresholds"
    }

    fn about(&self) -> &'static str {
        "Threshold alerts (超标告警): sensor readings past the limits of thresholds.toml open an alert on the board"
    }

    /// In a cluster, on one node at a time: its inputs are known only once started.
    fn one_node(&self) -> bool {
        true
    }

    fn inputs(&self) -> Vec<&'static str> {
        self.inputs.get().cloned().unwrap_or_default()
    }

    fn page(&self) -> Option<&'static str> {
        Some("cockpits")
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new().routes(routes!(list_rules))
    }

    fn start<'a>(
        &'a self,
        ctx: &'a SceneContext,
        committed: Positions,
    ) -> BoxFuture<'a, Result<Started, String>> {
        Box::pin(async move {
            let rules = load_rules(&ctx.config.data_dir)?;
            let watched: Vec<&'static str> = {
                let mut names: Vec<&str> = rules
                    .rules
                    .iter()
                    .filter(|r| ctx.has(&r.dataset))
                    .map(|r| r.dataset.as_str())
                    .collect();
                names.sort();
                names.dedup();
                // Leaked once per start: `Scene::inputs` hands out static names.
                names
                    .into_iter()
                    .map(|n| &*Box::leak(n.to_string().into_boxed_str()))
                    .collect()
            };
            if watched.is_empty() || !ctx.has(citybrain_alerts::DATASET) {
                return Ok(Started::Idle(
                    "no dataset a threshold rule names is in the hub (create one, e.g. \
                     environment.air_quality, and restart)"
                        .into(),
                ));
            }
            let _ = self.inputs.set(watched);
            // What the board stored before: every (alert, state), and the open ones.
            let stored = ctx
                .sql
                .query(&format!(
                    "SELECT at, alert_id, state, subject_ref, district, loc, value, since, detail \
                     FROM {} WHERE kind = 'threshold' ORDER BY at",
                    citybrain_alerts::DATASET
                ))
                .await
                .map_err(|e| e.to_string())?;
            let (keys, open) = stored_events(&stored.batches)?;
            // Each rule's time field: its own, else its dataset's event time; a rule whose
            // dataset lacks a field it names is skipped, said once here.
            let time_fields = rules
                .rules
                .iter()
                .map(|r| {
                    let def = DatasetName::parse(&r.dataset)
                        .ok()
                        .and_then(|n| ctx.hub.definition(&n).ok())?;
                    let time = r.time.clone().or_else(|| def.event_time.clone())?;
                    let missing: Vec<&str> = [r.field.as_str(), r.entity.as_str(), time.as_str()]
                        .into_iter()
                        .filter(|f| def.field(f).is_none())
                        .collect();
                    if !missing.is_empty() {
                        tracing::warn!(
                            message =
                                "A threshold rule is skipped: its dataset lacks a field it names.",
                            rule = r.id,
                            dataset = r.dataset,
                            missing = missing.join(", ")
                        );
                        return None;
                    }
                    Some(time)
                })
                .collect();
            let mut board = ThresholdBoard::new(rules);
            board.resume(&open);
            ctx.alerts.start_thresholds(board, keys);
            Ok(Started::Running(Running {
                handle: Arc::new(ctx.alerts.clone()),
                worker: Some(Box::new(ThresholdWorker {
                    alerts: ctx.alerts.clone(),
                    time_fields,
                })),
                from: committed,
                on_stop: None,
            }))
        })
    }
}

/// The rules: the city's file, else the shipped ones.
fn load_rules(data_dir: &std::path::Path) -> Result<Rules, String> {
    let path = data_dir.join(RULES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Rules::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Rules::parse(citybrain_alerts::threshold::SHIPPED).expect("shipped rules parse"))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Every (alert id, state) of a threshold alert stored.
type StoredKeys = HashSet<(String, AlertState)>;

/// Every (alert id, state) stored, and the alerts whose last change is `open`.
fn stored_events(batches: &[RecordBatch]) -> Result<(StoredKeys, Vec<AlertEvent>), String> {
    let mut keys = HashSet::new();
    let mut last: BTreeMap<String, AlertEvent> = BTreeMap::new();
    for batch in batches {
        let ids = text_column(batch, "alert_id")?;
        let states = text_column(batch, "state")?;
        let refs = text_column(batch, "subject_ref")?;
        let districts = text_column(batch, "district")?;
        let details = text_column(batch, "detail")?;
        let at = timestamps(batch, "at")?;
        let since = timestamps(batch, "since")?;
        let value = batch
            .column_by_name("value")
            .and_then(|c| c.as_primitive_opt::<Float64Type>())
            .ok_or("no float column value")?;
        let loc = citybrain_hub::geo_points(batch.column_by_name("loc").ok_or("no column loc")?)?;
        for (i, loc) in loc.into_iter().enumerate() {
            let Some(state) = AlertState::parse(states.value(i)) else {
                continue;
            };
            let id = ids.value(i).to_string();
            keys.insert((id.clone(), state));
            let kind = citybrain_alerts::AlertKind::Threshold;
            let event = AlertEvent {
                at: Timestamp(at.value(i)),
                alert_id: id.clone(),
                kind: kind.name(),
                state,
                subject: kind.subject_word(),
                subject_id: 0,
                subject_ref: refs.is_valid(i).then(|| refs.value(i).to_string()),
                district: districts
                    .is_valid(i)
                    .then(|| districts.value(i).to_string()),
                loc,
                value: value.value(i),
                since: Timestamp(since.value(i)),
                detail: details.value(i).to_string(),
            };
            // Rows come in time order; at the same instant a close is the later word.
            let replace = last
                .get(&id)
                .is_none_or(|e| e.at < event.at || state == AlertState::Closed);
            if replace {
                last.insert(id, event);
            }
        }
    }
    let open = last
        .into_values()
        .filter(|e| e.state == AlertState::Open)
        .collect();
    Ok((keys, open))
}

struct ThresholdWorker {
    alerts: LiveAlerts,
    /// Per rule, the field holding when a reading was taken (None: the rule cannot apply).
    time_fields: Vec<Option<String>>,
}

impl Worker for ThresholdWorker {
    fn apply(&mut self, changes: Vec<Change>) {
        let rules = self.alerts.threshold_rules().unwrap_or_default();
        let mut readings = Vec::new();
        for change in &changes {
            for (index, rule) in rules.rules.iter().enumerate() {
                if rule.dataset != change.dataset.as_str() {
                    continue;
                }
                let Some(time) = self.time_fields.get(index).cloned().flatten() else {
                    continue;
                };
                for batch in &change.batches {
                    match readings_of(batch, index, rule, &time) {
                        Ok(mut r) => readings.append(&mut r),
                        Err(error) => tracing::warn!(
                            message = "A threshold rule cannot read its dataset.",
                            rule = rule.id,
                            dataset = %change.dataset,
                            %error
                        ),
                    }
                }
            }
        }
        // Per sensor in time order: a batch may carry several stations' hours.
        readings.sort_by(|a, b| a.at.cmp(&b.at).then(a.entity.cmp(&b.entity)));
        self.alerts.readings(&readings);
    }
}

/// The readings of one batch for one rule: rows with a sensor id, a time and a value.
fn readings_of(
    batch: &RecordBatch,
    index: usize,
    rule: &citybrain_alerts::threshold::Rule,
    time_field: &str,
) -> Result<Vec<Reading>, String> {
    let entity = text_column(batch, &rule.entity)?;
    let at = timestamps(batch, time_field)?;
    let column = batch
        .column_by_name(&rule.field)
        .ok_or_else(|| format!("no column {}", rule.field))?;
    let values = arrow::compute::cast(column, &DataType::Float64)
        .map_err(|e| format!("{} is not a number: {e}", rule.field))?;
    let values = values.as_primitive::<Float64Type>();
    let area = text_column(batch, "area_served").ok();
    let loc = ["location", "loc"]
        .iter()
        .find_map(|n| batch.column_by_name(n))
        .and_then(|c| citybrain_hub::geo_points(c).ok());
    let mut out = Vec::new();
    for i in 0..batch.num_rows() {
        if !entity.is_valid(i) || !at.is_valid(i) || !values.is_valid(i) {
            continue;
        }
        out.push(Reading {
            rule: index,
            at: Timestamp(at.value(i)),
            entity: entity.value(i).to_string(),
            value: values.value(i),
            loc: loc.as_ref().and_then(|l| l[i]),
            area: area
                .as_ref()
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i).to_string()),
        });
    }
    Ok(out)
}

/// The threshold rules: each with its limits, where they come from, and whether its
/// dataset is watched (present at start) or skipped.
#[utoipa::path(get, path = "/thresholds", tag = "alerts", responses((status = 200, description = "The threshold rules and which are watched", body = Object)))]
async fn list_rules(
    State(state): State<AppState>,
    Extension(_me): Extension<Principal>,
) -> Result<Response, ApiError> {
    let alerts = state.scenes.handle::<LiveAlerts>("thresholds")?;
    let rules = alerts.threshold_rules().unwrap_or_default();
    let names = state.hub.names();
    let rows: Vec<_> = rules
        .rules
        .iter()
        .map(|r| {
            let watched = DatasetName::parse(&r.dataset).is_ok_and(|n| names.contains(&n));
            json!({
                "id": r.id,
                "dataset": r.dataset,
                "field": r.field,
                "direction": r.direction,
                "open": r.open,
                "close": r.close,
                "unit": r.unit,
                "title": r.title,
                "source": r.source,
                "rule": r.describe(),
                "watched": watched,
            })
        })
        .collect();
    Ok(Json(json!({ "rules": rows })).into_response())
}
