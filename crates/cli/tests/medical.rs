//! The medical scene end to end (issue 27, item 1), following ARCHITECTURE.md's "Adding a
//! scene": hospitals' results ingested over HTTP reach the scene through the change feed; the
//! tests wait on its watermark, then every planted order gets the answer it was made for;
//! an order is counted once, also across `kill -9`; who read a patient's results is told to
//! health and to no one without the grant.

mod common;

use common::{Server, agent, department_admin, start};
use serde_json::{Value, json};

fn as_token(server: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = agent()
        .post(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

fn ingest(server: &Server, token: &str, dataset: &str, body: &[u8]) -> i64 {
    let response = agent()
        .post(&format!(
            "{}/api/v1/datasets/{dataset}/records",
            server.base
        ))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/x-ndjson")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap();
    assert_eq!(status, 200, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    report["position"].as_i64().unwrap()
}

struct City {
    health: String,
    hospital: String,
    planted: Vec<citybrain_medical::demo::Planted>,
    prices: std::collections::HashMap<String, i64>,
}

/// Health publishes the test types and the generated results; the hospital asks for the
/// grant recognition needs and health approves it. Waits until the scene has applied both.
fn publish(server: &Server) -> City {
    let health = department_admin(server, "health");
    let hospital = department_admin(server, "hz_first_people");
    let config = citybrain_medical::demo::DemoConfig {
        seed: 11,
        patients: 3_000,
        days: 60,
        end: citybrain_core::Timestamp::parse("2026-11-22T00:00:00Z").unwrap(),
        orders_per_reason: 12,
    };
    let (rows, planted) = citybrain_medical::demo::generate(&config);
    let types = ingest(
        server,
        &health,
        citybrain_medical::TYPES,
        citybrain_medical::SHIPPED_TYPES.as_bytes(),
    );
    let mut results = 0;
    for chunk in rows.chunks(5_000) {
        let body: Vec<u8> = chunk
            .iter()
            .flat_map(|r| {
                let mut line = serde_json::to_vec(r).unwrap();
                line.push(b'\n');
                line
            })
            .collect();
        results = ingest(server, &health, citybrain_medical::RESULTS, &body);
    }
    // Without a grant the hospital cannot match its patient's id: refused, and why.
    let order = request(&planted[0], "before-the-grant");
    let (status, answer) = as_token(server, &hospital, "/api/v1/medical/recognise", &order);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["code"], "grant_required", "{answer}");
    let (status, grant) = as_token(
        server,
        &hospital,
        "/api/v1/grants",
        &json!({"dataset": citybrain_medical::RESULTS, "purpose": "recognising results of our patients",
                "fields": [], "raw": ["patient_id"], "days": 30}),
    );
    assert_eq!(status, 201, "{grant}");
    let (status, decided) = as_token(
        server,
        &health,
        &format!("/api/v1/grants/{}/approve", grant["id"]),
        &json!({"reason": "own patients only"}),
    );
    assert_eq!(status, 200, "{decided}");
    server.applied(
        "medical",
        &[
            (citybrain_medical::TYPES.to_string(), types),
            (citybrain_medical::RESULTS.to_string(), results),
        ],
    );
    let prices = citybrain_medical::SHIPPED_TYPES
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["code"].as_str().unwrap().to_string(),
                v["price"].as_i64().unwrap(),
            )
        })
        .collect();
    City {
        health,
        hospital,
        planted,
        prices,
    }
}

fn request(p: &citybrain_medical::demo::Planted, order_id: &str) -> Value {
    json!({
        "order_id": order_id,
        "patient_id": p.patient_id,
        "test_code": p.test_code,
        "body_site": p.body_site,
        "at": p.at.to_string(),
        "emergency": p.emergency,
        "changed_condition": p.changed_condition,
        "child": p.child,
        "purpose": "test: an order",
    })
}

