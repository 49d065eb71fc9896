//! The digital village map (issue 24, item 3): the Smart Data Models datasets take a day of
//! the villages' readings — air quality through NGSI-LD as a FIWARE gateway sends it
//! (`dateObserved` and all), the rest as plain ingest — and the thresholds scene opens an
//! alert for exactly the events the generator planted, each where and when it was planted,
//! none for the ordinary day; after a `kill -9` mid-feed nothing is stored twice.

mod common;

use std::collections::BTreeSet;

use citybrain_gen::village::{self, VillageConfig};
use common::{agent, department_admin, start};
use serde_json::{Value, json};

fn post_ngsi(server: &common::Server, token: &str, path: &str, body: &Value) -> (u16, String) {
    let response = agent()
        .post(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/ld+json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.into_body().read_to_string().unwrap_or_default(),
    )
}

/// A stored air-quality row as the normalized NGSI-LD entity a gateway sends.
fn air_entity(row: &Value) -> Value {
    let prop = |v: &Value| json!({"type": "Property", "value": v});
    json!({
        "id": row["entity_id"],
        "type": "AirQualityObserved",
        "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": row["date_observed"]}},
        "name": prop(&row["name"]),
        "areaServed": prop(&row["area_served"]),
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [row["location"]["lon"], row["location"]["lat"]]}},
        "pm25": prop(&row["pm25"]),
        "pm10": prop(&row["pm10"]),
        "NO2": prop(&row["no2"]),
        "O3": prop(&row["o3"]),
        "airQualityIndex": prop(&row["air_quality_index"]),
        "@context": [
            "https://smartdatamodels.org/context.jsonld",
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
        ]
    })
}

