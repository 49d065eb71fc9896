//! What the services tests share: the demo's people on a known day, calls as a token's
//! holder, and each department publishing its own facts.

use citybrain_core::{Date, GeoPoint, TimeZone, Timestamp};
use citybrain_services::demo::{self, DemoConfig};
use serde_json::{Value, json};

use super::{Server, agent, department_admin};

/// Now, as the server's clock reads it.
pub fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    )
}

pub fn config(residents: u64) -> DemoConfig {
    DemoConfig {
        seed: 3,
        residents,
        first_day: Date::parse("2026-10-20").unwrap(),
        days: 30,
        zone: TimeZone::parse("Asia/Shanghai").unwrap(),
        centre: GeoPoint {
            lon: 120.16,
            lat: 30.27,
        },
        radius_m: 8_000.0,
    }
}

pub fn call(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", server.base);
    let response = match body {
        Some(body) => agent()
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes()),
        None => {
            assert_eq!(method, "GET");
            agent()
                .get(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .call()
        }
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

/// The department that publishes each input.
pub fn publisher(dataset: &str) -> &'static str {
    match dataset {
        citybrain_services::RESIDENTS => "public_security",
        citybrain_services::INSURANCE => "human_resources",
        citybrain_services::GRIDS => "community",
        _ => "civil_affairs",
    }
}

pub struct Tokens(pub std::collections::HashMap<&'static str, String>);

impl Tokens {
    pub fn new(server: &Server) -> Self {
        Self(
            [
                "public_security",
                "civil_affairs",
                "human_resources",
                "community",
            ]
            .into_iter()
            .map(|d| (d, department_admin(server, d)))
            .collect(),
        )
    }
}

/// Publishes one batch of updates as their departments would: (dataset, position) of each.
pub fn publish(
    base: &str,
    tokens: &Tokens,
    updates: &[citybrain_services::Update],
) -> Result<Vec<(String, i64)>, String> {
    let mut positions = Vec::new();
    for (dataset, body) in demo::ndjson_by_dataset(updates) {
        let response = agent()
            .post(&format!("{base}/api/v1/datasets/{dataset}/records"))
            .header(
                "Authorization",
                &format!("Bearer {}", tokens.0[publisher(dataset)]),
            )
            .header("Content-Type", "application/x-ndjson")
            .send(&body[..])
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        if status != 200 {
            return Err(format!("{dataset}: {status} {text}"));
        }
        let report: Value = serde_json::from_str(&text).unwrap();
        positions.push((dataset.to_string(), report["position"].as_i64().unwrap()));
    }
    Ok(positions)
}
