//! The security issue's attacks (issue 20), each replayed against the real binary as the
//! outside probe made it, with what must happen instead. Each test failed before its fix.
//!
//! Kept whole (about 800 lines): one test per item of the issue, in its order, so the
//! issue and its regression tests read side by side.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let url = format!("{}{path}", server.base);
    let agent = agent();
    let response = match method {
        "GET" => agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
        "DELETE" => agent
            .delete(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
        "PUT" => agent
            .put(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .send(body),
        _ => agent
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .send(body),
    }
    .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.into_body().read_to_string().unwrap_or_default(),
    )
}

fn post_json(server: &Server, path: &str, token: &str, body: serde_json::Value) -> (u16, String) {
    call(
        server,
        "POST",
        path,
        token,
        "application/json",
        body.to_string().as_bytes(),
    )
}

fn sql_as(server: &Server, token: &str, sql: &str) -> (u16, String) {
    post_json(
        server,
        "/api/v1/sql",
        token,
        serde_json::json!({"sql": sql, "purpose": "security test"}),
    )
}

fn code(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).map_or_else(
        |_| String::new(),
        |v| v["code"].as_str().unwrap_or("").to_string(),
    )
}

/// A principal with a token, created by the hub admin (departments too).
fn principal(server: &Server, name: &str, department: &str, role: &str) -> String {
    let admin = server.admin.clone();
    let (status, text) = post_json(
        server,
        "/api/v1/departments",
        &admin,
        serde_json::json!({"id": department, "name": department}),
    );
    assert!(status == 201 || status == 409, "{status} {text}");
    let (status, text) = post_json(
        server,
        "/api/v1/principals",
        &admin,
        serde_json::json!({"name": name, "department": department, "role": role}),
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = post_json(
        server,
        &format!("/api/v1/principals/{name}/tokens"),
        &admin,
        serde_json::json!({}),
    );
    assert_eq!(status, 201, "{text}");
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn define(server: &Server, token: &str, toml: &str) -> (u16, String) {
    call(
        server,
        "POST",
        "/api/v1/datasets",
        token,
        "application/toml",
        toml.as_bytes(),
    )
}

fn health_ok(server: &Server, within: Duration) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(within))
        .build()
        .into();
    agent
        .get(&format!("{}/health", server.base))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

/// Item 1: `1+1+…` with 1,000 terms or 1,000 ORs aborted the process (stack overflow).
#[test]
fn deep_expressions_get_400_naming_the_limit_and_the_server_lives() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let reader = principal(&server, "curious", "tourism", "reader");
    let sum = format!("SELECT {}", vec!["1"; 1000].join("+"));
    let ors = format!(
        "SELECT 1 WHERE {}",
        (0..1000)
            .map(|i| format!("{i} = 7"))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    for sql in [&sum, &ors] {
        let (status, text) = sql_as(&server, &reader, sql);
        assert_eq!(status, 400, "{text}");
        assert_eq!(code(&text), "sql_too_complex", "{text}");
        assert!(text.contains("max_expression_depth"), "{text}");
    }
    let many = format!("SELECT {}", vec!["1+1"; 12_000].join(", "));
    let (status, text) = sql_as(&server, &reader, &many);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("max_operators"), "{text}");
    assert!(health_ok(&server, Duration::from_secs(5)));
    // Within the bounds the same shapes run.
    let (status, text) = sql_as(
        &server,
        &reader,
        &format!("SELECT {} AS n", vec!["1"; 200].join("+")),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("200"), "{text}");
    // The refusals are audited: failed SQL calls by tourism.
    let (status, metrics) = server.get("/metrics", Some(&server.admin));
    assert_eq!(status, 200);
    let failed = metrics
        .lines()
        .find(|l| l.contains("department=\"tourism\"") && l.contains("outcome=\"failed\""))
        .unwrap_or_else(|| panic!("no failed calls of tourism:\n{metrics}"));
    assert!(failed.ends_with(" 3"), "{failed}");
}

