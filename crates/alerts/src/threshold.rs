//! Threshold alerts (超标告警): a reading of a sensor (an air-quality station's PM2.5, a
//! river's dissolved oxygen, a waste container's filling level) past a limit opens an alert
//! on that sensor; a reading back past a second, safer limit closes it. Rules are a file
//! (`thresholds.toml`), one per dataset and field, so a city states its own limits; the
//! shipped ones cite the national standards they come from.
//!
//! No I/O: the board is fed readings and answers with the changes to store. An alert's id is
//! `threshold/{rule}/{entity}/{opened}`, so a reading applied twice (a replay after a crash)
//! yields the same id and the store can refuse the repeat.

use std::collections::{BTreeMap, HashSet};

use citybrain_core::{GeoPoint, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{Active, AlertEvent, AlertKind, State};

/// The rules citybrain ships: limits for the Smart Data Models datasets of the village map.
pub const SHIPPED: &str = include_str!("../thresholds.toml");

/// A name in both of the cockpit's languages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub en: String,
    pub zh: String,
}

/// Which side of the limit is bad.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// At or above `open` opens; under `close` closes.
    #[default]
    Above,
    /// At or below `open` opens; over `close` closes (dissolved oxygen, pH's low side).
    Below,
}

/// One limit on one field of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Short, unique, part of each alert's id (`pm25`).
    pub id: String,
    /// The dataset whose rows are readings (`environment.air_quality`).
    pub dataset: String,
    /// The numeric field compared with the limit (`pm25`).
    pub field: String,
    /// The field naming the sensor, one alert per sensor (default `entity_id`, as NGSI-LD
    /// entities are stored).
    #[serde(default = "Rule::default_entity")]
    pub entity: String,
    /// The field holding when the reading was taken (default: the dataset's event time).
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub direction: Direction,
    pub open: f64,
    pub close: f64,
    /// The unit the values are in, as people write it (`µg/m³`).
    #[serde(default)]
    pub unit: String,
    pub title: Text,
    /// Where the limit comes from (a standard's number and clause).
    #[serde(default)]
    pub source: String,
}

impl Rule {
    fn default_entity() -> String {
        "entity_id".into()
    }

    fn opens(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value >= self.open,
            Direction::Below => value <= self.open,
        }
    }

    fn closes(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value < self.close,
            Direction::Below => value > self.close,
        }
    }

    /// How the rule reads in an alert's detail and on `GET /api/v1/thresholds`.
    pub fn describe(&self) -> String {
        let (at, back) = match self.direction {
            Direction::Above => ("at or above", "under"),
            Direction::Below => ("at or below", "over"),
        };
        format!(
            "{} {at} {}{}; closes {back} {}",
            self.field,
            self.open,
            unit_suffix(&self.unit),
            self.close
        )
    }
}

fn unit_suffix(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

/// The rules of a `thresholds.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Parses and checks a rules file; an error names the rule and the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rules: Rules = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = HashSet::new();
        for (i, r) in rules.rules.iter().enumerate() {
            let name = if r.id.is_empty() {
                format!("rule {}", i + 1)
            } else {
                format!("rule {:?}", r.id)
            };
            if r.id.is_empty() || r.id.contains('/') {
                return Err(format!(
                    "{name}: id must be set and must not contain '/' (it is part of alert ids)"
                ));
            }
            if !seen.insert(r.id.as_str()) {
                return Err(format!("{name}: id used twice"));
            }
            if !r.open.is_finite() || !r.close.is_finite() {
                return Err(format!("{name}: open and close must be numbers"));
            }
            let hysteresis_ok = match r.direction {
                Direction::Above => r.close <= r.open,
                Direction::Below => r.close >= r.open,
            };
            if !hysteresis_ok {
                return Err(format!(
                    "{name}: close ({}) must be on the safe side of open ({}) for direction {:?}; \
                     otherwise an alert would close as it opens",
                    r.close, r.open, r.direction
                ));
            }
            for (what, v) in [
                ("dataset", &r.dataset),
                ("field", &r.field),
                ("entity", &r.entity),
            ] {
                if v.is_empty() {
                    return Err(format!("{name}: {what} must be set"));
                }
            }
        }
        Ok(rules)
    }
}

