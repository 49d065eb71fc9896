//! One form instead of many (一表通): the reports departments ask a community to fill every
//! period, as files. Each field is a SQL expression over shared datasets for one community
//! and period (`$community`, `$period_start`, `$period_end`), or, where no dataset holds
//! the answer, left to a person. The server fills the data fields under the community's own
//! grants; a field's `concept` names what it asks, so the same question asked by several
//! templates is answered once.
//!
//! [`burden`] is the seeds' measure of the work removed: how many fields the templates ask
//! in all, how many distinct questions that is, how many the data answers, and the minutes
//! a person spends before and after by a stated model ([`MINUTES_PER_FIELD`]).

use std::collections::{BTreeMap, BTreeSet};

use citybrain_core::{Date, TimeZone, Timestamp};
use serde::{Deserialize, Serialize};

use crate::Text;

/// How long a community worker spends on one field of one report by hand: finding the
/// figure (a ledger, a call to a department, a count on the grid) and writing it down. An
/// assumption of this model, not a measurement: 3 minutes.
pub const MINUTES_PER_FIELD: f64 = 3.0;

/// The parameters a field's query may use.
pub const FORM_PARAMETERS: &[&str] = &["community", "period_start", "period_end"];

/// A report template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// `[a-z0-9_]`: its address (`/api/v1/forms/<id>`).
    pub id: String,
    pub title: Text,
    /// The department that asks for it.
    pub department: String,
    /// `month` (the only period so far).
    pub every: String,
    #[serde(rename = "field")]
    pub fields: Vec<Field>,
}

/// One field of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: String,
    /// What it asks, the same across templates for the same question.
    pub concept: String,
    pub label: Text,
    /// One row with a column `value`; none: a person fills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

