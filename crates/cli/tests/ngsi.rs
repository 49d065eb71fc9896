//! NGSI-LD over the hub (issue 24, item 2): entities of a type a dataset declares are
//! created, read, updated, replaced, deleted, queried (type, q, attrs, near a point, as a
//! body) and read and written as history, over HTTP as a FIWARE client would; every write
//! is a governed ingest SQL sees, every read a masked, audited data call. Subscriptions are
//! in `ngsi_subscriptions.rs`.

mod common;

use common::ngsi::{air_dataset, call, station};
use common::{agent, start};
use serde_json::{Value, json};

#[test]
fn entities_go_in_as_governed_rows_and_come_back_masked_queried_and_as_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &[]);
    let env = air_dataset(&server);

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

/// A create answers from the node's index of ids (`ngsi::ids`), which must see every write
/// that finished before it, whatever brought it in, let one of two creates of an id at
/// once win, and give an id back when its entity is deleted.
#[test]
fn a_create_sees_every_earlier_write_and_one_of_several_at_once_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &[]);
    let env = air_dataset(&server);
    let create = |n: u32| {
        let (status, text, _) = call(
            &server,
            &env,
            "POST",
            "/ngsi-ld/v1/entities",
            Some(station(n, 30.0, 120.1, 30.2, "2026-12-03T08:00:00Z")),
        );
        (status, text)
    };
    // The first create builds the index.
    assert_eq!(create(1).0, 201);
    // A row stored as plain records after that, then an NGSI-LD create of its id.
    let row = r#"{"entity_id":"urn:ngsi-ld:AirQualityObserved:station-7","observed_at":"2026-12-03T08:00:00Z","no2":12.0}"#;
    let (status, text) = server.post_as(
        &env,
        "/api/v1/datasets/environment.air_quality/records",
        "application/x-ndjson",
        format!("{row}\n").as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = create(7);
    assert_eq!(status, 409, "a plain write's id is taken: {text}");
    // Eight creates of one id at once: exactly one is stored.
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| create(9).0)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|&&s| s == 201).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|&&s| s == 409).count(),
        7,
        "{answers:?}"
    );
    let (_, rows) = server.post_as(
        &env,
        "/api/v1/sql",
        "application/json",
        json!({"sql": "SELECT count(*) AS n FROM environment.air_quality WHERE entity_id = 'urn:ngsi-ld:AirQualityObserved:station-9'", "purpose": "test"}).to_string().as_bytes(),
    );
    assert!(rows.contains("\"n\":1"), "{rows}");
    // Deleted, the id may be created again.
    let (status, text, _) = call(
        &server,
        &env,
        "DELETE",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:station-9",
        None,
    );
    assert_eq!(status, 204, "{text}");
    assert_eq!(create(9).0, 201);
    assert_eq!(create(9).0, 409);
}