/// (alert id, state) of every threshold row stored.
fn stored(server: &common::Server) -> Vec<(String, String, String, String)> {
    server
        .sql(
            "SELECT alert_id, state, subject_ref, CAST(at AS VARCHAR) AS at FROM alerts.events \
             WHERE kind = 'threshold' ORDER BY at, alert_id, state",
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["alert_id"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
                r["subject_ref"].as_str().unwrap().to_string(),
                r["at"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_village_day_opens_an_alert_for_each_planted_event_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let owners: Vec<(String, String)> = village::DEFINITIONS
        .iter()
        .map(|(_, text)| {
            let owner = text
                .lines()
                .find_map(|l| l.strip_prefix("owner = "))
                .unwrap()
                .trim_matches('"')
                .to_string();
            (owner, text.to_string())
        })
        .collect();
    for (owner, text) in &owners {
        let token = department_admin(&server, owner);
        let (status, body) = server.post_as(
            &token,
            "/api/v1/datasets",
            "application/toml",
            text.as_bytes(),
        );
        assert_eq!(status, 201, "{body}");
    }
    // The rules read the datasets there at start: before they existed the scene was idle
    // and said why.
    let idle = server.scene("thresholds");
    assert_eq!(idle["state"], "idle", "{idle}");
    server.stop();
    let server = start(&data, &[]);
    let (status, text) = server.get("/api/v1/thresholds", Some(&server.token));
    assert_eq!(status, 200, "{text}");
    let rules: Value = serde_json::from_str(&text).unwrap();
    assert!(
        rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["watched"] == true),
        "{rules}"
    );

    // A day of the villages, published hour by hour.
    let gen_dir = dir.path().join("gen");
    let truth = village::generate(
        &VillageConfig {
            seed: 7,
            day: citybrain_core::Date::parse("2026-12-03").unwrap(),
            zone: citybrain_core::TimeZone::parse("Asia/Shanghai").unwrap(),
            bounds: [120.0, 30.1, 120.3, 30.4],
        },
        &gen_dir,
    )
    .unwrap();
    assert!(truth.planted.len() >= 5, "{truth:?}");
    let env = department_admin(&server, "environment");
    let files: Vec<(String, Vec<String>)> = village::FILES
        .iter()
        .map(|(dataset, file)| {
            let text = std::fs::read_to_string(gen_dir.join(file)).unwrap();
            (
                dataset.to_string(),
                text.lines().map(str::to_string).collect(),
            )
        })
        .collect();
    let hours: BTreeSet<String> = files[0]
        .1
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["date_observed"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let hours: Vec<String> = hours.into_iter().collect();
    let owner_token = |dataset: &str| -> String {
        let owner = &owners
            .iter()
            .find(|(_, text)| text.contains(&format!("name = \"{dataset}\"")))
            .unwrap()
            .0;
        department_admin(&server, owner)
    };
    let tokens: Vec<String> = files.iter().map(|(d, _)| owner_token(d)).collect();
    let publish = |server: &common::Server, hour: &str| -> Vec<(String, i64)> {
        let mut positions = Vec::new();
        for ((dataset, lines), token) in files.iter().zip(&tokens) {
            let rows: Vec<&String> = lines
                .iter()
                .filter(|l| serde_json::from_str::<Value>(l).unwrap()["date_observed"] == hour)
                .collect();
            if dataset == "environment.air_quality" {
                // As a FIWARE gateway: an upsert of the stations' entities each hour.
                let entities: Vec<Value> = rows
                    .iter()
                    .map(|l| air_entity(&serde_json::from_str(l).unwrap()))
                    .collect();
                let (status, text) = post_ngsi(
                    server,
                    &env,
                    "/ngsi-ld/v1/entityOperations/upsert?options=update",
                    &Value::Array(entities),
                );
                assert!(status == 201 || status == 204, "{status} {text}");
            } else {
                let body: String = rows.iter().map(|l| format!("{l}\n")).collect();
                positions.push((dataset.clone(), server.ingest_as(token, dataset, &body)));
            }
        }
        positions
    };
    // The first 22 hours, then a crash right after the 23rd is stored: the feed hands it
    // over again after the restart and nothing may be stored twice.
    for hour in &hours[..22] {
        publish(&server, hour);
    }
    server.caught_up("thresholds");
    publish(&server, &hours[22]);
    server.kill9();
    let server = start(&data, &[]);
    publish(&server, &hours[23]);
    server.caught_up("thresholds");

    let rows = stored(&server);
    let keys: BTreeSet<(String, String)> =
        rows.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
    assert_eq!(keys.len(), rows.len(), "a change stored twice: {rows:#?}");
    // Every alert opened is a planted event, each planted event opened once, in its hours.
    let opened: Vec<&(String, String, String, String)> =
        rows.iter().filter(|r| r.1 == "open").collect();
    let mut found = BTreeSet::new();
    for r in &opened {
        let rule = r.0.split('/').nth(1).unwrap();
        let planted = truth
            .planted
            .iter()
            .find(|p| p.rule == rule && p.entity == r.2)
            .unwrap_or_else(|| {
                panic!(
                    "an alert nothing planted: {r:?}\nplanted: {:#?}",
                    truth.planted
                )
            });
        // Local hour of the opening reading (the demo zone is UTC+8).
        let utc_hour: u32 = r.3[11..13].parse().unwrap();
        let local = (utc_hour + 8) % 24;
        assert!(
            local >= planted.from_hour && local < planted.from_hour + 2,
            "{rule} on {} opened at {local}:00, planted from {}:00",
            r.2,
            planted.from_hour
        );
        assert!(
            found.insert((rule.to_string(), r.2.clone())),
            "opened twice: {r:?}"
        );
    }
    assert_eq!(
        found.len(),
        truth.planted.len(),
        "{rows:#?}\n{:#?}",
        truth.planted
    );

    // The board: what is still over its limit at the day's end (the missed collection),
    // with its place and village.
    let (status, text) = server.get("/api/v1/alerts", Some(&server.token));
    assert_eq!(status, 200, "{text}");
    let board: Value = serde_json::from_str(&text).unwrap();
    let open: Vec<&Value> = board["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "threshold")
        .collect();
    let still: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.1 == "open" && !keys.contains(&(r.0.clone(), "closed".to_string())))
        .map(|r| r.0.clone())
        .collect();
    assert_eq!(
        open.iter()
            .map(|a| a["alert_id"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>(),
        still,
        "{board}"
    );
    assert!(
        open.iter()
            .all(|a| a["loc"].is_object() && a["district"].is_string()),
        "{board}"
    );
    assert!(
        still
            .iter()
            .any(|id| id.starts_with("threshold/waste_full/")),
        "{still:?}"
    );

    // Emptied: the container's alert closes, once.
    let bin = open
        .iter()
        .find(|a| {
            a["alert_id"]
                .as_str()
                .unwrap()
                .starts_with("threshold/waste_full/")
        })
        .unwrap();
    let next = "2026-12-03T16:30:00Z";
    let emptied = format!(
        "{{\"date_observed\":\"{next}\",\"entity_id\":{},\"filling_level\":0.04,\"status\":\"ok\"}}\n",
        bin["subject_ref"]
    );
    let at = server.ingest_as(&tokens[4], "urban_management.waste_containers", &emptied);
    server.applied(
        "thresholds",
        &[("urban_management.waste_containers".to_string(), at)],
    );
    let closed: Vec<_> = stored(&server)
        .into_iter()
        .filter(|r| r.0 == bin["alert_id"].as_str().unwrap() && r.1 == "closed")
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
}
