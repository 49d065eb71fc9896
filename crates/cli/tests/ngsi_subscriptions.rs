//! NGSI-LD subscriptions (issue 24, item 2): changes matching a subscription are POSTed to
//! its endpoint at least once, through failures and restarts, as the subscriber may see
//! them.

mod common;

use common::ngsi::{air_dataset, call, station};
use common::start;
use serde_json::{Value, json};

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
    let env = air_dataset(&server);
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