/// One reading a rule applies to.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Index of the rule in [`Rules::rules`].
    pub rule: usize,
    pub at: Timestamp,
    pub entity: String,
    pub value: f64,
    pub loc: Option<GeoPoint>,
    /// The area it serves (a village), shown as the alert's district.
    pub area: Option<String>,
}

/// The open threshold alerts.
#[derive(Debug, Default)]
pub struct ThresholdBoard {
    rules: Rules,
    active: BTreeMap<(usize, String), Active>,
}

impl ThresholdBoard {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            active: BTreeMap::new(),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn active(&self) -> Vec<Active> {
        self.active.values().cloned().collect()
    }

    fn event(&self, rule: usize, r: &Reading, state: State, since: Timestamp) -> AlertEvent {
        let rule_def = &self.rules.rules[rule];
        let detail = match state {
            State::Open => format!(
                "{}: {} {}{}, limit {}{}{}",
                rule_def.title.en,
                rule_def.field,
                r.value,
                unit_suffix(&rule_def.unit),
                rule_def.open,
                unit_suffix(&rule_def.unit),
                if rule_def.source.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", rule_def.source)
                }
            ),
            State::Closed => format!(
                "{} {}{}, back past {}",
                rule_def.field,
                r.value,
                unit_suffix(&rule_def.unit),
                rule_def.close
            ),
        };
        AlertEvent {
            at: r.at,
            alert_id: alert_id(&rule_def.id, &r.entity, since),
            kind: AlertKind::Threshold.name(),
            state,
            subject: AlertKind::Threshold.subject_word(),
            subject_id: 0,
            subject_ref: Some(r.entity.clone()),
            district: r.area.clone(),
            loc: r.loc,
            value: r.value,
            since,
            detail,
        }
    }

    /// Takes readings (in time order per entity) and returns the changes.
    pub fn readings(&mut self, readings: &[Reading]) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        for r in readings {
            let Some(rule) = self.rules.rules.get(r.rule) else {
                continue;
            };
            if !r.value.is_finite() {
                continue;
            }
            let key = (r.rule, r.entity.clone());
            if let Some(a) = self.active.get_mut(&key) {
                if r.at < a.updated {
                    // Older than what the alert last saw (a late reading): it says nothing
                    // about now.
                    continue;
                }
                if rule.closes(r.value) {
                    let since = a.since;
                    self.active.remove(&key);
                    out.push(self.event(r.rule, r, State::Closed, since));
                } else {
                    a.value = r.value;
                    a.updated = r.at;
                    a.worst = match rule.direction {
                        Direction::Above => a.worst.max(r.value),
                        Direction::Below => a.worst.min(r.value),
                    };
                    if a.loc.is_none() {
                        a.loc = r.loc;
                    }
                }
            } else if rule.opens(r.value) {
                let e = self.event(r.rule, r, State::Open, r.at);
                self.active.insert(key, active_of(&e));
                out.push(e);
            }
        }
        out
    }

    /// Takes the alerts stored as open (after a restart) as the open ones: the board then
    /// goes on from where the store stands. Events of unknown rules are ignored.
    pub fn resume(&mut self, stored_open: &[AlertEvent]) {
        for e in stored_open {
            if e.kind != AlertKind::Threshold.name() {
                continue;
            }
            let Some(entity) = e.subject_ref.clone() else {
                continue;
            };
            let Some(rule_id) = e.alert_id.split('/').nth(1) else {
                continue;
            };
            let Some(rule) = self.rules.rules.iter().position(|r| r.id == rule_id) else {
                continue;
            };
            self.active.insert((rule, entity), active_of(e));
        }
    }
}

