//! What an NGSI-LD write must be before anything of it is stored (ETSI GS CIM 009 4.5, 4.6
//! and 4.8), free of I/O: ids and relationship objects that are URIs a person can read back
//! (no invisible, blank or markup characters), attributes that follow the meta-model
//! (a Property has a value, a Relationship an object, ...), temporal properties that are UTC
//! DateTimes, and no reserved term used as an entity type or attribute name. Each refusal
//! names the attribute and what it lacks; the caller answers 400 BadRequestData.

use serde_json::{Map, Value};

/// JSON-LD keywords and NGSI-LD's core terms that are not attributes.
const RESERVED_ATTRIBUTES: &[&str] = &[
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "observedAt",
    "datasetId",
    "instanceId",
    "unitCode",
    "value",
    "object",
    "valueList",
    "objectList",
    "languageMap",
    "vocab",
    "json",
    "lang",
    "@value",
    "@list",
    "@graph",
];

/// Terms that are not entity types.
const RESERVED_TYPES: &[&str] = &[
    "type",
    "id",
    "@type",
    "@id",
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "ListProperty",
    "ListRelationship",
    "VocabProperty",
    "JsonProperty",
];

/// The member that holds each attribute type's value: one per attribute, never another's.
const VALUE_MEMBERS: &[&str] = &[
    "value",
    "object",
    "languageMap",
    "valueList",
    "objectList",
    "vocab",
    "json",
];

fn own_member(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Property" | "GeoProperty" => "value",
        "Relationship" => "object",
        "LanguageProperty" => "languageMap",
        "ListProperty" => "valueList",
        "ListRelationship" => "objectList",
        "VocabProperty" => "vocab",
        "JsonProperty" => "json",
        _ => return None,
    })
}

/// Members of an attribute that are not sub-attributes.
const ATTRIBUTE_MEMBERS: &[&str] = &[
    "type",
    "@type",
    "value",
    "@value",
    "object",
    "objectType",
    "valueList",
    "objectList",
    "languageMap",
    "vocab",
    "json",
    "lang",
    "observedAt",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "unitCode",
    "datasetId",
    "instanceId",
    "previousValue",
    "previousObject",
];

/// An id (an entity's, a relationship's object, a datasetId): a URI, `scheme:rest`, with
/// none of the characters that make two ids look alike or one unreadable: controls,
/// spaces, format and default-ignorable characters (zero-width space, byte order mark,
/// bidirectional overrides, variation selectors, Hangul fillers), noncharacters, the
/// Braille blank, and the ASCII characters RFC 3986 leaves out (`<>"{}|\^` and the
/// backtick). Other non-ASCII letters stay (an IRI, RFC 3987: `urn:ngsi-ld:Ciudad:París`).
pub fn check_uri(what: &str, id: &str) -> Result<(), String> {
    let scheme = id.split(':').next().unwrap_or("");
    let scheme_ok = id.contains(':')
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || id.len() == scheme.len() + 1 {
        return Err(format!(
            "{what} '{}' is not a URI (e.g. urn:ngsi-ld:Type:name)",
            id.escape_default()
        ));
    }
    if let Some(c) = id.chars().find(|&c| unreadable(c)) {
        return Err(format!(
            "{what} '{}' holds U+{:04X}, a character that cannot be told apart or read back in an id",
            id.escape_default(),
            u32::from(c)
        ));
    }
    Ok(())
}

