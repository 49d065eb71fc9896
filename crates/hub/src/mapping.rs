//! Feed mappings: how an outside feed's records become a dataset's, declared in the
//! dataset's definition and chosen per ingest call (`?mapping=NAME`, `citybrain ingest
//! --mapping NAME`). A Chinese checkpoint export names its columns `hphm`, `kkbh`, `jgsj`
//! (plate, checkpoint, time passed) and writes local time without a zone; a mapping says
//! which column fills which field, how its times are written and in which zone, which
//! fields are constants, and which plates to normalise (full-width characters, spaces, the
//! `·` separator, lower case); times can also follow any strftime `pattern`. Values are read leniently as a CSV cell is (`"12"` is an
//! integer), and a refused record names the source column, so the sender can find it in
//! their own export.
//!
//! ```toml
//! [mappings.hik_kkbh]
//! description = "Checkpoint platform export"
//! time_zone = "Asia/Shanghai"        # default: the city's
//! ignore = ["tpurl", "hpys"]         # columns dropped (others are refused), or ignore_others = true
//! [mappings.hik_kkbh.fields]
//! ts = { from = "jgsj", time = "local" }
//! checkpoint_id = { from = "kkbh" }
//! plate = { from = "hphm", plate = true }
//! source = { value = "hik" }
//! ```
//!
//! The cost is in the decoder's loop: a mapped column is looked up by its source name, a
//! time is parsed by its format, and a plate is rewritten only when it needs to be
//! (docs/benchmarks.md, "Feed mappings").

use std::borrow::Cow;
use std::collections::BTreeMap;

use citybrain_core::{TimeZone, Timestamp};
use serde::{Deserialize, Serialize};

use crate::decode::Raw;
use crate::schema::{DatasetDef, FieldType, SchemaProblem};

/// One named mapping of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedMapping {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The zone of times written without an offset (default: the city's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZone>,
    /// Per dataset field, where its value comes from. A field not listed is read from a
    /// column of its own name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSource>,
    /// Source columns dropped without a word.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// Drop every source column the mapping does not use (an export with dozens).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_others: bool,
    /// Also take this feed from an MQTT topic (filter; `up --mqtt` or `--mqtt-broker`):
    /// each message a JSON object, or NDJSON lines, in the feed's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_topic: Option<String>,
}

/// Where one field's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSource {
    /// The source column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A constant instead of a column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// How a timestamp field's source writes time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeFormat>,
    /// With `time = "pattern"`: a strftime pattern (`%d/%m/%Y %H:%M`), local time in the
    /// zone unless the pattern reads an offset (`%z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Normalise a plate: full-width to half-width, no spaces or separators, upper case.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plate: bool,
}

/// How a feed writes time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 with an offset (the hub's own).
    Rfc3339,
    /// `2026-03-02 08:15:30` (or with `/` or `T`), local time in the mapping's zone; an
    /// offset, when written, wins.
    Local,
    /// `20260302081530` (optionally with milliseconds), local time.
    Compact,
    /// Seconds since 1970-01-01 UTC.
    EpochS,
    /// Milliseconds since 1970-01-01 UTC.
    EpochMs,
    /// The field's `pattern` (strftime).
    Pattern,
}

impl TimeFormat {
    fn name(self) -> &'static str {
        match self {
            Self::Rfc3339 => "rfc3339",
            Self::Local => "local",
            Self::Compact => "compact",
            Self::EpochS => "epoch_s",
            Self::EpochMs => "epoch_ms",
            Self::Pattern => "pattern",
        }
    }
}