fn alert_id(rule: &str, entity: &str, since: Timestamp) -> String {
    format!("threshold/{rule}/{entity}/{}", since.as_secs())
}

fn active_of(e: &AlertEvent) -> Active {
    Active {
        alert_id: e.alert_id.clone(),
        kind: e.kind,
        subject: e.subject,
        subject_id: e.subject_id,
        subject_ref: e.subject_ref.clone(),
        district: e.district.clone(),
        loc: e.loc,
        since: e.since,
        value: e.value,
        worst: e.value,
        updated: e.at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> Timestamp {
        Timestamp::from_secs(1_763_769_600 + min * 60)
    }

    fn board() -> ThresholdBoard {
        ThresholdBoard::new(Rules::parse(SHIPPED).expect("shipped rules parse"))
    }

    fn index(b: &ThresholdBoard, id: &str) -> usize {
        b.rules().rules.iter().position(|r| r.id == id).unwrap()
    }

    fn reading(rule: usize, min: i64, entity: &str, value: f64) -> Reading {
        Reading {
            rule,
            at: t(min),
            entity: entity.into(),
            value,
            loc: None,
            area: Some("village".into()),
        }
    }

    #[test]
    fn an_alert_opens_at_the_limit_and_closes_only_past_the_safer_one() {
        let mut b = board();
        let pm = index(&b, "pm25");
        let rule = b.rules().rules[pm].clone();
        let changes = b.readings(&[
            reading(pm, 0, "s1", rule.open - 1.0),
            reading(pm, 60, "s1", rule.open),
            reading(pm, 120, "s1", rule.open + 20.0),
            reading(pm, 180, "s1", (rule.open + rule.close) / 2.0),
            reading(pm, 240, "s1", rule.close - 1.0),
            reading(pm, 240, "s2", rule.open - 1.0),
        ]);
        let summary: Vec<_> = changes.iter().map(|e| (e.state, e.at)).collect();
        assert_eq!(summary, vec![(State::Open, t(60)), (State::Closed, t(240))]);
        assert_eq!(changes[0].alert_id, changes[1].alert_id);
        assert_eq!(changes[0].subject_ref.as_deref(), Some("s1"));
        assert!(
            changes[0].detail.contains("GB 3095"),
            "{}",
            changes[0].detail
        );
        assert!(b.active().is_empty());
    }

    #[test]
    fn a_low_limit_opens_below() {
        let mut b = board();
        let o2 = index(&b, "dissolved_oxygen");
        let rule = b.rules().rules[o2].clone();
        assert_eq!(rule.direction, Direction::Below);
        let changes = b.readings(&[
            reading(o2, 0, "river", rule.open + 1.0),
            reading(o2, 60, "river", rule.open - 0.5),
            reading(o2, 120, "river", rule.open - 1.0),
        ]);
        assert_eq!(changes.len(), 1);
        assert_eq!(b.active()[0].worst, rule.open - 1.0, "worst is the lowest");
    }

    #[test]
    fn resumed_alerts_are_not_opened_again() {
        let mut b = board();
        let pm = index(&b, "pm25");
        let open = b.readings(&[reading(pm, 0, "s1", 500.0)]);
        let mut again = board();
        again.resume(&open);
        assert!(again.readings(&[reading(pm, 60, "s1", 400.0)]).is_empty());
        let closed = again.readings(&[reading(pm, 120, "s1", 1.0)]);
        assert_eq!(closed[0].alert_id, open[0].alert_id);
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule() {
        let e = Rules::parse(
            "[[rule]]\nid = \"x\"\ndataset = \"a.b\"\nfield = \"v\"\nopen = 1\nclose = 2\ntitle = { en = \"X\", zh = \"X\" }\n",
        )
        .unwrap_err();
        assert!(e.contains("rule \"x\"") && e.contains("close"), "{e}");
        let e = Rules::parse("[[rule]]\nid = \"x\"\n").unwrap_err();
        assert!(e.contains("missing field"), "{e}");
    }
}