fn unreadable(c: char) -> bool {
    let u = u32::from(c);
    c.is_control()
        || c.is_whitespace()
        || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
        // Default-ignorable code points (Unicode's DerivedCoreProperties) and the blanks
        // that render as nothing.
        || matches!(
            u,
            0x00AD
                | 0x034F
                | 0x061C
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0x2800
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFF8
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
        // Noncharacters.
        || (0xFDD0..=0xFDEF).contains(&u)
        || u & 0xFFFE == 0xFFFE
}

/// A query's own parameters (GET /entities): ids that are URIs, attribute names that are
/// not NGSI-LD's own terms, and at least one of what selects entities (ETSI GS CIM 009
/// 5.7.2: type, attrs, q or a geo-query; ids alone do not).
pub fn check_query(
    ids: Option<&str>,
    attrs: Option<&[String]>,
    selects: bool,
) -> Result<(), String> {
    for id in ids.into_iter().flat_map(|i| i.split(',')) {
        check_uri("id", id.trim())?;
    }
    for a in attrs.into_iter().flatten() {
        let short = crate::convert::term(a);
        if short.is_empty()
            || matches!(short, "id" | "type")
            || RESERVED_ATTRIBUTES.contains(&short)
        {
            return Err(format!("attrs: '{a}' is not an attribute name"));
        }
    }
    if !selects {
        return Err("a query selects entities by type, attrs, q or a geo-query (georel)".into());
    }
    Ok(())
}

/// The entity's type: not a reserved term.
pub fn check_type(entity_type: &str) -> Result<(), String> {
    if RESERVED_TYPES.contains(&entity_type) || entity_type.is_empty() {
        return Err(format!(
            "'{entity_type}' is a term of NGSI-LD itself, not an entity type"
        ));
    }
    // A term (a name starting with a letter), or a full URI.
    if !entity_type.contains(':')
        && !entity_type.starts_with(|c: char| c.is_alphabetic() || c == '_')
    {
        return Err(format!(
            "entity type '{entity_type}' is not a term (a name starting with a letter) or a URI"
        ));
    }
    Ok(())
}

/// An entity, or a fragment of one (the attributes of an update): its id if it has one,
/// and every attribute.
pub fn check_entity(entity: &Map<String, Value>) -> Result<(), String> {
    for key in ["id", "@id"] {
        match entity.get(key) {
            None => {}
            Some(Value::String(id)) => check_uri("id", id)?,
            Some(_) => return Err(format!("'{key}' is a URI text")),
        }
    }
    for (name, attr) in entity {
        if matches!(
            name.as_str(),
            "id" | "@id" | "type" | "@type" | "@context" | "scope"
        ) {
            continue;
        }
        let short = crate::convert::term(name);
        if RESERVED_ATTRIBUTES.contains(&short) {
            return Err(format!(
                "'{short}' is a term of NGSI-LD itself, not an attribute name"
            ));
        }
        check_attribute(short, attr, 0)?;
    }
    Ok(())
}

/// One attribute (or each instance, for several with their datasetIds) as the meta-model
/// says, sub-attributes included. Key-values and concise attributes (no `type`) are
/// values; only a `null` one is refused there, and only when normalized.
fn check_attribute(name: &str, attr: &Value, depth: usize) -> Result<(), String> {
    if depth > 8 {
        return Err(format!("attribute '{name}': nested deeper than 8 levels"));
    }
    let Value::Object(o) = attr else {
        if let Value::Array(instances) = attr {
            // Several instances (datasetId) are objects; a key-values array is a value.
            let mut seen = Vec::new();
            for a in instances.iter().filter(|a| is_attribute_object(a)) {
                check_attribute(name, a, depth + 1)?;
                let dataset = a.get("datasetId").and_then(Value::as_str);
                if seen.contains(&dataset) {
                    return Err(format!(
                        "attribute '{name}' has two instances with the datasetId {}",
                        dataset.unwrap_or("(the default)")
                    ));
                }
                seen.push(dataset);
            }
        }
        return Ok(());
    };
    if o.contains_key("@context") {
        return Err(format!(
            "attribute '{name}' carries its own @context; give the @context once, for the whole entity"
        ));
    }
    let kind = o
        .get("type")
        .or_else(|| o.get("@type"))
        .and_then(Value::as_str);
    if let Some(own) = kind.and_then(own_member) {
        if let Some(other) = VALUE_MEMBERS
            .iter()
            .find(|m| **m != own && o.contains_key(**m))
        {
            return Err(format!(
                "attribute '{name}' is a {}: it carries '{own}', not '{other}'",
                kind.unwrap_or_default()
            ));
        }
        if o.contains_key("unitCode") && !matches!(own, "value" | "valueList") {
            return Err(format!(
                "attribute '{name}' is a {}: only a Property has a unitCode",
                kind.unwrap_or_default()
            ));
        }
    }
    if let Some(member) = o.keys().find(|k| k.starts_with("previous")) {
        return Err(format!(
            "attribute '{name}': '{member}' is given by the broker in notifications, never sent"
        ));
    }
    if matches!(name, "location" | "observationSpace" | "operationSpace")
        && matches!(kind, Some(k) if k != "GeoProperty" && own_member(k).is_some())
    {
        return Err(format!(
            "attribute '{name}' is a GeoProperty, not a {}",
            kind.unwrap_or_default()
        ));
    }
    let need = |member: &str| -> Result<&Value, String> {
        match o.get(member) {
            Some(Value::Null) | None => Err(format!(
                "attribute '{name}' is a {} without its '{member}'",
                kind.unwrap_or("Property")
            )),
            Some(v) => Ok(v),
        }
    };
    match kind {
        Some("Property" | "GeoProperty") => {
            need("value")?;
        }
        Some("Relationship") => match need("object")? {
            Value::String(id) => check_uri(&format!("attribute '{name}': object"), id)?,
            Value::Array(ids) => {
                for id in ids {
                    let id = id
                        .as_str()
                        .ok_or_else(|| format!("attribute '{name}': each object is a URI text"))?;
                    check_uri(&format!("attribute '{name}': object"), id)?;
                }
            }
            _ => return Err(format!("attribute '{name}': its object is a URI text")),
        },
        Some("LanguageProperty") => {
            let Value::Object(map) = need("languageMap")? else {
                return Err(format!(
                    "attribute '{name}': its languageMap is an object of language tags"
                ));
            };
            for (tag, text) in map {
                let texts = match text {
                    Value::Array(a) => a.iter().all(Value::is_string),
                    v => v.is_string(),
                };
                if !texts || text.as_str() == Some("urn:ngsi-ld:null") {
                    return Err(format!(
                        "attribute '{name}': languageMap '{tag}' is a text (or texts)"
                    ));
                }
            }
        }
        Some("ListProperty") => {
            if o.contains_key("value") {
                return Err(format!(
                    "attribute '{name}' is a ListProperty: its values go in valueList, not value"
                ));
            }
            if !need("valueList")?.is_array() {
                return Err(format!("attribute '{name}': its valueList is an array"));
            }
        }
        Some("ListRelationship") => {
            let Value::Array(list) = need("objectList")? else {
                return Err(format!("attribute '{name}': its objectList is an array"));
            };
            for entry in list {
                let id = match entry {
                    Value::String(id) => id.as_str(),
                    Value::Object(e) => e.get("object").and_then(Value::as_str).unwrap_or(""),
                    _ => "",
                };
                check_uri(&format!("attribute '{name}': objectList entry"), id)?;
            }
        }
        Some("VocabProperty") => {
            need("vocab")?;
        }
        Some("JsonProperty") => {
            if !matches!(need("json")?, Value::Object(_) | Value::Array(_)) {
                return Err(format!(
                    "attribute '{name}': its json is a JSON object or array"
                ));
            }
        }
        // Concise (`{"value": ...}`) or a key-values object (a GeoJSON geometry, a
        // structured value): no meta-model to check beyond a normalized null.
        _ => {
            if o.contains_key("value") && o.get("value") == Some(&Value::Null) {
                return Err(format!("attribute '{name}' has a null value"));
            }
            if kind.is_some() || !is_attribute_object(attr) {
                return Ok(());
            }
        }
    }
    if let Some(at) = o.get("observedAt") {
        check_instant(name, "observedAt", at)?;
    }
    if let Some(id) = o.get("datasetId") {
        let id = id
            .as_str()
            .ok_or_else(|| format!("attribute '{name}': its datasetId is a URI text"))?;
        // `@none` names the default instance.
        if id != "@none" {
            check_uri(&format!("attribute '{name}': datasetId"), id)?;
        }
    }
    if let Some(unit) = o.get("unitCode")
        && !unit.is_string()
    {
        return Err(format!(
            "attribute '{name}': its unitCode is a text (UN/CEFACT)"
        ));
    }
    for (key, sub) in o {
        if !ATTRIBUTE_MEMBERS.contains(&key.as_str()) && is_attribute_object(sub) {
            check_attribute(key, sub, depth + 1)?;
        }
    }
    Ok(())
}

/// Whether `v` is an attribute in the normalized or concise form (not a plain value).
fn is_attribute_object(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        o.contains_key("value")
            || o.contains_key("object")
            || o.contains_key("languageMap")
            || o.contains_key("valueList")
            || o.contains_key("objectList")
            || o.contains_key("vocab")
            || o.contains_key("json")
            || matches!(
                o.get("type").and_then(Value::as_str),
                Some(
                    "Property"
                        | "GeoProperty"
                        | "Relationship"
                        | "LanguageProperty"
                        | "ListProperty"
                        | "ListRelationship"
                        | "VocabProperty"
                        | "JsonProperty"
                )
            )
    })
}