/// Item 3: text built by functions and result sizes were unbounded (2.9 GB peak, an
/// abort, a 529 MB CSV).
#[test]
fn oversized_values_and_results_are_refused_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--sql-max-rows", "100000"]);
    let reader = principal(&server, "curious", "tourism", "reader");
    for sql in [
        "SELECT length(repeat('x', 700000000))",
        "SELECT length(repeat('x', 1500000000))",
        "SELECT length(lpad('x', 1500000000))",
        "SELECT length(replace(repeat('ab', 1000000), 'a', repeat('y', 1000)))",
    ] {
        let (status, text) = sql_as(&server, &reader, sql);
        assert_eq!(status, 400, "{sql}: {text}");
        assert_eq!(code(&text), "sql_value_too_large", "{text}");
        assert!(text.contains("max_value_bytes"), "{text}");
    }
    let (status, text) = sql_as(&server, &reader, "SELECT length(repeat('x', 1000)) AS n");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("1000"), "{text}");
    let (status, text) = sql_as(
        &server,
        &reader,
        "SELECT * FROM generate_series(1, 60000000)",
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("100000 rows"), "{text}");
    // Asked for as a stream, the same result has started when the limit is reached: the
    // answer is cut, and the client sees an incomplete answer, never a shorter whole one.
    for format in ["json", "csv", "arrow"] {
        let body = serde_json::json!({
            "sql": "SELECT * FROM generate_series(1, 60000000)",
            "purpose": "security test", "format": format, "stream": true,
        });
        let mut response = agent()
            .post(&format!("{}/api/v1/sql", server.base))
            .header("Authorization", &format!("Bearer {reader}"))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let read = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec();
        assert!(
            read.is_err(),
            "{format}: a cut answer reads as an error, not {:?} bytes",
            read.map(|b| b.len())
        );
    }
    let (status, text) = sql_as(
        &server,
        &reader,
        "SELECT count(*) AS n FROM generate_series(1, 3000000)",
    );
    assert_eq!(status, 200, "{text}");
    assert!(health_ok(&server, Duration::from_secs(5)));
}