#[test]
fn every_planted_order_gets_its_answer_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let city = publish(&server);
    let mut saved = 0;
    for p in &city.planted {
        let (status, answer) = as_token(
            &server,
            &city.hospital,
            "/api/v1/medical/recognise",
            &request(p, &p.order_id),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["reason"],
            p.expected.name(),
            "{p:?} answered {answer}"
        );
        assert_eq!(answer["counted"], true);
        assert!(!answer["why"].as_str().unwrap().is_empty());
        assert!(!answer["why_zh"].as_str().unwrap().is_empty());
        if answer["recognised"] == true {
            assert_eq!(answer["saved_fen"], city.prices[&p.test_code], "{answer}");
            saved += city.prices[&p.test_code];
        } else {
            assert_eq!(answer["saved_fen"], 0, "{answer}");
        }
    }
    // Asking again for an order answers again and counts nothing.
    let first = &city.planted[0];
    let (status, again) = as_token(
        &server,
        &city.hospital,
        "/api/v1/medical/recognise",
        &request(first, &first.order_id),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["counted"], false, "{again}");
    server_token_sql(&server, &city.health, |rows| {
        assert_eq!(rows[0]["n"], city.planted.len(), "{rows:?}");
        assert_eq!(rows[0]["ids"], city.planted.len(), "{rows:?}");
        assert_eq!(rows[0]["saved"], saved, "{rows:?}");
    });

    // Who read this patient's results: health sees the hospital's reads; the hospital,
    // without a grant on the ledger, is told what to ask for.
    let path = format!("/api/v1/medical/readers?patient_id={}", first.patient_id);
    let (status, text) = server.get(&path, Some(&city.health));
    assert_eq!(status, 200, "{text}");
    let reads: Value = serde_json::from_str(&text).unwrap();
    let reads = reads["reads"].as_array().unwrap();
    assert!(!reads.is_empty(), "{text}");
    assert!(
        reads.iter().all(|r| r["hospital"] == "hz_first_people"),
        "{text}"
    );
    let (status, text) = server.get(&path, Some(&city.hospital));
    assert_eq!(status, 403, "{text}");
    // A malformed order names its field.
    let (status, bad) = as_token(
        &server,
        &city.hospital,
        "/api/v1/medical/recognise",
        &json!({"order_id": "x y", "patient_id": "p", "test_code": "CT"}),
    );
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("order_id"), "{bad}");
}

fn server_token_sql(server: &Server, token: &str, check: impl FnOnce(&[Value])) {
    let (status, rows) = as_token(
        server,
        token,
        "/api/v1/sql",
        &json!({"sql": "SELECT count(*) AS n, count(DISTINCT recognition_id) AS ids, sum(saved) AS saved FROM medical.recognitions",
                "purpose": "test: the ledger"}),
    );
    assert_eq!(status, 200, "{rows}");
    check(rows.as_array().unwrap());
}

/// Orders sent while the server is killed at pseudo-random moments, then all sent again:
/// the ledger holds each order once.
#[test]
fn a_kill_never_counts_an_order_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    let city = publish(&server);
    let orders: Vec<Value> = city
        .planted
        .iter()
        .map(|p| request(p, &p.order_id))
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut partial = false;
    for round in 0..3 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (base, token, batch) = (server.base.clone(), city.hospital.clone(), orders.clone());
        // The kill comes once a pseudo-random number of orders has been answered, while the
        // next ones are on their way: in the middle, whatever the machine's speed.
        let kill_after = 1 + (seed % (orders.len() as u64 - 2)) as usize;
        let (answered, wait) = std::sync::mpsc::channel::<()>();
        let sender = std::thread::spawn(move || {
            for (i, order) in batch.into_iter().enumerate() {
                let sent = agent()
                    .post(&format!("{base}/api/v1/medical/recognise"))
                    .header("Authorization", &format!("Bearer {token}"))
                    .header("Content-Type", "application/json")
                    .send(order.to_string().as_bytes());
                if sent.is_err() {
                    return; // the server is gone
                }
                if i + 1 == kill_after {
                    let _ = answered.send(());
                }
            }
        });
        let _ = wait.recv();
        server.kill9();
        sender.join().unwrap();
        server = start(dir.path(), &[]);
        server.caught_up("medical");
        let mut stored = 0;
        server_token_sql(&server, &city.health, |rows| {
            stored = rows[0]["n"].as_u64().unwrap() as usize;
            assert_eq!(rows[0]["ids"], rows[0]["n"], "round {round}: {rows:?}");
        });
        println!("kill {round}: {stored} of {} orders stored", orders.len());
        partial |= stored > 0 && stored < orders.len();
    }
    assert!(partial, "no kill landed in the middle of the orders");
    for order in &orders {
        let (status, answer) =
            as_token(&server, &city.hospital, "/api/v1/medical/recognise", order);
        assert_eq!(status, 200, "{answer}");
    }
    server_token_sql(&server, &city.health, |rows| {
        assert_eq!(rows[0]["n"], orders.len(), "{rows:?}");
        assert_eq!(rows[0]["ids"], orders.len(), "{rows:?}");
    });
}
