//! Dataset definitions: typed fields, classifications, sharing class, and the rules for
//! changing a schema without breaking what is already stored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Fields, Schema, SchemaRef, TimeUnit};
use citybrain_core::{DatasetName, DepartmentId, GeoPoint, MAX_NAME_PART_LEN};
use serde::{Deserialize, Serialize};

/// The value types a field can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    /// An instant, stored as microseconds since the epoch in UTC.
    Timestamp,
    /// A calendar date.
    Date,
    /// Money as integer fen (分); never floating point.
    Money,
    /// A WGS-84 point, stored as a struct `{lon, lat}`.
    Geo,
}

impl FieldType {
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldType::String => DataType::Utf8,
            FieldType::Int | FieldType::Money => DataType::Int64,
            FieldType::Float => DataType::Float64,
            FieldType::Bool => DataType::Boolean,
            FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            FieldType::Date => DataType::Date32,
            FieldType::Geo => DataType::Struct(geo_fields()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
            FieldType::Timestamp => "timestamp",
            FieldType::Date => "date",
            FieldType::Money => "money",
            FieldType::Geo => "geo",
        }
    }
}

/// The struct fields of a geo point column.
pub fn geo_fields() -> Fields {
    Fields::from(vec![
        ArrowField::new("lon", DataType::Float64, false),
        ArrowField::new("lat", DataType::Float64, false),
    ])
}

/// The points of a geo column (a `{lon, lat}` struct, as stored and as SQL returns it);
/// None where the value is null.
pub fn geo_points(column: &dyn arrow::array::Array) -> Result<Vec<Option<GeoPoint>>, String> {
    use arrow::array::{Array, AsArray};
    let points = column.as_struct_opt().ok_or_else(|| {
        format!(
            "a geo column is a {{lon, lat}} struct, not {}",
            column.data_type()
        )
    })?;
    let part = |name: &str| {
        points
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Float64Type>())
            .ok_or_else(|| format!("a geo column has no float '{name}'"))
    };
    let (lon, lat) = (part("lon")?, part("lat")?);
    Ok((0..points.len())
        .map(|i| {
            points.is_valid(i).then(|| GeoPoint {
                lon: lon.value(i),
                lat: lat.value(i),
            })
        })
        .collect())
}

/// How sensitive a field is; `personal` fields are masked for readers without a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    Public,
    #[default]
    Internal,
    Personal,
}

/// Who may read a dataset (Zhejiang's public data classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharingClass {
    /// Any department may read.
    Unconditional,
    /// Readable with a grant approved by the owner.
    #[default]
    Conditional,
    /// The owner only.
    None,
}

/// How a `personal` field is shown to a reader whose grant does not include it raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskKind {
    /// A licence plate shown as `浙A·***45`: province, city letter and last two characters.
    Plate,
    /// A keyed, stable pseudonym (`ps_…`): the same value gets the same pseudonym in every
    /// dataset, so joins and distinct counts still work, but the value cannot be recovered.
    Pseudonym,
    /// Replaced by null.
    Redact,
}

impl MaskKind {
    pub fn name(self) -> &'static str {
        match self {
            MaskKind::Plate => "plate",
            MaskKind::Pseudonym => "pseudonym",
            MaskKind::Redact => "redact",
        }
    }
}

/// One field of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub class: Classification,
    /// Whether a record may omit the field (or give null). Defaults to false: required.
    #[serde(default)]
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// How the field is masked when `personal`; defaults to a pseudonym for strings and
    /// null for every other type (see [`FieldDef::mask_kind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskKind>,
}

impl FieldDef {
    /// The mask applied to this field for readers without it raw, or None if it is not personal.
    pub fn mask_kind(&self) -> Option<MaskKind> {
        if self.class != Classification::Personal {
            return None;
        }
        Some(self.mask.unwrap_or(match self.field_type {
            FieldType::String => MaskKind::Pseudonym,
            _ => MaskKind::Redact,
        }))
    }
}