/// Item 4: pseudonyms equal in every dataset let a made-up dataset of guesses be joined
/// to another department's personal field. Linking needs every owner's approval now.
#[test]
fn guesses_cannot_be_joined_to_pseudonyms_without_a_linkage_the_owners_approved() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let health = principal(&server, "health_ops", "health", "admin");
    let market = principal(&server, "market_ops", "market", "admin");
    let civil = principal(&server, "civil_ops", "civil", "admin");
    let reader = principal(&server, "curious", "tourism", "reader");
    let personal = |name: &str, owner: &str, extra: &str| {
        format!(
            "name = \"{name}\"\nowner = \"{owner}\"\nsharing = \"unconditional\"\n\
             [[fields]]\nname = \"phone\"\ntype = \"string\"\nclass = \"personal\"\n{extra}"
        )
    };
    let (status, text) = define(
        &server,
        &health,
        &personal(
            "health.consults",
            "health",
            "[[fields]]\nname = \"diagnosis\"\ntype = \"string\"\nclass = \"public\"\n",
        ),
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = define(
        &server,
        &market,
        &personal(
            "market.guesses",
            "market",
            "[[fields]]\nname = \"guess\"\ntype = \"string\"\nclass = \"public\"\n",
        ),
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = define(
        &server,
        &civil,
        &personal(
            "civil.people",
            "civil",
            "[[fields]]\nname = \"district\"\ntype = \"string\"\nclass = \"public\"\n",
        ),
    );
    assert_eq!(status, 201, "{text}");
    let ingest = |token: &str, dataset: &str, body: &str| {
        let (status, text) = call(
            &server,
            "POST",
            &format!("/api/v1/datasets/{dataset}/records"),
            token,
            "application/x-ndjson",
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{text}");
    };
    ingest(
        &health,
        "health.consults",
        "{\"phone\":\"13800000001\",\"diagnosis\":\"flu\"}\n{\"phone\":\"13800000002\",\"diagnosis\":\"hiv\"}\n",
    );
    ingest(
        &market,
        "market.guesses",
        "{\"phone\":\"13800000001\",\"guess\":\"13800000001\"}\n{\"phone\":\"13800000002\",\"guess\":\"13800000002\"}\n",
    );
    ingest(
        &civil,
        "civil.people",
        "{\"phone\":\"13800000002\",\"district\":\"west\"}\n",
    );
    let attack = "SELECT g.guess, v.diagnosis FROM market.guesses g JOIN health.consults v ON g.phone = v.phone";
    let rows = |sql: &str| -> Vec<serde_json::Value> {
        let (status, text) = sql_as(&server, &reader, sql);
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(
        rows(attack),
        Vec::<serde_json::Value>::new(),
        "the probe's join"
    );
    // Within one column pseudonyms stay stable: a self-join and distinct counts work.
    assert_eq!(
        rows(
            "SELECT count(*) AS n FROM health.consults a JOIN health.consults b ON a.phone = b.phone"
        )[0]["n"],
        2
    );
    // A linkage of health and civil: pending until both owners approve.
    let link = "SELECT p.district, v.diagnosis FROM civil.people p JOIN health.consults v ON p.phone = v.phone";
    let (status, text) = post_json(
        &server,
        "/api/v1/linkages",
        &health,
        serde_json::json!({"name": "care", "purpose": "home care for patients",
            "members": [{"dataset": "health.consults", "field": "phone"}, {"dataset": "civil.people", "field": "phone"}]}),
    );
    assert_eq!(status, 201, "{text}");
    assert!(text.contains("\"pending\""), "{text}");
    assert_eq!(rows(link).len(), 0, "pending: not linked yet");
    // The attacker cannot join the victim's column to a linkage of its own, nor approve
    // someone else's.
    let (status, text) = post_json(
        &server,
        "/api/v1/linkages",
        &market,
        serde_json::json!({"name": "mine", "purpose": "x",
            "members": [{"dataset": "health.consults", "field": "phone"}, {"dataset": "market.guesses", "field": "phone"}]}),
    );
    assert!(status == 409 || status == 403, "{status} {text}");
    let (status, text) = post_json(
        &server,
        "/api/v1/linkages/care/approve",
        &market,
        serde_json::json!({}),
    );
    assert_eq!(status, 403, "{text}");
    let (status, text) = post_json(
        &server,
        "/api/v1/linkages/care/approve",
        &civil,
        serde_json::json!({}),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"active\""), "{text}");
    let linked = rows(link);
    assert_eq!(linked.len(), 1, "{linked:?}");
    assert_eq!(linked[0]["diagnosis"], "hiv");
    // Still nothing for the guesses, and withdrawing unlinks at once.
    assert_eq!(rows(attack).len(), 0);
    let (status, text) = post_json(
        &server,
        "/api/v1/linkages/care/withdraw",
        &civil,
        serde_json::json!({}),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(rows(link).len(), 0);
}

fn issue(server: &Server, by: &str, principal: &str, body: serde_json::Value) -> (u16, String) {
    post_json(
        server,
        &format!("/api/v1/principals/{principal}/tokens"),
        by,
        body,
    )
}

/// Item 5: a reader minted itself a never-expiring token that outlived its own.
#[test]
fn tokens_come_from_admins_and_never_outlive_the_token_that_issued_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let reader = principal(&server, "curious", "tourism", "reader");
    let (status, text) = issue(&server, &reader, "curious", serde_json::json!({}));
    assert_eq!(status, 403, "a reader mints its own token: {text}");
    // An admin whose token lasts a day.
    let _ = principal(&server, "tourism_ops", "tourism", "admin");
    let (status, text) = issue(
        &server,
        &server.admin,
        "tourism_ops",
        serde_json::json!({"expires_in_days": 1}),
    );
    assert_eq!(status, 201, "{text}");
    let day: serde_json::Value = serde_json::from_str(&text).unwrap();
    let day_token = day["token"].as_str().unwrap().to_string();
    let day_id = day["id"].as_str().unwrap().to_string();
    let (status, text) = issue(
        &server,
        &day_token,
        "curious",
        serde_json::json!({"expires_in_days": 30}),
    );
    assert_eq!(status, 403, "outlives its issuer: {text}");
    let (status, text) = issue(&server, &day_token, "curious", serde_json::json!({}));
    assert_eq!(status, 201, "{text}");
    let minted: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(minted["expires_at"], day["expires_at"], "{text}");
    let minted_token = minted["token"].as_str().unwrap().to_string();
    let (status, text) = issue(&server, &day_token, "curious", serde_json::json!({}));
    assert_eq!(status, 201, "{text}");
    let kept: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kept_token = kept["token"].as_str().unwrap().to_string();
    // Absurd expiries are a 400, not an overflow.
    let (status, text) = issue(
        &server,
        &server.admin,
        "curious",
        serde_json::json!({"expires_in_days": 1_000_000_000u32}),
    );
    assert_eq!(status, 400, "{text}");
    // Revoking the day token revokes what it minted.
    let (status, text) = call(
        &server,
        "DELETE",
        &format!("/api/v1/tokens/{}", kept["id"].as_str().unwrap()),
        &server.admin,
        "",
        b"",
    );
    assert_eq!(status, 200, "{text}");
    let (status, _) = server.get("/api/v1/whoami", Some(&minted_token));
    assert_eq!(status, 200);
    let (status, text) = call(
        &server,
        "DELETE",
        &format!("/api/v1/tokens/{day_id}"),
        &server.admin,
        "",
        b"",
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("revoked_with_it"), "{text}");
    for token in [&day_token, &minted_token, &kept_token] {
        let (status, _) = server.get("/api/v1/whoami", Some(token));
        assert_eq!(status, 401);
    }
    // The bearer scheme is case-insensitive (RFC 7235).
    let response = agent()
        .get(&format!("{}/api/v1/whoami", server.base))
        .header("Authorization", &format!("bearer {}", server.admin))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

/// CPU time the process has used, from /proc (Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Item 6: after the 408 a cross join kept a core busy for two minutes, and two of them
/// made /health time out.
#[test]
fn a_timed_out_statement_stops_and_health_answers_under_sql_load() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--sql-timeout-s", "2"]);
    let reader = principal(&server, "curious", "tourism", "reader");
    // Minutes of work in all, in pieces of well under a second (one probe batch against
    // the 50,000 rows of the build side).
    let heavy = "SELECT count(*) FROM generate_series(1, 50000) a, generate_series(1, 4000000) b WHERE a.value + b.value = 7";
    let base = server.base.clone();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (base, reader) = (base.clone(), reader.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let response = agent()
                    .post(&format!("{base}/api/v1/sql"))
                    .header("Authorization", &format!("Bearer {reader}"))
                    .header("Content-Type", "application/json")
                    .send(
                        serde_json::json!({"sql": heavy, "purpose": "load"})
                            .to_string()
                            .as_bytes(),
                    )
                    .unwrap();
                (response.status().as_u16(), started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    assert!(
        health_ok(&server, Duration::from_secs(2)),
        "/health under SQL load"
    );
    assert!(asked.elapsed() < Duration::from_secs(2));
    for worker in workers {
        let (status, took) = worker.join().unwrap();
        assert_eq!(status, 408);
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    // Cancelled, not abandoned: the process goes idle within a batch or two (before the
    // fix it computed on for minutes).
    let pid = server.child.id();
    let since = Instant::now();
    let mut last = cpu_seconds(pid);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = cpu_seconds(pid);
        if now - last < 0.05 {
            break;
        }
        last = now;
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "still computing {:?} after the timeouts",
            since.elapsed()
        );
    }
}

/// Item 7: a missing secret.key was silently replaced; `audit verify` wrote one.
#[test]
fn a_lost_secret_key_stops_the_start_and_verify_never_writes_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    assert_eq!(server.stop().code(), Some(0));
    std::fs::remove_file(dir.path().join("secret.key")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["up", "--listen", "127.0.0.1:0", "--no-demo", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("restore secret.key"), "{stderr}");
    assert!(!dir.path().join("secret.key").exists());
    let output = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["audit", "verify", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        !dir.path().join("secret.key").exists(),
        "verify wrote a key"
    );
    let empty = tempfile::tempdir().unwrap();
    let _ = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["audit", "verify", "--data"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(
        !empty.path().join("secret.key").exists(),
        "verify wrote a key"
    );
}

/// Item 8: 300 trickling connections exhausted the descriptors; /health timed out.
#[test]
fn slow_clients_are_dropped_and_cannot_starve_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--max-connections", "16", "--header-timeout-s", "2"],
    );
    let address = server.base.trim_start_matches("http://").to_string();
    let mut slow: Vec<std::net::TcpStream> = (0..40)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    for stream in &mut slow {
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n");
    }
    let asked = Instant::now();
    assert!(health_ok(&server, Duration::from_secs(10)), "/health");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );
    // A connection that never finishes its headers is closed by the server.
    let mut lone = std::net::TcpStream::connect(&address).unwrap();
    lone.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    lone.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    let n = lone.read(&mut buffer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buffer[..n]).to_string();
    assert!(n == 0 || answer.contains("408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

/// Item 9: a market admin created `transport.nope` and `information_schema.tables`.
#[test]
fn departments_publish_only_under_their_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let market = principal(&server, "market_ops", "market", "admin");
    let def = |name: &str| {
        format!(
            "name = \"{name}\"\nowner = \"market\"\nsharing = \"unconditional\"\n[[fields]]\nname = \"a\"\ntype = \"int\"\nclass = \"public\"\n"
        )
    };
    for name in [
        "transport.nope",
        "information_schema.tables",
        "pg_catalog.x",
        "market.x__rejected",
    ] {
        let (status, text) = define(&server, &market, &def(name));
        assert_eq!(status, 403, "{name}: {text}");
        assert!(text.contains(name), "{text}");
    }
    let (status, text) = define(&server, &market, &def("market.fine"));
    assert_eq!(status, 201, "{text}");
    // Its owner's admins delete it (audited); others cannot.
    let reader = principal(&server, "market_reader", "market", "reader");
    let (status, text) = call(
        &server,
        "DELETE",
        "/api/v1/datasets/market.fine",
        &reader,
        "",
        b"",
    );
    assert_eq!(status, 403, "{text}");
    let (status, text) = call(
        &server,
        "DELETE",
        "/api/v1/datasets/market.fine",
        &server.token,
        "",
        b"",
    );
    assert_eq!(status, 403, "{text}");
    let (status, text) = call(
        &server,
        "DELETE",
        "/api/v1/datasets/market.fine",
        &market,
        "",
        b"",
    );
    assert_eq!(status, 200, "{text}");
    let (status, _) = call(
        &server,
        "GET",
        "/api/v1/datasets/market.fine",
        &market,
        "",
        b"",
    );
    assert_eq!(status, 404);
    let (_, metrics) = server.get("/metrics", Some(&server.admin));
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("market.fine") && l.contains("kind=\"manage\"")),
        "{metrics}"
    );
}

/// Item 10: `none` datasets leaked their existence through /metrics and error wording.
#[test]
fn hidden_datasets_look_exactly_like_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let market = principal(&server, "market_ops", "market", "admin");
    let (status, text) = define(
        &server,
        &server.token,
        "name = \"transport.secret\"\nowner = \"transport\"\nsharing = \"none\"\n[[fields]]\nname = \"a\"\ntype = \"int\"\nclass = \"public\"\n",
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = call(
        &server,
        "POST",
        "/api/v1/datasets/transport.secret/records",
        &server.token,
        "application/x-ndjson",
        b"{\"a\":1}\n",
    );
    assert_eq!(status, 200, "{text}");
    let probe = |name: &str| -> Vec<(u16, String)> {
        let put_body = format!(
            "name = \"{name}\"\nowner = \"transport\"\nsharing = \"none\"\n[[fields]]\nname = \"a\"\ntype = \"int\"\nclass = \"public\"\n"
        );
        [
            call(
                &server,
                "POST",
                &format!("/api/v1/datasets/{name}/records"),
                &market,
                "application/x-ndjson",
                b"{\"a\":1}\n",
            ),
            call(
                &server,
                "PUT",
                &format!("/api/v1/datasets/{name}"),
                &market,
                "application/toml",
                put_body.as_bytes(),
            ),
            call(
                &server,
                "GET",
                &format!("/api/v1/datasets/{name}/audit"),
                &market,
                "",
                b"",
            ),
            call(
                &server,
                "GET",
                &format!("/api/v1/datasets/{name}"),
                &market,
                "",
                b"",
            ),
            call(
                &server,
                "GET",
                &format!("/api/v1/datasets/{name}/records"),
                &market,
                "",
                b"",
            ),
        ]
        .into_iter()
        .map(|(status, text)| (status, text.replace(name, "NAME")))
        .collect()
    };
    assert_eq!(probe("transport.secret"), probe("transport.missing"));
    let (_, metrics) = server.get("/metrics", Some(&market));
    assert!(!metrics.contains("transport.secret"), "{metrics}");
    let (_, metrics) = server.get("/metrics", Some(&server.token));
    assert!(
        metrics.contains("transport.secret"),
        "the owner sees its own"
    );
}

/// Items 11 and 12: a purpose that forges audit rows, and owners reading other
/// departments' schema queries.
#[test]
fn purposes_are_one_printable_line_and_schema_queries_stay_out_of_others_audit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    server.create_passages();
    let market = principal(&server, "market_ops", "market", "admin");
    for purpose in ["line\n2026-01-01 forged row", "\u{1b}[2J", &"x".repeat(501)] {
        let (status, text) = post_json(
            &server,
            "/api/v1/sql",
            &market,
            serde_json::json!({"sql": "SELECT 1", "purpose": purpose}),
        );
        assert_eq!(status, 400, "{text}");
    }
    let (status, text) = define(
        &server,
        &market,
        "name = \"market.shops\"\nowner = \"market\"\nsharing = \"unconditional\"\n[[fields]]\nname = \"a\"\ntype = \"int\"\nclass = \"public\"\n",
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = sql_as(&server, &market, "SHOW COLUMNS FROM market.shops");
    assert_eq!(status, 200, "{text}");
    let (status, text) = sql_as(&server, &market, "SELECT * FROM information_schema.tables");
    assert_eq!(status, 200, "{text}");
    let (status, audit) = server.get(
        "/api/v1/datasets/transport.anpr_passages/audit",
        Some(&server.token),
    );
    assert_eq!(status, 200, "{audit}");
    assert!(!audit.contains("market"), "{audit}");
}

/// Item 13: user errors answered 500, and bodies were taken on trust.
#[test]
fn callers_mistakes_are_400s_and_bodies_are_checked_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--body-limit-mib", "1"]);
    server.create_passages();
    for sql in [
        "SELECT CAST('x' AS INT)",
        "SELECT 1/0",
        "SELECT 1; SELECT 2",
    ] {
        let (status, text) = sql_as(&server, &server.token, sql);
        assert_eq!(status, 400, "{sql}: {text}");
    }
    let response = agent()
        .post(&format!(
            "{}/api/v1/datasets/transport.anpr_passages/records",
            server.base
        ))
        .header("Authorization", &format!("Bearer {}", server.token))
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .send(&b"\x1f\x8b\x08\x00"[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    // A declared length over the limit is refused before the body is sent.
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /api/v1/datasets/transport.anpr_passages/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 10000000000\r\n\r\n",
        server.token
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0u8; 512];
    let n = stream.read(&mut buffer).unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// Issue 23, item 5: a principal over its request rate, a department over its SQL quota and
/// one event stream too many are each refused at once with an error naming the limit (and
/// the flag that sets it); other principals and departments go on.
#[test]
fn limits_refuse_with_an_error_naming_the_limit_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--rate-per-principal",
            "1",
            "--rate-burst",
            "30",
            "--max-event-streams",
            "1",
            "--sql-per-department",
            "1",
            "--sql-timeout-s",
            "3",
        ],
    );
    server.create_passages();
    let busy = principal(&server, "busy", "tourism", "reader");
    let calm = principal(&server, "calm", "tourism", "reader");
    let other = principal(&server, "other", "market", "reader");

    // The rate: the burst, then 429 with Retry-After; another principal is not touched.
    let whoami = |token: &str| {
        let r = agent()
            .get(&format!("{}/api/v1/whoami", server.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let status = r.status().as_u16();
        (status, retry, r.into_body().read_to_string().unwrap())
    };
    let mut ok = 0;
    let refused = loop {
        let (status, retry, text) = whoami(&busy);
        if status == 429 {
            break (retry, text);
        }
        assert_eq!(status, 200, "{text}");
        ok += 1;
        assert!(ok <= 40, "never limited");
    };
    assert!(ok >= 30, "the burst is 30: {ok}");
    assert!(refused.0.is_some(), "no Retry-After");
    assert!(
        refused.1.contains("rate_limited") && refused.1.contains("--rate-per-principal"),
        "{}",
        refused.1
    );
    // A call another node of the hub sent on was counted there, so it is not counted
    // again, but only with that node's proof (made with the hub secret): saying so in a
    // header, with a made-up proof, gets no call past the limit.
    let authorization = format!("Bearer {busy}");
    let sent_on = |proof: &str| {
        agent()
            .get(&format!("{}/api/v1/whoami", server.base))
            .header("Authorization", &authorization)
            .header("x-citybrain-forwarded-by", "node-x")
            .header("x-citybrain-forward-proof", proof)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(sent_on(&format!("{now}.00ff")), 429, "a forged proof");
    let hub =
        citybrain_gov::Forwarding::of_secret(&citybrain_gov::read_secret(dir.path()).unwrap());
    let call = citybrain_gov::Forwarded {
        node: "node-x",
        method: "GET",
        path: "/api/v1/whoami",
        authorization: authorization.as_bytes(),
    };
    assert_eq!(sent_on(&hub.proof(&call, now)), 200, "a node's proof");
    let other_caller = citybrain_gov::Forwarded {
        authorization: b"Bearer someone_else",
        ..call
    };
    assert_eq!(
        sent_on(&hub.proof(&other_caller, now)),
        429,
        "another call's proof"
    );
    assert_eq!(whoami(&calm).0, 200, "another principal has its own rate");

    // The SQL quota: a department with one statement in flight is refused a second at once;
    // another department's statement runs.
    let heavy = "SELECT count(*) FROM generate_series(1, 50000) a, generate_series(1, 4000000) b WHERE a.value + b.value = 7";
    let sql = |token: &str, text: &str| {
        let started = Instant::now();
        let (status, body) = post_json(
            &server,
            "/api/v1/sql",
            token,
            serde_json::json!({"sql": text, "purpose": "limits"}),
        );
        (status, body, started.elapsed())
    };
    let running = {
        let (base, token) = (server.base.clone(), calm.clone());
        std::thread::spawn(move || {
            agent()
                .post(&format!("{base}/api/v1/sql"))
                .header("Authorization", &format!("Bearer {token}"))
                .header("Content-Type", "application/json")
                .send(
                    serde_json::json!({"sql": heavy, "purpose": "load"})
                        .to_string()
                        .as_bytes(),
                )
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // Until the heavy one holds the department's place (it runs three seconds).
    let started = Instant::now();
    let (status, body, took) = loop {
        std::thread::sleep(Duration::from_millis(100));
        let answer = sql(&calm, "SELECT 1 AS one");
        if answer.0 == 429 || started.elapsed() > Duration::from_secs(2) {
            break answer;
        }
    };
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("sql_department_busy") && body.contains("tourism"),
        "{body}"
    );
    assert!(took < Duration::from_secs(1), "refused at once: {took:?}");
    let (status, body, _) = sql(&other, "SELECT 1 AS one");
    assert_eq!(status, 200, "another department: {body}");
    assert_eq!(running.join().unwrap(), 408);
    let (status, body, _) = sql(&calm, "SELECT 1 AS one");
    assert_eq!(status, 200, "the place is given back: {body}");

    // Event streams: one open, the next refused.
    let stream = |token: &str| {
        agent()
            .get(&format!("{}/api/v1/indices/stream", server.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
    };
    let first = stream(&other);
    assert_eq!(first.status().as_u16(), 200);
    let second = stream(&calm);
    assert_eq!(second.status().as_u16(), 503);
    let text = second.into_body().read_to_string().unwrap();
    assert!(
        text.contains("too_many_streams") && text.contains("--max-event-streams"),
        "{text}"
    );
    drop(first);
}

/// Issue 23, item 5: with a certificate the API speaks HTTPS (a client that trusts the
/// certificate gets answers; plain HTTP on that port gets none).
#[test]
fn with_a_certificate_the_api_speaks_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let data = dir.path().join("data");
    let server = launch(
        &data,
        &[
            "--no-demo",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
        std::process::Stdio::inherit(),
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let curl = |url: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .args([
                "-H",
                &format!("Authorization: Bearer {}", server.admin.trim()),
            ])
            .args(["-w", "\n%{http_code}", url])
            .output()
            .expect("curl runs")
    };
    let out = curl(&format!("{}/api/v1/whoami", server.base));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.ends_with("200") && text.contains("admin"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = curl(&format!(
        "{}/api/v1/whoami",
        server.base.replace("https://", "http://")
    ));
    assert!(
        !String::from_utf8_lossy(&plain.stdout).ends_with("200"),
        "plain HTTP answered on the HTTPS port"
    );
    assert!(server.stop().success());
}

/// A department's statements share one memory quota: a statement that fits its own limit
/// is refused, naming the quota and the department, when the department's quota is less;
/// a small one from the same department runs.
#[test]
fn a_departments_statements_share_its_memory_quota() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--sql-memory-mib",
            "512",
            "--sql-department-memory-mib",
            "1",
        ],
    );
    let reader = principal(&server, "analyst", "tourism", "reader");
    let wide = "SELECT a.value % 200000 AS k, count(*) AS n FROM generate_series(1, 2000000) a GROUP BY k ORDER BY k";
    let (status, body) = post_json(
        &server,
        "/api/v1/sql",
        &reader,
        serde_json::json!({"sql": wide, "purpose": "quota"}),
    );
    assert_eq!(status, 507, "{body}");
    assert!(
        body.contains("sql_department_memory")
            && body.contains("tourism")
            && body.contains("--sql-department-memory-mib"),
        "{body}"
    );
    let (status, body) = post_json(
        &server,
        "/api/v1/sql",
        &reader,
        serde_json::json!({"sql": "SELECT count(*) AS n FROM generate_series(1, 1000)", "purpose": "quota"}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1000"), "{body}");
}