/// A temporal property (observedAt, ...): a UTC DateTime text, `Z` and not an offset.
fn check_instant(name: &str, member: &str, at: &Value) -> Result<(), String> {
    let text = at.as_str().ok_or_else(|| {
        format!("attribute '{name}': its {member} is a DateTime text, not a Property")
    })?;
    if !text.ends_with('Z') || citybrain_core::Timestamp::parse(text).is_err() {
        return Err(format!(
            "attribute '{name}': its {member} '{text}' is not a UTC DateTime (e.g. 2026-08-10T12:00:00Z)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(v: Value) -> Result<(), String> {
        check_entity(v.as_object().unwrap())
    }

    #[test]
    fn invisible_and_markup_characters_are_refused_in_ids_and_iris_kept() {
        for c in [
            '\u{202E}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{2028}',
            '\u{00A0}',
            '<',
            '\u{FE0F}',
            '\u{E0100}',
            '\u{FDD0}',
            '\u{FFFE}',
            '\u{115F}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{2800}',
            ' ',
        ] {
            let id = format!("urn:ngsi-ld:Vehicle:A{c}B");
            assert!(check_uri("id", &id).is_err(), "{id:?}");
        }
        check_uri("id", "urn:ngsi-ld:Ciudad:París").unwrap();
        check_uri("id", "urn:ngsi-ld:站点:杭州-1").unwrap();
        check_uri("id", "https://example.org/a?b=c#d").unwrap();
        for not_uri in ["station-1", ":x", "1urn:x", "urn:", "not a uri"] {
            assert!(check_uri("id", not_uri).is_err(), "{not_uri}");
        }
    }

    #[test]
    fn the_meta_model_is_checked_attribute_by_attribute() {
        let id = "urn:ngsi-ld:Building:b1";
        for bad in [
            json!({"id": id, "name": {"type": "Property"}}),
            json!({"id": id, "owner": {"type": "Relationship"}}),
            json!({"id": id, "name": {"type": "Property", "value": null}}),
            json!({"id": id, "d": {"type": "LanguageProperty"}}),
            json!({"id": id, "n": {"type": "Property", "value": "x", "observedAt": "not-a-date"}}),
            json!({"id": id, "n": {"type": "Property", "value": "x", "observedAt": "2026-08-10T12:00:00+02:00"}}),
            json!({"id": id, "n": {"type": "Property", "value": "x", "observedAt": {"type": "Property", "value": "2026-08-10T12:00:00Z"}}}),
            json!({"id": id, "observedAt": {"type": "Property", "value": "2026-01-01T00:00:00Z"}}),
            json!({"id": id, "datasetId": {"type": "Property", "value": 1}}),
            json!({"id": id, "speed": {"type": "Property", "value": 1, "@context": {"speed": "https://evil.example/speed"}}}),
            json!({"id": id, "route": {"type": "ListRelationship", "objectList": ["not a uri"]}}),
            json!({"id": id, "t": {"type": "ListProperty", "valueList": [1.2], "value": 3}}),
            json!({"id": id, "n": {"type": "Property", "value": 1, "sub": {"type": "Relationship", "object": "x y"}}}),
            json!({"id": id, "n": {"type": "Property", "value": 1, "object": "urn:a:b"}}),
            json!({"id": id, "r": {"type": "Relationship", "object": "urn:a:b", "unitCode": "MTR"}}),
            json!({"id": id, "j": {"type": "JsonProperty", "json": 3}}),
            json!({"id": id, "n": {"type": "Property", "value": 1, "previousValue": 0}}),
            json!({"id": id, "d": {"type": "LanguageProperty", "languageMap": {"en": 3}}}),
            json!({"id": id, "location": {"type": "Property", "value": "here"}}),
            json!({"id": id, "n": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]}),
        ] {
            assert!(check(bad.clone()).is_err(), "{bad}");
        }
        for good in [
            json!({"id": id, "type": "Building", "name": {"type": "Property", "value": "x", "observedAt": "2026-08-10T12:00:00Z", "unitCode": "CEL"}}),
            json!({"id": id, "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"}}),
            json!({"id": id, "route": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Road:1", {"object": "urn:ngsi-ld:Road:2"}]}}),
            json!({"id": id, "location": {"type": "Point", "coordinates": [120.1, 30.2]}}),
            json!({"id": id, "name": "key-values text", "n": 3, "tags": ["a", "b"]}),
            json!({"id": id, "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-08-10T12:00:00Z"}}}),
            json!({"id": id, "n": {"value": 2}}),
        ] {
            check(good.clone()).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        check(json!({"id": id, "n": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:ngsi-ld:Dataset:b"}]})).unwrap();
        assert!(check_query(Some("thisisaninvaliduri1"), None, true).is_err());
        assert!(check_query(None, Some(&["id".into()]), true).is_err());
        assert!(check_query(Some("urn:ngsi-ld:Building:b1"), None, false).is_err());
        check_query(
            Some("urn:ngsi-ld:Building:b1"),
            Some(&["name".into()]),
            true,
        )
        .unwrap();
        assert!(check_type("type").is_err());
        assert!(check_type("9Vehicle").is_err());
        check_type("https://example.org/Vehicle").unwrap();
        check_type("Building").unwrap();
    }
}