/// Checks a dataset's mappings against its fields; problems name the mapping and field.
pub(crate) fn check(def: &DatasetDef, problems: &mut Vec<SchemaProblem>) {
    for (name, m) in &def.mappings {
        let mut say = |field: Option<&str>, message: String| {
            problems.push(SchemaProblem {
                field: field.map(str::to_string),
                message: format!("mapping '{name}': {message}"),
            })
        };
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            say(
                None,
                "mapping names use letters, digits, '_' and '-'".to_string(),
            );
        }
        if let Some(topic) = &m.mqtt_topic
            && (topic.is_empty()
                || topic.contains('\0')
                || topic.split('/').enumerate().any(|(i, p)| {
                    (p.contains('#') && (p != "#" || i + 1 != topic.split('/').count()))
                        || (p.contains('+') && p != "+")
                }))
        {
            say(
                None,
                format!(
                    "mqtt_topic '{topic}' is not an MQTT topic filter (levels split by '/', '+' a whole level, '#' the last)"
                ),
            );
        }
        let mut sources: BTreeMap<&str, &str> = BTreeMap::new();
        for (field, source) in &m.fields {
            let Some(f) = def.field(field) else {
                say(Some(field), "the dataset has no such field".to_string());
                continue;
            };
            match (&source.from, &source.value) {
                (Some(_), Some(_)) => say(
                    Some(field),
                    "give either from (a column) or value (a constant), not both".to_string(),
                ),
                (None, Some(v)) => {
                    if constant(v, f.field_type).is_err() {
                        say(
                            Some(field),
                            format!("the constant {v} is not a {}", f.field_type.name()),
                        );
                    }
                }
                (Some(from), None) => {
                    if let Some(other) = sources.insert(from, field) {
                        say(
                            Some(field),
                            format!("column '{from}' already fills field '{other}'"),
                        );
                    }
                }
                (None, None) => {}
            }
            if source.time.is_some() && f.field_type != FieldType::Timestamp {
                say(
                    Some(field),
                    format!(
                        "time applies to timestamp fields, not {}",
                        f.field_type.name()
                    ),
                );
            }
            match (source.time, &source.pattern) {
                (Some(TimeFormat::Pattern), None) => say(
                    Some(field),
                    "time = \"pattern\" needs pattern = \"...\" (strftime, e.g. %d/%m/%Y %H:%M)"
                        .to_string(),
                ),
                (Some(TimeFormat::Pattern), Some(p)) if !pattern_is_valid(p) => say(
                    Some(field),
                    format!("pattern '{p}' is not a strftime pattern chrono reads"),
                ),
                (t, Some(_)) if t != Some(TimeFormat::Pattern) => say(
                    Some(field),
                    "pattern applies with time = \"pattern\"".to_string(),
                ),
                _ => {}
            }
            if source.plate && f.field_type != FieldType::String {
                say(Some(field), "plate applies to string fields".to_string());
            }
        }
    }
}

/// A constant as a raw value of the field's type.
fn constant(v: &serde_json::Value, ty: FieldType) -> Result<Raw<'_>, ()> {
    use serde_json::Value as J;
    Ok(match (v, ty) {
        (J::Null, _) => Raw::Null,
        (J::String(s), FieldType::String) => Raw::Str(Cow::Borrowed(s)),
        (J::Number(n), FieldType::Int | FieldType::Money) => Raw::Int(n.as_i64().ok_or(())?),
        (J::Number(n), FieldType::Float) => Raw::Float(n.as_f64().ok_or(())?),
        (J::Bool(b), FieldType::Bool) => Raw::Bool(*b),
        (J::String(s), FieldType::Timestamp) => Raw::Micros(Timestamp::parse(s).map_err(|_| ())?.0),
        (J::String(s), FieldType::Date | FieldType::Geo) => Raw::Str(Cow::Borrowed(s)),
        _ => return Err(()),
    })
}

/// What a mapped column does to its value.
#[derive(Debug)]
struct Rule<'m> {
    /// The source column's name (for messages), when the value comes from one.
    source: Option<&'m str>,
    constant: Option<Raw<'m>>,
    time: Option<TimeFormat>,
    pattern: Option<&'m str>,
    plate: bool,
    ty: FieldType,
}

/// Where an input column goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Field(usize),
    Ignore,
    Unknown,
}

/// A mapping ready for the decoder's loop.
#[derive(Debug)]
pub struct Mapper<'m> {
    /// Input column name → field, for every field (mapped or under its own name).
    names: Vec<(&'m str, usize)>,
    ignore: Vec<&'m str>,
    ignore_others: bool,
    rules: Vec<Option<Rule<'m>>>,
    zone: TimeZone,
    name: &'m str,
}

