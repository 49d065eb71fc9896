//! What the NGSI-LD tests share: an air-quality dataset declaring its entity type (with a
//! personal field), a station as a FIWARE client sends it, and calls that say how they went.

use serde_json::{Value, json};

use super::{Server, agent, department_admin};

pub const AIR: &str = r#"name = "environment.air_quality"
owner = "environment"
sharing = "conditional"
description = "Air quality stations (Smart Data Models AirQualityObserved) through NGSI-LD."
event_time = "observed_at"

[ngsi_ld]
type = "AirQualityObserved"
# Smart Data Models spell it NO2; a field name is lower case.
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
name = "pm25"
type = "float"
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

/// The environment department's admin token, with the air-quality dataset created.
#[allow(dead_code)]
pub fn air_dataset(server: &Server) -> String {
    let env = department_admin(server, "environment");
    let (status, text) =
        server.post_as(&env, "/api/v1/datasets", "application/toml", AIR.as_bytes());
    assert_eq!(status, 201, "{text}");
    env
}

pub fn call(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Option<String>) {
    let url = format!("{}{path}", server.base);
    let auth = format!("Bearer {token}");
    // A body carrying its @context is JSON-LD; one without is plain JSON (the rule).
    let with_context = |b: &Value| match b {
        Value::Array(items) => items.iter().any(|i| i.get("@context").is_some()),
        one => one.get("@context").is_some(),
    };
    let content_type = match &body {
        Some(b) if with_context(b) => "application/ld+json",
        _ => "application/json",
    };
    let response = match (method, body) {
        ("GET", _) => agent().get(&url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent().delete(&url).header("Authorization", &auth).call(),
        ("PATCH", Some(b)) => agent()
            .patch(&url)
            .header("Authorization", &auth)
            .header("Content-Type", content_type)
            .send(b.to_string().as_bytes()),
        ("PUT", Some(b)) => agent()
            .put(&url)
            .header("Authorization", &auth)
            .header("Content-Type", content_type)
            .send(b.to_string().as_bytes()),
        (_, b) => agent()
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", content_type)
            .send(b.unwrap_or(Value::Null).to_string().as_bytes()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        response.into_body().read_to_string().unwrap_or_default(),
        location,
    )
}

pub fn station(n: u32, no2: f64, lon: f64, lat: f64, at: &str) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:AirQualityObserved:station-{n}"),
        "type": "AirQualityObserved",
        "NO2": {"type": "Property", "value": no2, "observedAt": at},
        "pm25": {"type": "Property", "value": 12.5 + f64::from(n), "observedAt": at},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "reportedBy": {"type": "Property", "value": format!("inspector-{n}@example.org")},
        "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    })
}
