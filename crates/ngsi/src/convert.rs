//! NGSI-LD's conversions, free of I/O: an entity to the row that stores it and back, the
//! query language and geo-queries to SQL conditions over a dataset's own fields, and the
//! temporal representation.

use std::collections::BTreeMap;

use citybrain_hub::{DatasetDef, FieldType, NgsiLdDef};
use serde_json::{Map, Value, json};

use crate::{ReadParams, Row};

/// A term as the bundled contexts name it: a full URI compacted to its last segment.
pub fn term(name: &str) -> &str {
    if name.contains("://") || name.starts_with("urn:") {
        name.rsplit(['/', '#']).next().unwrap_or(name)
    } else {
        name
    }
}

pub fn observed_field(def: &DatasetDef, ngsi: &NgsiLdDef) -> String {
    ngsi.observed_at
        .clone()
        .or_else(|| def.event_time.clone())
        .unwrap_or_default()
}

/// An entity (normalized, concise or key-values) as the row that stores it: `base` is the
/// entity as it stood (for an update), `now` the write's time.
pub fn to_row(
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
    entity: &Row,
    base: Option<&Row>,
    now_text: &str,
) -> Result<Row, String> {
    crate::validate::check_entity(entity)?;
    let id = entity
        .get("id")
        .or_else(|| entity.get("@id"))
        .and_then(Value::as_str)
        .ok_or(
            "an entity needs an 'id' (a URI such as urn:ngsi-ld:AirQualityObserved:station-1)",
        )?;
    if !(id.contains(':')) {
        return Err(format!(
            "id '{id}' is not a URI (e.g. urn:ngsi-ld:Type:name)"
        ));
    }
    let observed = observed_field(def, ngsi);
    let mut row = base.cloned().unwrap_or_default();
    row.remove("_ingested_at");
    row.remove("_ngsi_rank");
    row.insert(ngsi.id.clone(), Value::from(id));
    let mut newest: Option<String> = None;
    let mut explicit: Option<String> = None;
    for (key, attr) in entity {
        if matches!(key.as_str(), "id" | "@id" | "type" | "@type" | "@context") {
            continue;
        }
        let name = term(key);
        let field_name = ngsi.field_of(name);
        let Some(field) = def.fields.iter().find(|f| f.name == field_name) else {
            return Err(format!(
                "attribute '{name}' has no field in dataset {} (expected a field '{field_name}', or ngsi_ld.attributes.{name} naming one)",
                def.name
            ));
        };
        if field.name == ngsi.id {
            return Err(format!(
                "attribute '{name}' is the entity's id field; send it as the entity's id"
            ));
        }
        // Normalized: {"type": "Property", "value": ...}; concise: {"value": ...};
        // key-values: the value itself.
        let (value, observed_at) = match attr {
            Value::Object(o)
                if o.contains_key("value")
                    || o.contains_key("object")
                    || o.contains_key("@value") =>
            {
                let v = o
                    .get("value")
                    .or_else(|| o.get("object"))
                    .or_else(|| o.get("@value"))
                    .cloned()
                    .unwrap_or(Value::Null);
                (
                    v,
                    o.get("observedAt")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                )
            }
            other => (other.clone(), None),
        };
        if field.name == observed {
            // Smart Data Models send the time as an attribute (`dateObserved`): it is the
            // row's observation time, ahead of any attribute's observedAt.
            let literal = match &value {
                Value::Object(o) => o.get("@value").cloned().unwrap_or(Value::Null),
                v => v.clone(),
            };
            let at = literal.as_str().map(str::to_string).ok_or_else(|| {
                format!("attribute '{name}' is when the entity was observed: a DateTime text")
            })?;
            explicit = Some(at);
            continue;
        }
        if let Some(t) = observed_at
            && newest.as_deref().is_none_or(|n| n < t.as_str())
        {
            newest = Some(t);
        }
        row.insert(
            field.name.clone(),
            stored_value(field.field_type, value, name)?,
        );
    }
    row.insert(
        observed,
        Value::from(explicit.or(newest).unwrap_or_else(|| now_text.to_string())),
    );
    Ok(row)
}

