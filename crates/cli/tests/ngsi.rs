//! NGSI-LD over the hub (issue 24, item 2): entities of a type a dataset declares are
//! created, read, updated, queried (type, q, attrs, near a point) and read as history, over
//! HTTP as a FIWARE client would; every write is a governed ingest SQL sees, every read a
//! masked, audited data call.

mod common;

use common::{agent, department_admin, start};
use serde_json::{Value, json};

const AIR: &str = r#"name = "environment.air_quality"
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

fn call(
    server: &common::Server,
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

fn station(n: u32, no2: f64, lon: f64, lat: f64, at: &str) -> Value {
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

#[test]
fn entities_go_in_as_governed_rows_and_come_back_masked_queried_and_as_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &[]);
    let env = department_admin(&server, "environment");
    let (status, text) =
        server.post_as(&env, "/api/v1/datasets", "application/toml", AIR.as_bytes());
    assert_eq!(status, 201, "{text}");

    // Create: 201 with where it lives; a second create of the same id is refused.
    let (status, text, location) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entities",
        Some(station(1, 41.0, 120.150, 30.270, "2026-12-03T08:00:00Z")),
    );
    assert_eq!(status, 201, "{text}");
    assert_eq!(
        location.as_deref(),
        Some("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:station-1")
    );
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entities",
        Some(station(1, 41.0, 120.150, 30.270, "2026-12-03T08:00:00Z")),
    );
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("AlreadyExists"), "{text}");

    // Retrieve, normalized: each attribute with its value and when it was observed.
    let id = "urn:ngsi-ld:AirQualityObserved:station-1";
    let (status, text, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/entities/{id}"),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["type"], "AirQualityObserved");
    assert_eq!(e["NO2"]["value"], 41.0, "{e}");
    assert_eq!(e["NO2"]["observedAt"], "2026-12-03T08:00:00Z", "{e}");
    assert_eq!(
        e["location"]["value"]["coordinates"],
        json!([120.15, 30.27]),
        "{e}"
    );
    // The owner reads its own personal field raw.
    assert_eq!(e["reportedBy"]["value"], "inspector-1@example.org", "{e}");

    // Update: the entity as it stood with the new value over it; its history keeps both.
    let (status, text, _) = call(
        &server,
        &env,
        "PATCH",
        &format!("/ngsi-ld/v1/entities/{id}/attrs"),
        Some(
            json!({"NO2": {"type": "Property", "value": 58.0, "observedAt": "2026-12-03T09:00:00Z"}}),
        ),
    );
    assert_eq!(status, 204, "{text}");
    let (_, text, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/entities/{id}?options=keyValues"),
        None,
    );
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["NO2"], 58.0, "{e}");
    assert_eq!(
        e["pm25"], 13.5,
        "the update kept the attributes it did not send: {e}"
    );
    let (status, text, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/temporal/entities/{id}?timerel=after&timeAt=2026-12-03T00:00:00Z"),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let t: Value = serde_json::from_str(&text).unwrap();
    let values: Vec<f64> = t["NO2"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, vec![41.0, 58.0], "{t}");

    // A batch: two new stations and one more reading of the first.
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entityOperations/upsert",
        Some(json!([
            station(2, 35.0, 120.160, 30.275, "2026-12-03T09:00:00Z"),
            station(3, 80.0, 120.400, 30.500, "2026-12-03T09:00:00Z"),
        ])),
    );
    // An upsert that created entities says which.
    assert_eq!(status, 201, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!([
            "urn:ngsi-ld:AirQualityObserved:station-2",
            "urn:ngsi-ld:AirQualityObserved:station-3"
        ])
    );
    // Every write is a row SQL sees: 1 create + 1 update + 2 upserts.
    let (status, rows) = server.post_as(
        &env,
        "/api/v1/sql",
        "application/json",
        br#"{"sql": "SELECT count(*) AS n FROM environment.air_quality", "purpose": "test"}"#,
    );
    assert_eq!(status, 200, "{rows}");
    assert_eq!(
        serde_json::from_str::<Value>(&rows).unwrap()[0]["n"],
        4,
        "{rows}"
    );

    // Query: by type and q, by attrs, near a point; count in a header.
    let (status, text, _) = call(
        &server,
        &env,
        "GET",
        "/ngsi-ld/v1/entities?type=AirQualityObserved&q=NO2%3E40",
        None,
    );
    assert_eq!(status, 200, "{text}");
    let found: Vec<Value> = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = found.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:AirQualityObserved:station-1",
            "urn:ngsi-ld:AirQualityObserved:station-3"
        ],
        "{text}"
    );
    let (status, text, _) = call(
        &server,
        &env,
        "GET",
        "/ngsi-ld/v1/entities?type=AirQualityObserved&georel=near%3BmaxDistance%3D%3D2000&geometry=Point&coordinates=%5B120.155%2C30.272%5D",
        None,
    );
    assert_eq!(status, 200, "{text}");
    let near: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        near.len(),
        2,
        "stations 1 and 2 are within 2 km, 3 is 40 km off: {text}"
    );
    let (_, text, _) = call(
        &server,
        &env,
        "GET",
        "/ngsi-ld/v1/entities?type=AirQualityObserved&attrs=pm25&limit=1&offset=1",
        None,
    );
    let page: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(page.len(), 1, "{text}");
    assert!(
        page[0].get("NO2").is_none() && page[0]["pm25"]["value"] == 14.5,
        "{text}"
    );

    // Bad input: named, in NGSI-LD's error format.
    let mut bad = station(9, 1.0, 120.0, 30.0, "2026-12-03T09:00:00Z");
    bad["windSpeed"] = json!({"type": "Property", "value": 3});
    let (status, text, _) = call(&server, &env, "POST", "/ngsi-ld/v1/entities", Some(bad));
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("BadRequestData")
            && text.contains("windSpeed")
            && text.contains("wind_speed"),
        "{text}"
    );
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entities",
        Some(json!({"id": "urn:ngsi-ld:Bus:1", "type": "Bus"})),
    );
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("[ngsi_ld]"), "{text}");
    let (status, text, _) = call(
        &server,
        &env,
        "GET",
        "/ngsi-ld/v1/entities?type=AirQualityObserved&q=NO2%3D%3D1%20OR%201%3D1",
        None,
    );
    assert_eq!(status, 400, "q is parsed, never passed to SQL: {text}");

    // Another department: nothing without a grant; with one, the personal field masked.
    let transport = server.token.clone();
    let (status, text, _) = call(
        &server,
        &transport,
        "GET",
        &format!("/ngsi-ld/v1/entities/{id}"),
        None,
    );
    assert_eq!(status, 404, "{text}");
    let (status, text) = server.post_as(&transport, "/api/v1/grants", "application/json", json!({"dataset": "environment.air_quality", "purpose": "test: air near roads", "fields": [], "raw": [], "days": 1}).to_string().as_bytes());
    assert!(status == 201 || status == 200, "{text}");
    let grant: Value = serde_json::from_str(&text).unwrap();
    let (status, text) = server.post_as(
        &env,
        &format!("/api/v1/grants/{}/approve", grant["id"]),
        "application/json",
        br#"{"reason": "masked only"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (status, text, _) = call(
        &server,
        &transport,
        "GET",
        &format!("/ngsi-ld/v1/entities/{id}"),
        None,
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("inspector-1"),
        "a personal field left NGSI-LD raw: {text}"
    );
    let e: Value = serde_json::from_str(&text).unwrap();
    assert!(
        e["reportedBy"]["value"]
            .as_str()
            .unwrap()
            .starts_with("ps_"),
        "{e}"
    );
    assert_eq!(e["NO2"]["value"], 58.0);
    // Writing is the owner's: the reader's department may not create entities.
    let (status, text, _) = call(
        &server,
        &transport,
        "POST",
        "/ngsi-ld/v1/entities",
        Some(station(7, 1.0, 120.0, 30.0, "2026-12-03T09:00:00Z")),
    );
    assert_eq!(status, 403, "{text}");
    // Reads and writes are on the trail.
    let (status, text) = server.get(
        "/api/v1/datasets/environment.air_quality/audit",
        Some(&server.admin),
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("NGSI-LD create") && text.contains("NGSI-LD: entity"),
        "{text}"
    );

    // An attribute deleted, an entity replaced, an entity deleted: NGSI-LD no longer
    // finds it and its id may be created again; SQL keeps every row as history.
    let id3 = "urn:ngsi-ld:AirQualityObserved:station-3";
    let (status, text, _) = call(
        &server,
        &env,
        "DELETE",
        &format!("/ngsi-ld/v1/entities/{id3}/attrs/pm25"),
        None,
    );
    assert_eq!(status, 204, "{text}");
    let (_, text, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/entities/{id3}"),
        None,
    );
    let e: Value = serde_json::from_str(&text).unwrap();
    assert!(e.get("pm25").is_none() && e["NO2"]["value"] == 80.0, "{e}");
    let (status, text, _) = call(
        &server,
        &env,
        "DELETE",
        &format!("/ngsi-ld/v1/entities/{id3}/attrs/pm25"),
        None,
    );
    assert_eq!(status, 404, "{text}");
    let (status, text, _) = call(
        &server,
        &env,
        "PUT",
        &format!("/ngsi-ld/v1/entities/{id3}"),
        Some(json!({"type": "AirQualityObserved", "pm25": {"type": "Property", "value": 9.5}})),
    );
    assert_eq!(status, 204, "{text}");
    let (_, text, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/entities/{id3}"),
        None,
    );
    let e: Value = serde_json::from_str(&text).unwrap();
    assert!(
        e.get("NO2").is_none() && e["pm25"]["value"] == 9.5,
        "replaced: {e}"
    );
    let count = |server: &common::Server| -> i64 {
        let (_, rows) = server.post_as(
            &env,
            "/api/v1/sql",
            "application/json",
            br#"{"sql": "SELECT count(*) AS n FROM environment.air_quality", "purpose": "test"}"#,
        );
        serde_json::from_str::<Value>(&rows).unwrap()[0]["n"]
            .as_i64()
            .unwrap()
    };
    let rows_before = count(&server);
    let (status, text, _) = call(
        &server,
        &transport,
        "DELETE",
        &format!("/ngsi-ld/v1/entities/{id3}"),
        None,
    );
    assert!(
        status == 403 || status == 404,
        "another department may not delete: {status} {text}"
    );
    let (status, text, _) = call(
        &server,
        &env,
        "DELETE",
        &format!("/ngsi-ld/v1/entities/{id3}"),
        None,
    );
    assert_eq!(status, 204, "{text}");
    let (status, _, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/entities/{id3}"),
        None,
    );
    assert_eq!(status, 404);
    let (status, _, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/temporal/entities/{id3}"),
        None,
    );
    assert_eq!(status, 404);
    let (_, text, _) = call(
        &server,
        &env,
        "GET",
        "/ngsi-ld/v1/entities/?type=AirQualityObserved&limit=100",
        None,
    );
    let listed: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(listed.iter().all(|e| e["id"] != id3), "{text}");
    assert_eq!(count(&server), rows_before, "the rows stay as history");
    // Created again: a new entity with only what is sent now.
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entities/",
        Some(station(3, 5.0, 120.4, 30.5, "2026-12-03T11:00:00Z")),
    );
    assert_eq!(status, 201, "{text}");
    let (_, text, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/temporal/entities/{id3}"),
        None,
    );
    let history: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        history["NO2"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    // A batch delete; the tombstones hold across a restart.
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entityOperations/delete",
        Some(json!([id3, "urn:ngsi-ld:AirQualityObserved:station-2"])),
    );
    assert_eq!(status, 204, "{text}");
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entityOperations/delete",
        Some(json!(["urn:ngsi-ld:AirQualityObserved:station-2"])),
    );
    assert_eq!(status, 207, "{text}");
    let data = server.data.clone();
    server.stop();
    let server = start(&data, &[]);
    for id in [id3, "urn:ngsi-ld:AirQualityObserved:station-2"] {
        let (status, _, _) = call(
            &server,
            &env,
            "GET",
            &format!("/ngsi-ld/v1/entities/{id}"),
            None,
        );
        assert_eq!(status, 404, "{id} is back after a restart");
    }
    let (status, _, _) = call(
        &server,
        &env,
        "GET",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:station-1",
        None,
    );
    assert_eq!(status, 200);
    // A history written at once (a gateway's backlog), then one more instance.
    let id8 = "urn:ngsi-ld:AirQualityObserved:station-8";
    let instance = |v: f64, at: &str| json!({"type": "Property", "value": v, "observedAt": at});
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/temporal/entities",
        Some(json!({
            "id": id8,
            "type": "AirQualityObserved",
            "NO2": [instance(20.0, "2026-12-01T00:00:00Z"), instance(25.0, "2026-12-01T01:00:00Z")],
            "pm25": [instance(7.0, "2026-12-01T00:00:00Z"), instance(9.0, "2026-12-01T02:00:00Z")],
            "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
        })),
    );
    assert_eq!(status, 201, "{text}");
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        &format!("/ngsi-ld/v1/temporal/entities/{id8}/attrs"),
        Some(json!({"NO2": [instance(31.0, "2026-12-01T03:00:00Z")]})),
    );
    assert_eq!(status, 204, "{text}");
    let (_, text, _) = call(
        &server,
        &env,
        "GET",
        &format!("/ngsi-ld/v1/temporal/entities/{id8}"),
        None,
    );
    let history: Value = serde_json::from_str(&text).unwrap();
    let values = |attr: &str| -> Vec<f64> {
        history[attr]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["value"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(values("NO2"), [20.0, 25.0, 31.0], "{history}");
    assert_eq!(values("pm25"), [7.0, 9.0], "{history}");
    // The content rules: JSON-LD carries its @context, plain JSON does not.
    let raw = |content_type: &str, body: &Value| {
        agent()
            .post(&format!("{}/ngsi-ld/v1/entities", server.base))
            .header("Authorization", &format!("Bearer {env}"))
            .header("Content-Type", content_type)
            .send(body.to_string().as_bytes())
            .unwrap()
            .status()
            .as_u16()
    };
    let mut bare = station(9, 1.0, 120.0, 30.0, "2026-12-03T12:00:00Z");
    assert_eq!(
        raw("application/json", &bare),
        400,
        "@context in plain JSON"
    );
    bare.as_object_mut().unwrap().remove("@context");
    assert_eq!(
        raw("application/ld+json", &bare),
        400,
        "JSON-LD without @context"
    );
    assert_eq!(raw("application/json", &bare), 201);
    // A query as a body answers as the same query in the URL.
    let (status, by_url, _) = call(
        &server,
        &env,
        "GET",
        "/ngsi-ld/v1/entities?type=AirQualityObserved&q=NO2%3E30&limit=100",
        None,
    );
    assert_eq!(status, 200, "{by_url}");
    let (status, by_body, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entityOperations/query?limit=100",
        Some(json!({"type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": "NO2>30"})),
    );
    assert_eq!(status, 200, "{by_body}");
    let by_url: Value = serde_json::from_str(&by_url).unwrap();
    assert!(!by_url.as_array().unwrap().is_empty(), "{by_url}");
    assert_eq!(serde_json::from_str::<Value>(&by_body).unwrap(), by_url);
}

/// An HTTP endpoint for notifications: answers 500 to the first `fail_first` requests, then
/// 200, and keeps every body it was sent.
fn receiver(fail_first: usize) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        let mut seen = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen += 1;
            let status = if seen <= fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if seen > fail_first
                && let Ok(v) = serde_json::from_slice(&body)
            {
                keep.lock().unwrap().push(v);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

/// Waits on the endpoint until `want` says the notifications so far are complete.
fn wait_for(
    got: &std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    what: &str,
    want: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let now = got.lock().unwrap().clone();
        if want(&now) {
            return now;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "{what}: after 60 s the endpoint has {now:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// (entity id, NO2) of every entity notified so far.
fn notified(all: &[Value]) -> Vec<(String, f64)> {
    all.iter()
        .flat_map(|n| n["data"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_string(),
                e["NO2"]["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// Subscriptions: a change is notified at least once, a failing endpoint is retried, a
/// restart resends nothing acknowledged, and a subscriber sees what its grants let it see.
#[test]
fn subscriptions_notify_every_change_at_least_once_across_failures_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let env = department_admin(&server, "environment");
    let (status, text) =
        server.post_as(&env, "/api/v1/datasets", "application/toml", AIR.as_bytes());
    assert_eq!(status, 201, "{text}");
    // The endpoint fails twice: the first notification is sent three times.
    let (url, got) = receiver(2);
    let sub = json!({"type": "Subscription", "entities": [{"type": "AirQualityObserved"}],
                     "q": "NO2>30", "notification": {"endpoint": {"uri": url, "accept": "application/json"}}});
    let (status, text, location) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/subscriptions",
        Some(sub),
    );
    assert_eq!(status, 201, "{text}");
    let location = location.unwrap();
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/subscriptions",
        Some(
            json!({"entities": [{"type": "Bus"}], "notification": {"endpoint": {"uri": "http://127.0.0.1:1/"}}}),
        ),
    );
    assert_eq!(status, 404, "an undeclared type is refused: {text}");

    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entityOperations/upsert",
        Some(json!([
            station(1, 41.0, 120.150, 30.270, "2026-12-03T08:00:00Z"),
            station(2, 12.0, 120.160, 30.275, "2026-12-03T08:00:00Z"),
        ])),
    );
    assert_eq!(status, 201, "{text}");
    let all = wait_for(&got, "the first change", |all| !notified(all).is_empty());
    // Station 2 (NO2 12) does not match q.
    assert_eq!(
        notified(&all),
        vec![("urn:ngsi-ld:AirQualityObserved:station-1".to_string(), 41.0)]
    );
    let (_, text, _) = call(&server, &env, "GET", &location, None);
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert!(
        shown["notification"]["timesFailed"].as_u64().unwrap() >= 2,
        "{shown}"
    );
    assert_eq!(shown["notification"]["status"], "ok", "{shown}");

    // A restart: the subscription and its cursor are kept; what was acknowledged is not sent
    // again, what comes after is.
    assert!(server.stop().success());
    let server = start(&data, &[]);
    let (status, text, _) = call(
        &server,
        &env,
        "PATCH",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:station-1/attrs",
        Some(
            json!({"NO2": {"type": "Property", "value": 66.0, "observedAt": "2026-12-03T09:00:00Z"}}),
        ),
    );
    assert_eq!(status, 204, "{text}");
    let all = wait_for(&got, "the change after the restart", |all| {
        notified(all).len() >= 2
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let all = if got.lock().unwrap().len() > all.len() {
        got.lock().unwrap().clone()
    } else {
        all
    };
    assert_eq!(
        notified(&all),
        vec![
            ("urn:ngsi-ld:AirQualityObserved:station-1".to_string(), 41.0),
            ("urn:ngsi-ld:AirQualityObserved:station-1".to_string(), 66.0),
        ],
        "each change once, none resent after the restart"
    );
    assert_eq!(all[0]["type"], "Notification");
    assert_eq!(
        all[0]["subscriptionId"],
        location.rsplit('/').next().unwrap()
    );

    // Another department's subscription reads as it: the personal field masked.
    let transport = server.token.clone();
    let (status, text) = server.post_as(&transport, "/api/v1/grants", "application/json", json!({"dataset": "environment.air_quality", "purpose": "test: air near roads", "fields": [], "raw": [], "days": 1}).to_string().as_bytes());
    assert!(status == 201 || status == 200, "{text}");
    let grant: Value = serde_json::from_str(&text).unwrap();
    let (status, text) = server.post_as(
        &env,
        &format!("/api/v1/grants/{}/approve", grant["id"]),
        "application/json",
        br#"{"reason": "masked only"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (url2, got2) = receiver(0);
    let (status, text, _) = call(
        &server,
        &transport,
        "POST",
        "/ngsi-ld/v1/subscriptions",
        Some(
            json!({"entities": [{"type": "AirQualityObserved"}], "notification": {"endpoint": {"uri": url2}}}),
        ),
    );
    assert_eq!(status, 201, "{text}");
    let (status, _, _) = call(&server, &transport, "GET", &location, None);
    assert_eq!(status, 404, "another principal's subscription is not shown");
    let (status, text, _) = call(
        &server,
        &env,
        "POST",
        "/ngsi-ld/v1/entityOperations/upsert",
        Some(json!([station(
            3,
            50.0,
            120.2,
            30.3,
            "2026-12-03T10:00:00Z"
        )])),
    );
    assert_eq!(status, 201, "{text}");
    let masked = wait_for(&got2, "the other department's notification", |all| {
        !notified(all).is_empty()
    });
    let text = masked[0].to_string();
    assert!(
        !text.contains("inspector-3"),
        "a personal field left in a notification: {text}"
    );
    assert!(
        masked[0]["data"][0]["reportedBy"]["value"]
            .as_str()
            .unwrap()
            .starts_with("ps_"),
        "{text}"
    );
    // Deleted: no more notifications to it.
    let (status, _, _) = call(&server, &env, "DELETE", &location, None);
    assert_eq!(status, 204);
    let (status, _, _) = call(&server, &env, "GET", &location, None);
    assert_eq!(status, 404);
}
