//! Cockpits as files (数字驾驶舱): a cockpit is a definition (TOML or JSON) that lists the
//! few panels a department's head acts on — a KPI, a time series, a ranking table, a map
//! layer, an alert list — each over one SQL query with thresholds, a unit and zh/en titles.
//! A new cockpit needs no code: a file and `citybrain cockpits apply FILE`.
//!
//! This crate owns the format, its checks (every problem found at once, each naming the
//! panel and field) and the period parameters a panel's query may use (`$at`,
//! `$day_start`, `$day_end`, `$week_start`). It does no I/O: the server stores the files
//! and runs each panel's query as the viewer, under the viewer's grants.

pub mod briefing;
pub mod forms;
mod params;

use std::collections::BTreeSet;
use std::fmt;

use citybrain_core::DepartmentId;
use serde::{Deserialize, Serialize};

pub use params::{PARAMETERS, Period, bind, bind_with, names as parameter_names};

/// A title or note in both of the cockpit's languages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub en: String,
    pub zh: String,
}

/// One cockpit: whose it is, who else may open it, and its panels in reading order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cockpit {
    /// `[a-z0-9_]`, the file's name and the cockpit's address (`#/cockpits/<id>`).
    pub id: String,
    /// The department it belongs to: its principals see it, its admins change it.
    pub department: String,
    /// Other departments whose principals may open it (each panel still runs under the
    /// viewer's own grants).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
    pub title: Text,
    /// What its viewer decides from it: a cockpit earns its place by a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Text>,
    /// Where it sits in the list (lower first).
    #[serde(default)]
    pub order: i32,
    #[serde(rename = "panel", alias = "panels")]
    pub panels: Vec<Panel>,
}

/// One panel over one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// `[a-z0-9_]`, unique in its cockpit.
    pub id: String,
    pub kind: Kind,
    pub title: Text,
    /// One read-only statement; may use `$at`, `$day_start`, `$day_end`, `$week_start`.
    pub sql: String,
    /// Shown after the value (`辆`, `vehicles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Text>,
    /// How the `value` column is written.
    #[serde(default)]
    pub format: Format,
    /// Levels by value, ascending: a value at or above a threshold's `at` takes its level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<Threshold>,
    /// Rows shown by a ranking or an alert list (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// What a map draws: `links` (rows `link_id`, `value`) or `points` (rows `loc` or
    /// `lon`/`lat`, `label`, `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Layer>,
    /// A ranking's columns and their titles, in order (default: every column).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
    /// Grid columns it spans, 1 to 4 (default: 1 for a KPI, 2 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u8>,
    /// In the daily briefing: a KPI compared with the same day a week before, the first
    /// such series as its line chart, the first such ranking as its bar chart and table.
    #[serde(default)]
    pub briefing: bool,
}

/// A ranking table's column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    pub title: Text,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One number: the first row's `value`.
    Kpi,
    /// Lines over time: rows `t`, `value`, and `series` when there are several lines.
    Series,
    /// A ranked table: the rows in the query's order, `limit` of them.
    Ranking,
    /// A layer on the city map.
    Map,
    /// Alerts, newest first: rows `at`, `title`, and `level` when known.
    Alerts,
}

impl Kind {
    /// The columns the query must return for the panel to draw.
    pub fn required_columns(self, layer: Option<Layer>) -> &'static [&'static str] {
        match (self, layer) {
            (Kind::Kpi, _) => &["value"],
            (Kind::Series, _) => &["t", "value"],
            (Kind::Ranking, _) => &[],
            (Kind::Map, Some(Layer::Points)) => &["label", "value"],
            (Kind::Map, _) => &["link_id", "value"],
            (Kind::Alerts, _) => &["at", "title"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Links,
    Points,
}

/// How a value is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Whole number with thousands separators.
    #[default]
    Int,
    /// Two decimals.
    Decimal,
    /// A share (0.25 → 25%).
    Percent,
    /// Money held in fen, written in yuan (¥1,234.50).
    Fen,
    /// As it comes.
    Text,
    /// A list of numbers (SQL `array_agg(v ORDER BY t)`) drawn as a sparkline; the
    /// briefing leaves the column out.
    Spark,
}

impl Format {
    /// The value as the cockpit and the briefing write it.
    pub fn write(self, value: f64) -> String {
        match self {
            Format::Int => group(format!("{:.0}", value.round())),
            Format::Decimal => format!("{value:.2}"),
            Format::Percent => format!("{:.0}%", value * 100.0),
            Format::Fen => {
                let yuan = format!("{:.2}", value / 100.0);
                let (whole, cents) = yuan.split_once('.').unwrap_or((&yuan, "00"));
                format!("¥{}.{cents}", group(whole.to_string()))
            }
            Format::Text | Format::Spark => value.to_string(),
        }
    }
}

/// `1234567` → `1,234,567` (keeps a leading minus).
fn group(digits: String) -> String {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(rest) => ("-", rest.to_string()),
        None => ("", digits),
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub at: f64,
    pub level: Level,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warn,
    Alarm,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Alarm => "alarm",
        }
    }
}