/// A value as the field's type stores it.
pub fn stored_value(field_type: FieldType, value: Value, name: &str) -> Result<Value, String> {
    // A typed literal ({"@type": "DateTime", "@value": "..."}) is its value.
    let value = match value {
        Value::Object(mut o) if o.contains_key("@value") => {
            o.remove("@value").unwrap_or(Value::Null)
        }
        v => v,
    };
    Ok(match (field_type, value) {
        (FieldType::Geo, Value::Object(o)) => {
            let point = o
                .get("coordinates")
                .and_then(Value::as_array)
                .filter(|_| o.get("type").and_then(Value::as_str) == Some("Point"))
                .and_then(|c| Some((c.first()?.as_f64()?, c.get(1)?.as_f64()?)))
                .ok_or_else(|| {
                    format!("attribute '{name}': a GeoProperty here is a GeoJSON Point")
                })?;
            json!({"lon": point.0, "lat": point.1})
        }
        (FieldType::String, v @ (Value::Object(_) | Value::Array(_))) => Value::from(v.to_string()),
        (_, v) => v,
    })
}

/// The stored row as an NGSI-LD entity.
pub fn to_entity(
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
    row: &Row,
    attrs: Option<&[String]>,
    key_values: bool,
) -> Value {
    let observed = observed_field(def, ngsi);
    let mut out = Map::new();
    out.insert(
        "id".into(),
        row.get(&ngsi.id).cloned().unwrap_or(Value::Null),
    );
    out.insert("type".into(), Value::from(ngsi.entity_type.clone()));
    let at = row.get(&observed).cloned();
    for field in &def.fields {
        if field.name == ngsi.id || field.name == observed {
            continue;
        }
        let Some(value) = row.get(&field.name).filter(|v| !v.is_null()) else {
            continue;
        };
        let name = ngsi.attribute_of(&field.name);
        if attrs.is_some_and(|a| !a.iter().any(|x| term(x) == name)) {
            continue;
        }
        let attr = if key_values {
            match (field.field_type, value) {
                (FieldType::Geo, v) => geo(v),
                (_, v) => v.clone(),
            }
        } else if field.field_type == FieldType::Geo {
            json!({"type": "GeoProperty", "value": geo(value)})
        } else {
            let mut a = json!({"type": "Property", "value": value});
            if let Some(t) = &at {
                a["observedAt"] = t.clone();
            }
            a
        };
        out.insert(name, attr);
    }
    Value::Object(out)
}

pub fn geo(v: &Value) -> Value {
    json!({"type": "Point", "coordinates": [v.get("lon").cloned().unwrap_or(Value::Null), v.get("lat").cloned().unwrap_or(Value::Null)]})
}

/// A string as a SQL literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The newest row of each entity in `source` (the dataset of `def`, or what of it is not
/// deleted), filtered by `condition` (SQL over its fields).
pub fn latest_sql(def: &DatasetDef, ngsi: &NgsiLdDef, source: &str, condition: &str) -> String {
    let observed = observed_field(def, ngsi);
    format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {id} ORDER BY {observed} DESC, _ingested_at DESC) AS _ngsi_rank FROM {source}) AS e WHERE _ngsi_rank = 1{cond}",
        id = ngsi.id,
        cond = if condition.is_empty() {
            String::new()
        } else {
            format!(" AND ({condition})")
        },
    )
}

/// The NGSI-LD query language (`q`), the part cities' sensors use: comparisons
/// (`==`, `!=`, `>`, `>=`, `<`, `<=`) of an attribute with a number, a quoted string or a
/// boolean, joined by `;` (and) or `|` (or), without parentheses. Attribute names are
/// checked against the dataset's fields, values become SQL literals: nothing of `q` reaches
/// SQL as text.
pub fn q_to_sql(def: &DatasetDef, ngsi: &NgsiLdDef, q: &str) -> Result<String, String> {
    let mut ors = Vec::new();
    for any in q.split('|') {
        let mut ands = Vec::new();
        for term_text in any.split(';') {
            let t = term_text.trim();
            let (pos, op) = ["==", "!=", ">=", "<=", ">", "<"]
                .iter()
                .filter_map(|op| t.find(op).map(|p| (p, *op)))
                .min_by_key(|(p, op)| (*p, std::cmp::Reverse(op.len())))
                .ok_or_else(|| {
                    format!("q: '{t}' is not a comparison (attr==value, attr>value, ...)")
                })?;
            let attr = term(t[..pos].trim());
            let raw = t[pos + op.len()..].trim();
            let field_name = ngsi.field_of(attr);
            let field = def
                .fields
                .iter()
                .find(|f| f.name == field_name)
                .ok_or_else(|| {
                    format!(
                        "q: no attribute '{attr}' in entities of type {}",
                        ngsi.entity_type
                    )
                })?;
            let value = if let Some(s) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                lit(s)
            } else if raw == "true" || raw == "false" {
                raw.to_string()
            } else if let Ok(n) = raw.parse::<f64>() {
                if !n.is_finite() {
                    return Err(format!("q: '{raw}' is not a number"));
                }
                raw.to_string()
            } else {
                return Err(format!(
                    "q: '{raw}' is not a number, a \"quoted string\", true or false"
                ));
            };
            let sql_op = if op == "==" { "=" } else { op };
            ands.push(format!("{} {sql_op} {value}", field.name));
        }
        ors.push(format!("({})", ands.join(" AND ")));
    }
    Ok(ors.join(" OR "))
}