impl<'m> Mapper<'m> {
    /// The mapping `name` of `def`, with `zone` for local times when it names none.
    pub fn new(def: &'m DatasetDef, name: &'m str, zone: &TimeZone) -> Result<Self, String> {
        let Some((name, m)) = def.mappings.get_key_value(name) else {
            let known: Vec<&str> = def.mappings.keys().map(String::as_str).collect();
            return Err(if known.is_empty() {
                format!(
                    "dataset {} declares no mappings (add [mappings.{name}] to its definition)",
                    def.name
                )
            } else {
                format!(
                    "dataset {} has no mapping '{name}' (it has: {})",
                    def.name,
                    known.join(", ")
                )
            });
        };
        let mut names = Vec::with_capacity(def.fields.len());
        let mut rules = Vec::with_capacity(def.fields.len());
        for (i, f) in def.fields.iter().enumerate() {
            match m.fields.get(&f.name) {
                Some(source) => {
                    if source.value.is_none() {
                        names.push((source.from.as_deref().unwrap_or(&f.name), i));
                    }
                    rules.push(Some(Rule {
                        source: source
                            .value
                            .is_none()
                            .then(|| source.from.as_deref().unwrap_or(&f.name)),
                        constant: source
                            .value
                            .as_ref()
                            .map(|v| constant(v, f.field_type).unwrap_or(Raw::Null)),
                        time: source.time,
                        pattern: source.pattern.as_deref(),
                        plate: source.plate,
                        ty: f.field_type,
                    }));
                }
                None => {
                    names.push((&f.name, i));
                    rules.push(None);
                }
            }
        }
        Ok(Self {
            names,
            ignore: m.ignore.iter().map(String::as_str).collect(),
            ignore_others: m.ignore_others,
            rules,
            zone: m.time_zone.clone().unwrap_or_else(|| zone.clone()),
            name,
        })
    }

    pub fn name(&self) -> &str {
        self.name
    }

    /// Where the input column `key` goes.
    #[inline]
    pub(crate) fn slot(&self, key: &str) -> Slot {
        match self.names.iter().find(|(n, _)| *n == key) {
            Some((_, i)) => Slot::Field(*i),
            None if self.ignore_others || self.ignore.contains(&key) => Slot::Ignore,
            None => Slot::Unknown,
        }
    }

    /// Whether a field named `field` must have a column in a CSV header.
    pub(crate) fn column_of(&self, field: usize) -> Option<&'m str> {
        self.names
            .iter()
            .find(|(_, i)| *i == field)
            .map(|(n, _)| *n)
    }

    /// The source column a field's problems are reported under.
    pub(crate) fn source_of(&self, field: usize) -> Option<&'m str> {
        self.rules[field].as_ref().and_then(|r| r.source)
    }

    /// Applies the rules to one record's raw values: constants filled, times parsed,
    /// plates normalised, other types given as text or numbers made to fit. A value that
    /// cannot be read is a problem naming its source column, and its field is marked in
    /// `failed` so it is not reported twice.
    pub(crate) fn apply<'a>(
        &self,
        raws: &mut [Option<Raw<'a>>],
        line: u64,
        problems: &mut Vec<crate::Problem>,
        failed: &mut [bool],
    ) where
        'm: 'a,
    {
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(rule) = rule else {
                continue;
            };
            if let Some(c) = &rule.constant {
                raws[i] = Some(c.clone());
                continue;
            }
            let Some(raw) = raws[i].take() else {
                continue;
            };
            match self.fix(rule, raw) {
                Ok(raw) => raws[i] = Some(raw),
                Err(reason) => {
                    failed[i] = true;
                    problems.push(crate::Problem {
                        line,
                        field: rule.source.map(str::to_string),
                        reason,
                    });
                }
            }
        }
    }

    fn fix<'a>(&self, rule: &Rule, raw: Raw<'a>) -> Result<Raw<'a>, String> {
        if let Some(format) = rule.time {
            return self.time(format, rule.pattern, raw);
        }
        match (rule.ty, raw) {
            (FieldType::String, Raw::Str(s)) if rule.plate => Ok(Raw::Str(normalise_plate(s))),
            // An id written as a number in the feed, text in the dataset.
            (FieldType::String, Raw::Int(n)) => Ok(Raw::Str(Cow::Owned(n.to_string()))),
            (FieldType::String, Raw::Float(f)) => Ok(Raw::Str(Cow::Owned(f.to_string()))),
            (_, raw) => Ok(raw),
        }
    }

    fn time<'a>(
        &self,
        format: TimeFormat,
        pattern: Option<&str>,
        raw: Raw<'a>,
    ) -> Result<Raw<'a>, String> {
        let wrong = |what: &str| {
            Err(format!(
                "expected a time written as {} ({what})",
                format.name()
            ))
        };
        let text = match &raw {
            Raw::Null => return Ok(Raw::Null),
            Raw::Str(s) => s.trim(),
            Raw::Int(n) => {
                return match format {
                    TimeFormat::EpochS => Ok(Raw::Micros(n.saturating_mul(1_000_000))),
                    TimeFormat::EpochMs => Ok(Raw::Micros(n.saturating_mul(1_000))),
                    // 20260302081530 written as a JSON number.
                    TimeFormat::Compact => Timestamp::parse_compact(&n.to_string(), &self.zone)
                        .map(|t| Raw::Micros(t.0))
                        .map_err(|e| e.to_string()),
                    _ => wrong("got a number"),
                };
            }
            _ => return wrong("got neither text nor a number"),
        };
        let parsed = match format {
            TimeFormat::Pattern => parse_pattern(text, pattern.unwrap_or_default(), &self.zone),
            TimeFormat::Rfc3339 => Timestamp::parse(text).map_err(|e| e.to_string()),
            TimeFormat::Local => {
                Timestamp::parse_local(text, &self.zone).map_err(|e| e.to_string())
            }
            TimeFormat::Compact => {
                Timestamp::parse_compact(text, &self.zone).map_err(|e| e.to_string())
            }
            TimeFormat::EpochS | TimeFormat::EpochMs => {
                let scale = if format == TimeFormat::EpochS {
                    1_000_000
                } else {
                    1_000
                };
                text.parse::<i64>()
                    .map(|n| Timestamp(n.saturating_mul(scale)))
                    .map_err(|_| {
                        format!(
                            "'{text}' is not a whole number of {}",
                            if scale == 1_000 {
                                "milliseconds"
                            } else {
                                "seconds"
                            }
                        )
                    })
            }
        };
        parsed.map(|t| Raw::Micros(t.0))
    }
}

