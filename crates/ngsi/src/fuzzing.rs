//! NGSI-LD input for the fuzz target `fuzz/fuzz_targets/ngsi.rs`: a JSON body taken as an
//! entity (the row it is stored as; the rows a temporal entity is stored as) and as a
//! query's parameters (`q`, `id`, a geo-query, a time condition), each turned into what the
//! server would store or the SQL condition it would run. Errors, never a panic; and the
//! SQL a query's parameters become never ends the statement, comments out the rest of it,
//! or leaves a parenthesis open outside a string literal (the values a client sends reach
//! SQL only as literals). Public only for the fuzzer.

use std::sync::OnceLock;

use citybrain_hub::{DatasetDef, NgsiLdDef};
use serde_json::Value;

use crate::ReadParams;
use crate::convert::{geo_to_sql, time_condition, to_row};

const AIR: &str = r#"name = "environment.air_quality"
owner = "environment"
event_time = "observed_at"
[ngsi_ld]
type = "AirQualityObserved"
attributes = { NO2 = "no2" }
[[fields]]
name = "entity_id"
type = "string"
[[fields]]
name = "observed_at"
type = "timestamp"
[[fields]]
name = "no2"
type = "float"
nullable = true
[[fields]]
name = "station"
type = "string"
nullable = true
[[fields]]
name = "location"
type = "geo"
nullable = true
[[fields]]
name = "reported_by"
type = "string"
class = "personal"
nullable = true
"#;

fn air() -> &'static (DatasetDef, NgsiLdDef) {
    static AIR_DEF: OnceLock<(DatasetDef, NgsiLdDef)> = OnceLock::new();
    AIR_DEF.get_or_init(|| {
        let def = DatasetDef::from_file_text("air.toml", AIR).expect("the fuzz definition");
        let ngsi = def.ngsi_ld.clone().expect("it declares a type");
        (def, ngsi)
    })
}

/// Panics if `sql`, outside its single-quoted literals, holds `;`, `--` or `/*`, or its
/// parentheses do not balance.
fn assert_contained(sql: &str) {
    let (mut quoted, mut depth) = (false, 0i64);
    let bytes = sql.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if quoted {
            if b == b'\'' {
                quoted = false; // a doubled quote closes and reopens: same result
            }
            continue;
        }
        match b {
            b'\'' => quoted = true,
            b';' => panic!("a statement separator outside a literal: {sql}"),
            b'-' if bytes.get(i + 1) == Some(&b'-') => panic!("a comment: {sql}"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => panic!("a comment: {sql}"),
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                assert!(depth >= 0, "a parenthesis closed that was not open: {sql}");
            }
            _ => {}
        }
    }
    assert!(!quoted && depth == 0, "unbalanced: {sql}");
}

/// Handles `data` as an entity and as a query's parameters.
pub fn input(data: &[u8]) {
    let (def, ngsi) = air();
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Value::Object(entity) = &value {
        let _ = to_row(def, ngsi, entity, None, "2026-12-03T08:00:00Z");
        let _ =
            crate::temporal_rows_of(def, ngsi, "urn:ngsi-ld:x:1", entity, "2026-12-03T08:00:00Z");
    }
    if let Ok(params) = serde_json::from_value::<ReadParams>(value) {
        if let Ok(sql) = crate::conditions(def, ngsi, &params) {
            assert_contained(&sql);
        }
        if let Ok(Some(sql)) = geo_to_sql(def, &params) {
            assert_contained(&sql);
        }
        if let Ok(sql) = time_condition("observed_at", &params) {
            assert_contained(&sql);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_entity_and_a_query_are_handled() {
        super::input(br#"{"id":"urn:ngsi-ld:AirQualityObserved:1","type":"AirQualityObserved","NO2":{"type":"Property","value":1.5},"q":"NO2>1;station==\"a'b\"","georel":"near;maxDistance==100","geometry":"Point","coordinates":"[120.1,30.2]","timerel":"before","timeAt":"2026-12-03T08:00:00Z"}"#);
    }

    #[test]
    #[should_panic(expected = "separator")]
    fn an_escape_is_caught() {
        super::assert_contained("station = 'a'; DROP TABLE x");
    }
}