/// `georel=near;maxDistance==M` (or `minDistance`) around `geometry=Point`, `coordinates=[lon,lat]`
/// over the dataset's first geo field, as SQL (an equirectangular distance: exact enough at a
/// city's scale).
pub fn geo_to_sql(def: &DatasetDef, params: &ReadParams) -> Result<Option<String>, String> {
    let Some(georel) = &params.georel else {
        return Ok(None);
    };
    let field = def
        .fields
        .iter()
        .find(|f| f.field_type == FieldType::Geo)
        .ok_or("georel: these entities have no GeoProperty")?;
    if params.geometry.as_deref() != Some("Point") {
        return Err("georel: geometry=Point is supported".into());
    }
    let coords: Vec<f64> = serde_json::from_str(params.coordinates.as_deref().unwrap_or(""))
        .map_err(|_| "coordinates: give [lon,lat]")?;
    let [lon, lat] = coords[..] else {
        return Err("coordinates: give [lon,lat]".into());
    };
    let mut parts = georel.split(';');
    if parts.next() != Some("near") {
        return Err("georel: near;maxDistance==M or near;minDistance==M is supported".into());
    }
    let mut conds = Vec::new();
    let k = lat.to_radians().cos();
    let dist = format!(
        "sqrt(power((get_field({f}, 'lon') - ({lon})) * {k} * 111320.0, 2) + power((get_field({f}, 'lat') - ({lat})) * 111320.0, 2))",
        f = field.name
    );
    for p in parts {
        let (what, m) = p.split_once("==").ok_or("georel: near;maxDistance==M")?;
        let m: f64 = m
            .parse()
            .map_err(|_| format!("georel: '{m}' is not metres"))?;
        match what {
            "maxDistance" => conds.push(format!("{dist} <= {m}")),
            "minDistance" => conds.push(format!("{dist} >= {m}")),
            other => return Err(format!("georel: unknown modifier '{other}'")),
        }
    }
    Ok(Some(conds.join(" AND ")))
}

/// The time condition of a temporal query (`timerel` before, after or between).
pub fn time_condition(observed: &str, params: &ReadParams) -> Result<String, String> {
    let at = |s: &Option<String>, what: &str| -> Result<String, String> {
        let text = s
            .as_deref()
            .ok_or_else(|| format!("timerel needs {what}"))?;
        citybrain_core::Timestamp::parse(text)
            .map_err(|_| format!("{what}: '{text}' is not an RFC 3339 instant"))?;
        Ok(format!("TIMESTAMP {}", lit(text)))
    };
    Ok(match params.timerel.as_deref() {
        None => String::new(),
        Some("before") => format!("{observed} < {}", at(&params.time_at, "timeAt")?),
        Some("after") => format!("{observed} > {}", at(&params.time_at, "timeAt")?),
        Some("between") => format!(
            "{observed} >= {} AND {observed} < {}",
            at(&params.time_at, "timeAt")?,
            at(&params.end_time_at, "endTimeAt")?
        ),
        Some(other) => {
            return Err(format!("timerel '{other}': before, after or between"));
        }
    })
}

/// Rows as the temporal representation: each attribute an array of its instances, newest
/// last (the `lastN` newest when asked).
pub fn temporal_entity(
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
    rows: &[Row],
    attrs: Option<&[String]>,
) -> Value {
    let mut out = Map::new();
    let mut series: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for row in rows {
        if let Value::Object(e) = to_entity(def, ngsi, row, attrs, false) {
            for (k, v) in e {
                match k.as_str() {
                    "id" | "type" => {
                        out.insert(k, v);
                    }
                    _ => series.entry(k).or_default().push(v),
                }
            }
        }
    }
    for (k, v) in series {
        out.insert(k, Value::Array(v));
    }
    Value::Object(out)
}