/// Whether chrono can read with `pattern` (checked once, with the definition).
fn pattern_is_valid(pattern: &str) -> bool {
    chrono::format::StrftimeItems::new(pattern)
        .all(|item| !matches!(item, chrono::format::Item::Error))
}

/// A time written by a strftime `pattern`: with an offset (`%z`) as written, else local in
/// `zone`.
fn parse_pattern(text: &str, pattern: &str, zone: &TimeZone) -> Result<Timestamp, String> {
    let wrong =
        |e: chrono::ParseError| format!("'{text}' does not match the pattern '{pattern}': {e}");
    if let Ok(t) = chrono::DateTime::parse_from_str(text, pattern) {
        return Ok(Timestamp(t.timestamp_micros()));
    }
    let local = chrono::NaiveDateTime::parse_from_str(text, pattern).map_err(wrong)?;
    let utc = local.and_utc();
    let local_s = utc.timestamp();
    let micros = i64::from(utc.timestamp_subsec_micros());
    Ok(Timestamp(zone.from_local_s(local_s) * 1_000_000 + micros))
}

/// A plate as the hub keeps them: `浙A·12345`, `浙Ａ１２３４５`, ` 浙a 12345` all become
/// `浙A12345`. Borrowed back unchanged when already clean (the common case costs a scan).
pub fn normalise_plate(s: Cow<'_, str>) -> Cow<'_, str> {
    let clean = |c: char| {
        c.is_ascii_uppercase()
            || c.is_ascii_digit()
            || (!c.is_ascii() && !is_noise(c) && !is_full_width(c))
    };
    if s.chars().all(clean) {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if is_full_width(c) {
            char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
        } else {
            c
        };
        if c.is_whitespace() || is_noise(c) || c == '-' {
            continue;
        }
        out.push(c.to_ascii_uppercase());
    }
    Cow::Owned(out)
}

/// Full-width ASCII forms (`Ａ`, `１`), U+FF01..U+FF5E.
fn is_full_width(c: char) -> bool {
    ('\u{FF01}'..='\u{FF5E}').contains(&c)
}

/// Separators exports put inside plates: middle dots, the ideographic space.
fn is_noise(c: char) -> bool {
    matches!(c, '·' | '•' | '・' | '\u{3000}' | '\u{2027}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_are_normalised_and_clean_ones_borrowed() {
        for (raw, want) in [
            ("浙A·12345", "浙A12345"),
            ("浙Ａ１２３４５", "浙A12345"),
            (" 浙a 12345 ", "浙A12345"),
            ("豫A-D1234", "豫AD1234"),
            ("京A　12345", "京A12345"),
        ] {
            assert_eq!(normalise_plate(Cow::Borrowed(raw)), want, "{raw}");
        }
        assert!(matches!(
            normalise_plate(Cow::Borrowed("浙A12345")),
            Cow::Borrowed(_)
        ));
    }
}