/// A dataset's definition, as written in a TOML/JSON file or sent to the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetDef {
    pub name: DatasetName,
    pub owner: DepartmentId,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub sharing: SharingClass,
    /// The field holding each record's event time; segments are partitioned by its day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    pub fields: Vec<FieldDef>,
    /// How outside feeds map onto the fields, by name (`?mapping=NAME` at ingest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mappings: BTreeMap<String, crate::mapping::FeedMapping>,
    /// The NGSI-LD entity type stored here, if any (`/ngsi-ld/v1/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngsi_ld: Option<NgsiLdDef>,
    /// Whether the sealed data may also be kept as an open (Delta Lake) table, which outside
    /// engines read without grants or masks. Unset: only when every department may read
    /// the dataset and no field is personal (`open_table::exportable`). The owner's `true`
    /// exports personal fields raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_table: Option<bool>,
}

/// How NGSI-LD entities of one type are stored in a dataset: each create, update or append
/// is one row holding the entity as it then stands, so SQL sees the whole history and the
/// newest row of an id is the entity (ADR 2026-12-03-ngsi-ld).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NgsiLdDef {
    /// The entity type, as the bundled contexts name it (`AirQualityObserved`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// The string field holding the entity's id (a URI, `urn:ngsi-ld:...`).
    #[serde(default = "NgsiLdDef::default_id")]
    pub id: String,
    /// The timestamp field holding when the row's values were observed: the newest
    /// `observedAt` of its attributes, else the time of the write. Default: `event_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    /// Attribute name → field, for attributes whose field is not their name in snake_case
    /// (`NO2` is `no2`, `dateObserved` is `date_observed` without saying so).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl NgsiLdDef {
    fn default_id() -> String {
        "entity_id".into()
    }

    /// The field an attribute is stored in.
    pub fn field_of(&self, attribute: &str) -> String {
        if let Some(field) = self.attributes.get(attribute) {
            return field.clone();
        }
        let mut out = String::new();
        let chars: Vec<char> = attribute.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            if c.is_ascii_uppercase() {
                // A capital after a lower-case letter starts a word (`dateObserved`); a run
                // of capitals stays one (`NO2`, `pm25`).
                let after_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
                if after_lower {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else if c.is_ascii_alphanumeric() {
                out.push(c);
            } else {
                out.push('_');
            }
        }
        out
    }

    /// The attribute a field holds (the inverse of [`NgsiLdDef::field_of`] for the
    /// attributes named in `known`, else the field's name in camelCase).
    pub fn attribute_of(&self, field: &str) -> String {
        if let Some((attr, _)) = self.attributes.iter().find(|(_, f)| f.as_str() == field) {
            return attr.clone();
        }
        let mut out = String::new();
        let mut upper = false;
        for c in field.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// A problem with a definition, or with a change to one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaProblem {
    /// The field concerned, if any.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field '{field}': {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn problem(field: Option<&str>, message: impl Into<String>) -> SchemaProblem {
    SchemaProblem {
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// Columns every stored record gets from the hub, not from the publisher.
pub const INGESTED_AT: &str = "_ingested_at";

impl DatasetDef {
    /// Parses a definition file; the format follows the extension (`.toml` or `.json`).
    pub fn from_file_text(path_hint: &str, text: &str) -> Result<Self, String> {
        if path_hint.ends_with(".json") {
            serde_json::from_str(text).map_err(|e| format!("{path_hint}: {e}"))
        } else {
            toml::from_str(text).map_err(|e| format!("{path_hint}: {e}"))
        }
    }

    /// Checks the definition on its own; returns every problem, not the first.
    pub fn check(&self) -> Vec<SchemaProblem> {
        let mut problems = Vec::new();
        for derived in self.derived_names() {
            // A derived name is built, not parsed: one that would not parse back makes the
            // catalog row holding it unreadable, so it is refused with the name it derives from.
            if DatasetName::parse(derived.as_str()).is_err() {
                let spare = derived.as_str().len() - self.name.as_str().len();
                problems.push(problem(
                    None,
                    format!(
                        "the dataset name '{}' is too long: the hub derives '{derived}' from it, \
                         whose table part would be {} characters, over the limit of \
                         {MAX_NAME_PART_LEN}; use a table part of at most {} characters",
                        self.name,
                        derived.table().len(),
                        MAX_NAME_PART_LEN.saturating_sub(spare),
                    ),
                ));
            }
        }
        if self.fields.is_empty() {
            problems.push(problem(None, "a dataset needs at least one field"));
        }
        let mut seen = HashSet::new();
        for field in &self.fields {
            let name = field.name.as_str();
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && name.len() <= MAX_NAME_PART_LEN;
            if !valid {
                problems.push(problem(
                    Some(name),
                    format!(
                        "field names use lowercase letters, digits and '_', starting with a \
                         letter, at most {MAX_NAME_PART_LEN} characters"
                    ),
                ));
            }
            if !seen.insert(name) {
                problems.push(problem(Some(name), "the field is defined twice"));
            }
            match field.mask {
                Some(_) if field.class != Classification::Personal => problems.push(problem(
                    Some(name),
                    "only personal fields are masked; set class = \"personal\" or drop mask",
                )),
                Some(MaskKind::Plate | MaskKind::Pseudonym)
                    if field.field_type != FieldType::String =>
                {
                    problems.push(problem(
                        Some(name),
                        format!(
                            "plate and pseudonym masks apply to string fields, not {}; use mask = \"redact\"",
                            field.field_type.name()
                        ),
                    ))
                }
                _ => {}
            }
        }
        if let Some(event_time) = &self.event_time {
            match self.field(event_time) {
                None => problems.push(problem(
                    Some(event_time),
                    "event_time names a field the dataset does not have",
                )),
                Some(f) if f.field_type != FieldType::Timestamp => problems.push(problem(
                    Some(event_time),
                    format!(
                        "event_time must be a timestamp field, not {}",
                        f.field_type.name()
                    ),
                )),
                Some(f) if f.nullable => problems.push(problem(
                    Some(event_time),
                    "the event_time field cannot be nullable",
                )),
                Some(_) => {}
            }
        }
        crate::mapping::check(self, &mut problems);
        if let Some(ngsi) = &self.ngsi_ld {
            self.check_ngsi_ld(ngsi, &mut problems);
        }
        problems
    }

    fn check_ngsi_ld(&self, ngsi: &NgsiLdDef, problems: &mut Vec<SchemaProblem>) {
        let field = |name: &str| self.fields.iter().find(|f| f.name == name);
        let t = &ngsi.entity_type;
        if t.is_empty()
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-:/.#".contains(c))
        {
            problems.push(problem(
                None,
                format!("ngsi_ld.type '{t}' is not an entity type (letters, digits, _ - : / . #)"),
            ));
        }
        match field(&ngsi.id) {
            Some(f) if f.field_type == FieldType::String && !f.nullable => {}
            Some(_) => problems.push(problem(
                Some(&ngsi.id),
                "ngsi_ld.id must name a string field that is not nullable",
            )),
            None => problems.push(problem(
                Some(&ngsi.id),
                "ngsi_ld.id names a field the dataset does not have (default: entity_id)",
            )),
        }
        match ngsi.observed_at.as_ref().or(self.event_time.as_ref()) {
            None => problems.push(problem(
                None,
                "ngsi_ld needs a timestamp field for when values were observed: set ngsi_ld.observed_at or event_time",
            )),
            Some(name) => match field(name) {
                Some(f) if f.field_type == FieldType::Timestamp => {}
                _ => problems.push(problem(
                    Some(name),
                    "ngsi_ld.observed_at must name a timestamp field",
                )),
            },
        }
        for (attribute, name) in &ngsi.attributes {
            if field(name).is_none() {
                problems.push(problem(
                    Some(name),
                    format!(
                        "ngsi_ld.attributes.{attribute} names a field the dataset does not have"
                    ),
                ));
            }
        }
    }

    /// Checks that `self` may replace `old` without breaking stored data: fields may be
    /// added as nullable; descriptions, classifications and sharing may change; nothing
    /// stored may be removed, retyped or made required. Returns every breaking change.
    pub fn check_change_from(&self, old: &DatasetDef) -> Vec<SchemaProblem> {
        let mut problems = self.check();
        if self.owner != old.owner {
            problems.push(problem(
                None,
                format!(
                    "the owner cannot change (was {}, now {})",
                    old.owner, self.owner
                ),
            ));
        }
        if self.event_time != old.event_time {
            problems.push(problem(
                None,
                "the event_time field cannot change: stored segments are partitioned by it",
            ));
        }
        for old_field in &old.fields {
            match self.field(&old_field.name) {
                None => problems.push(problem(
                    Some(&old_field.name),
                    "removing a field would drop stored data; create a new dataset instead",
                )),
                Some(new) if new.field_type != old_field.field_type => problems.push(problem(
                    Some(&old_field.name),
                    format!(
                        "the type cannot change from {} to {}: stored values would no longer fit",
                        old_field.field_type.name(),
                        new.field_type.name()
                    ),
                )),
                Some(new) if old_field.nullable && !new.nullable => problems.push(problem(
                    Some(&old_field.name),
                    "a nullable field cannot become required: stored records may lack it",
                )),
                Some(_) => {}
            }
        }
        for (i, new_field) in self.fields.iter().enumerate() {
            match old.fields.iter().position(|f| f.name == new_field.name) {
                None if !new_field.nullable => problems.push(problem(
                    Some(&new_field.name),
                    "a field added to a dataset must be nullable: stored records lack it",
                )),
                Some(pos) if pos != i => problems.push(problem(
                    Some(&new_field.name),
                    "fields keep their order; add new fields at the end",
                )),
                _ => {}
            }
        }
        problems
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The Arrow schema of stored records: the defined fields plus `_ingested_at`.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields: Vec<ArrowField> = self
            .fields
            .iter()
            .map(|f| ArrowField::new(&f.name, f.field_type.arrow_type(), f.nullable))
            .collect();
        fields.push(ArrowField::new(
            INGESTED_AT,
            FieldType::Timestamp.arrow_type(),
            false,
        ));
        Arc::new(Schema::new(fields))
    }

    /// Every dataset name the hub derives from this one (today only the dead-letter
    /// dataset); each must be a valid name too.
    pub fn derived_names(&self) -> Vec<DatasetName> {
        vec![self.name.rejected()]
    }

    /// The definition of the dead-letter dataset that keeps this dataset's refused records.
    pub fn rejected_def(&self) -> DatasetDef {
        let field = |name: &str, field_type, class, description: &str| FieldDef {
            name: name.to_string(),
            field_type,
            class,
            nullable: false,
            description: description.to_string(),
            mask: None,
        };
        DatasetDef {
            name: self.name.rejected(),
            owner: self.owner.clone(),
            description: format!(
                "Records refused by {} in skip mode, with the reasons",
                self.name
            ),
            sharing: SharingClass::None,
            event_time: None,
            mappings: BTreeMap::new(),
            ngsi_ld: None,
            open_table: None,
            fields: vec![
                field(
                    "line",
                    FieldType::Int,
                    Classification::Internal,
                    "line or row number in the batch",
                ),
                field(
                    "field",
                    FieldType::String,
                    Classification::Internal,
                    "the field at fault, or empty",
                ),
                field(
                    "reason",
                    FieldType::String,
                    Classification::Internal,
                    "why the record was refused",
                ),
                // The raw record may carry personal data of any kind, so it is personal.
                field(
                    "record",
                    FieldType::String,
                    Classification::Personal,
                    "the record as received",
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(toml_text: &str) -> DatasetDef {
        DatasetDef::from_file_text("x.toml", toml_text).unwrap()
    }

    const BASE: &str = r#"
name = "transport.anpr_passages"
owner = "transport"
sharing = "conditional"
event_time = "ts"
[[fields]]
name = "ts"
type = "timestamp"
[[fields]]
name = "plate"
type = "string"
class = "personal"
"#;

    #[test]
    fn good_definition_has_no_problems() {
        assert!(def(BASE).check().is_empty());
    }

    #[test]
    fn every_problem_is_reported() {
        let mut d = def(BASE);
        d.event_time = Some("plate".into());
        d.fields.push(d.fields[1].clone());
        d.fields.push(FieldDef {
            name: "Bad-Name".into(),
            ..d.fields[1].clone()
        });
        let problems = d.check();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn breaking_changes_are_refused() {
        let old = def(BASE);
        let mut retyped = old.clone();
        retyped.fields[1].field_type = FieldType::Int;
        retyped.fields.remove(0);
        retyped.event_time = None;
        let problems = retyped.check_change_from(&old);
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("removing a field"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("type cannot change"))
        );
        assert!(problems.iter().any(|p| p.message.contains("event_time")));

        let mut added = old.clone();
        added.fields.push(FieldDef {
            name: "lane".into(),
            field_type: FieldType::Int,
            class: Classification::Public,
            nullable: false,
            description: String::new(),
            mask: None,
        });
        assert_eq!(added.check_change_from(&old).len(), 1);
        added.fields[2].nullable = true;
        added.fields[1].class = Classification::Internal;
        assert!(added.check_change_from(&old).is_empty());
    }
}