fn ok_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 60
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Template {
    /// Parses and checks a template; every problem at once, each naming its field.
    pub fn parse(file: &str, text: &str) -> Result<Template, Vec<String>> {
        let t: Template = toml::from_str(text).map_err(|e| vec![format!("{file}: {e}")])?;
        let mut problems = Vec::new();
        if !ok_id(&t.id) {
            problems.push(format!(
                "{file}: id: lowercase letters, digits and _ ({:?})",
                t.id
            ));
        }
        if citybrain_core::DepartmentId::parse(&t.department).is_err() {
            problems.push(format!("{file}: department: not a department id"));
        }
        if t.every != "month" {
            problems.push(format!("{file}: every: \"month\" (got {:?})", t.every));
        }
        if t.fields.is_empty() {
            problems.push(format!("{file}: no [[field]]"));
        }
        let mut ids = BTreeSet::new();
        for f in &t.fields {
            if !ok_id(&f.id) || !ids.insert(&f.id) {
                problems.push(format!(
                    "{file}: field {:?}: a unique id of lowercase letters, digits and _",
                    f.id
                ));
            }
            if !ok_id(&f.concept) {
                problems.push(format!(
                    "{file}: field {}: concept: lowercase letters, digits and _",
                    f.id
                ));
            }
            if let Some(sql) = &f.sql {
                for name in crate::parameter_names(sql) {
                    if !FORM_PARAMETERS.contains(&name.as_str()) {
                        problems.push(format!(
                            "{file}: field {}: ${name} is not a parameter (use $community, $period_start, $period_end)",
                            f.id
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(problems)
        }
    }
}

/// A month of the city: its first day and the instants it runs between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub first_day: Date,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Month {
    /// `2026-11` in `zone`.
    pub fn parse(text: &str, zone: &TimeZone) -> Result<Month, String> {
        let bad = || format!("period: a month as YYYY-MM (got {text:?})");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        let (y, m): (i64, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(1970..=2200).contains(&y) || !(1..=12).contains(&m) || text.len() != 7 {
            return Err(bad());
        }
        let first_day = Date::from_ymd(y, m, 1);
        let next = if m == 12 {
            Date::from_ymd(y + 1, 1, 1)
        } else {
            Date::from_ymd(y, m + 1, 1)
        };
        Ok(Month {
            first_day,
            start: zone.day_start(first_day),
            end: zone.day_start(next),
        })
    }

    /// The month before the one `at` falls in: the last whole one.
    pub fn last_whole(at: Timestamp, zone: &TimeZone) -> Month {
        let (y, m, _) = zone.local_day(at).ymd();
        let (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        Month::parse(&format!("{y:04}-{m:02}"), zone).expect("a valid month")
    }
}

/// A field's query for one community and month; the community is bound as a quoted literal.
pub fn bind_field(sql: &str, community: &str, month: &Month) -> String {
    crate::bind_with(sql, |name| match name {
        "community" => Some(format!("'{}'", community.replace('\'', "''"))),
        "period_start" => Some(format!("TIMESTAMP '{}'", month.start)),
        "period_end" => Some(format!("TIMESTAMP '{}'", month.end)),
        _ => None,
    })
}

/// The burden the templates put on a community each period, before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Burden {
    pub templates: usize,
    /// Fields asked in all: what a worker filled before, one by one.
    pub fields: usize,
    /// Distinct questions among them.
    pub concepts: usize,
    /// Fields asking a question another field already asked.
    pub duplicate_fields: usize,
    /// Questions the data answers.
    pub concepts_from_data: usize,
    /// Questions left to a person, each answered once for every template.
    pub concepts_by_hand: usize,
    /// Share of the fields filled from data.
    pub fields_from_data_share: f64,
    pub minutes_before: f64,
    pub minutes_after: f64,
    pub minutes_per_field: f64,
}

/// The burden of `templates` by the model above: before, every field by hand; after, each
/// question the data does not answer once. A concept counts as answered by the data when any
/// field asking it has a query.
pub fn burden(templates: &[Template]) -> Burden {
    let mut concepts: BTreeMap<&str, bool> = BTreeMap::new();
    let mut fields = 0;
    for t in templates {
        for f in &t.fields {
            fields += 1;
            *concepts.entry(&f.concept).or_default() |= f.sql.is_some();
        }
    }
    let from_data = concepts.values().filter(|d| **d).count();
    let by_hand = concepts.len() - from_data;
    let fields_from_data = templates
        .iter()
        .flat_map(|t| &t.fields)
        .filter(|f| concepts[f.concept.as_str()])
        .count();
    Burden {
        templates: templates.len(),
        fields,
        concepts: concepts.len(),
        duplicate_fields: fields - concepts.len(),
        concepts_from_data: from_data,
        concepts_by_hand: by_hand,
        fields_from_data_share: if fields == 0 {
            0.0
        } else {
            fields_from_data as f64 / fields as f64
        },
        minutes_before: fields as f64 * MINUTES_PER_FIELD,
        minutes_after: by_hand as f64 * MINUTES_PER_FIELD,
        minutes_per_field: MINUTES_PER_FIELD,
    }
}

/// The shipped templates: (file name, text).
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "civil_monthly.toml",
        include_str!("../forms/civil_monthly.toml"),
    ),
    (
        "health_monthly.toml",
        include_str!("../forms/health_monthly.toml"),
    ),
    (
        "employment_monthly.toml",
        include_str!("../forms/employment_monthly.toml"),
    ),
    (
        "grid_monthly.toml",
        include_str!("../forms/grid_monthly.toml"),
    ),
];

/// The shipped templates, parsed.
pub fn shipped() -> Vec<Template> {
    SHIPPED
        .iter()
        .map(|(file, text)| Template::parse(file, text).expect("the shipped templates parse"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_templates_parse_and_share_questions() {
        let t = shipped();
        let b = burden(&t);
        assert_eq!(b.templates, 4);
        assert!(b.duplicate_fields > 0, "{b:?}");
        assert!(
            b.concepts_by_hand > 0 && b.concepts_from_data > b.concepts_by_hand,
            "{b:?}"
        );
        assert!(b.minutes_after < b.minutes_before);
    }

    #[test]
    fn months_and_bindings() {
        let zone = TimeZone::parse("Asia/Shanghai").unwrap();
        let m = Month::parse("2026-12", &zone).unwrap();
        assert_eq!(m.start, Timestamp::parse("2026-11-30T16:00:00Z").unwrap());
        assert_eq!(m.end, Timestamp::parse("2026-12-31T16:00:00Z").unwrap());
        assert!(Month::parse("2026-13", &zone).is_err());
        assert!(Month::parse("26-1", &zone).is_err());
        let last = Month::last_whole(Timestamp::parse("2026-01-10T00:00:00Z").unwrap(), &zone);
        assert_eq!(last.first_day, Date::parse("2025-12-01").unwrap());
        let q = bind_field("x = $community AND t < $period_end", "O'K", &m);
        assert_eq!(q, "x = 'O''K' AND t < TIMESTAMP '2026-12-31T16:00:00Z'");
        let bad = "id = 'x'\ntitle = { en = 'a', zh = 'b' }\ndepartment = 'civil_affairs'\nevery = 'week'\n[[field]]\nid = 'a'\nconcept = 'a'\nlabel = { en = 'a', zh = 'b' }\nsql = 'SELECT $at'\n";
        let problems = Template::parse("t.toml", bad).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