impl Panel {
    /// The level of `value`: the last threshold at or below it (none below the first).
    pub fn level(&self, value: f64) -> Option<Level> {
        self.thresholds
            .iter()
            .rev()
            .find(|t| value >= t.at)
            .map(|t| t.level)
    }

    /// Grid columns it spans.
    pub fn span(&self) -> u8 {
        self.width
            .unwrap_or(if self.kind == Kind::Kpi { 1 } else { 2 })
    }
}

/// Everything wrong with a definition, each naming where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct CockpitError {
    /// The file (or "the definition").
    pub file: String,
    pub problems: Vec<String>,
}

impl fmt::Display for CockpitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problems.join("; "))
    }
}

/// The most panels one cockpit may hold: a cockpit is the few numbers a head acts on, and
/// every panel is a query per view.
pub const MAX_PANELS: usize = 24;

impl Cockpit {
    /// Reads a definition from a file's text (TOML, or JSON when `name` ends in `.json` or
    /// the text starts with `{`) and checks it.
    pub fn from_file_text(name: &str, text: &str) -> Result<Cockpit, CockpitError> {
        let fail = |e: String| CockpitError {
            file: name.to_string(),
            problems: vec![e],
        };
        let cockpit: Cockpit = if name.ends_with(".json") || text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| fail(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| fail(e.to_string().trim().replace('\n', " ")))?
        };
        cockpit.check().map_err(|problems| CockpitError {
            file: name.to_string(),
            problems,
        })?;
        Ok(cockpit)
    }

    /// Every problem at once, each naming the panel and field.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !is_id(&self.id) {
            problems.push(format!(
                "id {:?}: use 1 to 64 of a-z, 0-9 and _, starting with a letter",
                self.id
            ));
        }
        for (field, department) in std::iter::once(("department", &self.department))
            .chain(self.shared_with.iter().map(|d| ("shared_with", d)))
        {
            if let Err(e) = DepartmentId::parse(department) {
                problems.push(format!("{field} {department:?}: {e}"));
            }
        }
        check_text(&mut problems, "title", &self.title);
        if let Some(purpose) = &self.purpose {
            check_text(&mut problems, "purpose", purpose);
        }
        if self.panels.is_empty() {
            problems.push("a cockpit needs at least one [[panel]]".into());
        }
        if self.panels.len() > MAX_PANELS {
            problems.push(format!(
                "{} panels: at most {MAX_PANELS} (a cockpit is the few numbers its viewer acts on)",
                self.panels.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, panel) in self.panels.iter().enumerate() {
            let at = if panel.id.is_empty() {
                format!("panel {}", i + 1)
            } else {
                format!("panel {:?}", panel.id)
            };
            if !is_id(&panel.id) {
                problems.push(format!(
                    "{at}: id must be 1 to 64 of a-z, 0-9 and _, starting with a letter"
                ));
            } else if !seen.insert(panel.id.as_str()) {
                problems.push(format!("{at}: the id is used by an earlier panel"));
            }
            check_text(&mut problems, &format!("{at}: title"), &panel.title);
            if let Some(unit) = &panel.unit {
                check_text(&mut problems, &format!("{at}: unit"), unit);
            }
            if panel.sql.trim().is_empty() {
                problems.push(format!("{at}: sql is empty"));
            }
            for name in params::named(&panel.sql) {
                if !PARAMETERS.contains(&name.as_str()) {
                    problems.push(format!(
                        "{at}: sql uses ${name}; a panel's query may use {}",
                        PARAMETERS
                            .iter()
                            .map(|p| format!("${p}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            if params::positional(&panel.sql) {
                problems.push(format!(
                    "{at}: sql uses $1-style parameters; name the period instead ($day_start, ...)"
                ));
            }
            if panel.thresholds.iter().any(|t| !t.at.is_finite()) {
                problems.push(format!("{at}: thresholds: every `at` must be a number"));
            }
            if panel.thresholds.windows(2).any(|w| w[0].at >= w[1].at) {
                problems.push(format!(
                    "{at}: thresholds must be in ascending order of `at`"
                ));
            }
            match (panel.kind, panel.layer) {
                (Kind::Map, None) => problems.push(format!(
                    "{at}: a map panel needs layer = \"links\" or \"points\""
                )),
                (Kind::Map, Some(_)) | (_, None) => {}
                (_, Some(_)) => problems.push(format!("{at}: layer is for map panels only")),
            }
            if panel.limit == Some(0) || panel.limit.is_some_and(|l| l > 1000) {
                problems.push(format!("{at}: limit must be 1 to 1000"));
            }
            if panel.width.is_some_and(|w| !(1..=4).contains(&w)) {
                problems.push(format!("{at}: width must be 1 to 4"));
            }
            if panel.briefing && matches!(panel.kind, Kind::Map | Kind::Alerts) {
                problems.push(format!(
                    "{at}: briefing = true is for KPIs, series and rankings (a page has no map or live list)"
                ));
            }
            for (j, column) in panel.columns.iter().enumerate() {
                if column.name.trim().is_empty() {
                    problems.push(format!("{at}: columns[{j}]: name is empty"));
                }
                check_text(
                    &mut problems,
                    &format!("{at}: columns[{j}].title"),
                    &column.title,
                );
            }
            if !panel.columns.is_empty() && panel.kind != Kind::Ranking {
                problems.push(format!("{at}: columns are for ranking panels only"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The panel of this id.
    pub fn panel(&self, id: &str) -> Option<&Panel> {
        self.panels.iter().find(|p| p.id == id)
    }

    /// Whether a principal of `department` may open it.
    pub fn visible_to(&self, department: &str) -> bool {
        self.department == department || self.shared_with.iter().any(|d| d == department)
    }
}

fn check_text(problems: &mut Vec<String>, at: &str, text: &Text) {
    if text.en.trim().is_empty() {
        problems.push(format!("{at}: en is empty"));
    }
    if text.zh.trim().is_empty() {
        problems.push(format!(
            "{at}: zh is empty (every cockpit is read in Chinese and English)"
        ));
    }
}

/// A cockpit or panel id.
pub fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "transport"
department = "transport"
shared_with = ["city_office"]
title = { en = "Transport Bureau", zh = "交通运输局" }

[[panel]]
id = "on_road"
kind = "kpi"
title = { en = "On the road", zh = "在途量" }
sql = "SELECT sum(vehicles) AS value FROM indices.on_road WHERE at = (SELECT max(at) FROM indices.on_road WHERE at <= $at)"
thresholds = [{ at = 1000, level = "warn" }, { at = 5000, level = "alarm" }]
briefing = true

[[panel]]
id = "worst"
kind = "map"
layer = "links"
title = { en = "Delay by link", zh = "路段延误" }
sql = "SELECT link_id, delay_index AS value FROM indices.link_travel WHERE bin >= $day_start AND bin < $day_end"
"#;

    #[test]
    fn a_good_definition_reads_and_its_levels_follow_the_thresholds() {
        let c = Cockpit::from_file_text("transport.toml", GOOD).unwrap();
        assert_eq!(c.panels.len(), 2);
        let kpi = c.panel("on_road").unwrap();
        assert_eq!(kpi.level(10.0), None);
        assert_eq!(kpi.level(1000.0), Some(Level::Warn));
        assert_eq!(kpi.level(9999.0), Some(Level::Alarm));
        assert!(c.visible_to("city_office") && c.visible_to("transport"));
        assert!(!c.visible_to("health"));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(Cockpit::from_file_text("x.json", &json).unwrap(), c);
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let bad = GOOD
            .replace("id = \"worst\"", "id = \"on_road\"")
            .replace("zh = \"在途量\"", "zh = \"\"")
            .replace("layer = \"links\"\n", "")
            .replace("$day_end", "$tomorrow");
        let e = Cockpit::from_file_text("bad.toml", &bad).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("bad.toml: "), "{text}");
        for needle in [
            "panel \"on_road\": title: zh is empty",
            "panel \"on_road\": the id is used by an earlier panel",
            "needs layer = \"links\" or \"points\"",
            "sql uses $tomorrow",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        assert_eq!(e.problems.len(), 4, "{text}");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let e = Cockpit::from_file_text("x.toml", &GOOD.replace("briefing = true", "brief = true"))
            .unwrap_err();
        assert!(e.to_string().contains("brief"), "{e}");
    }

    #[test]
    fn formats_write_what_an_official_reads() {
        assert_eq!(Format::Int.write(1234567.4), "1,234,567");
        assert_eq!(Format::Int.write(-1234.0), "-1,234");
        assert_eq!(Format::Fen.write(123456789.0), "¥1,234,567.89");
        assert_eq!(Format::Percent.write(0.254), "25%");
        assert_eq!(Format::Decimal.write(1.456), "1.46");
    }
}
