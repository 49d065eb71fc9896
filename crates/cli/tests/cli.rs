//! The real `citybrain` binary, end to end: a server on port 0 over a temporary data
//! directory, driven over HTTP, killed and restarted.
//!
//! Why this file is long (about 1,900 lines): one end-to-end test per scene and protocol,
//! sharing `common`; tests that wait on a scene wait on its watermark (`Server::applied`,
//! `Server::caught_up`). To be split by scene (hub, indices, parking, signals, policy).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::*;

const PASSAGES: &str = "transport.anpr_passages";

fn passages(from: usize, n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in from..from + n {
        body.extend_from_slice(
            format!(
                "{{\"ts\":\"2026-11-22T08:{:02}:00+08:00\",\"checkpoint_id\":{},\"plate\":\"浙A{:05}\",\"lane\":1,\"speed_kmh\":31.5}}\n",
                i % 60,
                i % 50,
                i
            )
            .as_bytes(),
        );
    }
    body
}

#[test]
fn auth_is_required_under_api_v1_and_health_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    assert_eq!(server.get("/health", None).0, 200);
    let (status, text) = server.get("/api/v1/datasets", None);
    assert_eq!(status, 401);
    assert!(text.contains("admin.token"), "{text}");
    assert_eq!(server.get("/api/v1/datasets", Some("wrong")).0, 401);
    assert_eq!(
        server
            .get("/api/v1/datasets", Some(&server.token.clone()))
            .0,
        200
    );
    // Every documented route exists (answers something other than 404/405 with a token).
    let (status, text) = server.get("/api/v1/openapi.json", Some(&server.token.clone()));
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/grants",
        "/api/v1/tokens/{id}",
        "/metrics",
        "/api/v1/sql",
    ] {
        assert!(paths.contains_key(expected), "{expected} undocumented");
    }
    for (path, item) in paths {
        let path = path
            .replace("{name}", "transport.anpr_passages")
            .replace("{id}", "1")
            .replace("{decision}", "approve");
        for method in item.as_object().unwrap().keys() {
            let request = agent()
                .run(
                    ureq::http::Request::builder()
                        .method(method.to_uppercase().as_str())
                        .uri(format!("{}{path}", server.base))
                        .header("Authorization", format!("Bearer {}", server.token))
                        .body(Vec::<u8>::new())
                        .unwrap(),
                )
                .unwrap();
            let status = request.status().as_u16();
            if path.ends_with("/stream") {
                // An event stream never ends; its status is the answer.
                assert_eq!(status, 200, "{path}");
                continue;
            }
            let body = request.into_body().read_to_string().unwrap_or_default();
            // A 404 from a handler says what was not found; the router's own 404 is empty.
            assert!(
                status != 405 && (status != 404 || body.contains("\"code\"")),
                "{method} {path}: {status} {body}"
            );
        }
    }
    assert!(server.stop().success());
}

#[test]
fn every_format_is_ingested_and_visible_to_sql_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    server.create_passages();
    let table = "transport.anpr_passages";
    let path = "/api/v1/datasets/transport.anpr_passages/records";
    let (status, text) = server.post(path, "application/x-ndjson", &passages(0, 100));
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        server.count(table),
        100,
        "visible as soon as the call returned"
    );

    let csv = "ts,checkpoint_id,plate,lane,speed_kmh\n2026-11-22T01:00:00Z,7,浙B00001,2,\n2026-11-22T01:00:01Z,8,浙B00002,,40\n";
    let (status, text) = server.post(path, "text/csv", csv.as_bytes());
    assert_eq!(status, 200, "{text}");
    assert_eq!(server.count(table), 102);

    // Parquet written by an independent writer (the parquet crate from Arrow arrays).
    let parquet = {
        use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
        let batch = arrow::record_batch::RecordBatch::try_from_iter(vec![
            (
                "ts",
                std::sync::Arc::new(TimestampMillisecondArray::from(vec![
                    1_795_305_600_000i64;
                    3
                ])) as _,
            ),
            (
                "checkpoint_id",
                std::sync::Arc::new(Int64Array::from(vec![1, 2, 3])) as _,
            ),
            (
                "plate",
                std::sync::Arc::new(StringArray::from(vec!["浙C1", "浙C2", "浙C3"])) as _,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    };
    let (status, text) = server.post(path, "application/vnd.apache.parquet", &parquet);
    assert_eq!(status, 200, "{text}");
    let rows = server.sql(
        "SELECT plate, ts FROM transport.anpr_passages WHERE plate LIKE '浙C%' ORDER BY plate",
    );
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[0]["ts"], "2026-11-22T00:00:00Z");

    // Results as CSV and Arrow IPC too.
    let body = serde_json::json!({"sql": "SELECT count(*) AS n FROM transport.anpr_passages", "format": "csv"}).to_string();
    let (_, text) = server.post("/api/v1/sql", "application/json", body.as_bytes());
    assert_eq!(text, "n\n105\n");
    let body = serde_json::json!({"sql": "SELECT checkpoint_id FROM transport.anpr_passages", "format": "arrow"}).to_string();
    let response = agent()
        .post(&format!("{}/api/v1/sql", server.base))
        .header("Authorization", &format!("Bearer {}", server.token))
        .send(body.as_bytes())
        .unwrap();
    let bytes = response.into_body().read_to_vec().unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(&bytes[..], None).unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 105);

    // Unsupported content type and writes through SQL are refused.
    assert_eq!(server.post(path, "text/plain", b"x").0, 415);
    let body =
        serde_json::json!({"sql": "INSERT INTO transport.anpr_passages VALUES (1)"}).to_string();
    let (status, text) = server.post("/api/v1/sql", "application/json", body.as_bytes());
    assert_eq!(status, 403, "{text}");
    assert!(server.stop().success());
}

#[test]
fn bad_records_reject_the_batch_or_go_to_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    server.create_passages();
    let path = "/api/v1/datasets/transport.anpr_passages/records";
    let mut body = passages(0, 3);
    body.extend_from_slice(
        b"{\"ts\":\"2026-11-22T08:00:00\",\"checkpoint_id\":1,\"plate\":\"x\"}\n",
    );
    body.extend_from_slice(&passages(3, 2));
    body.extend_from_slice(b"{\"ts\":\"2026-11-22T08:00:00Z\",\"checkpoint_id\":\"one\"}\n");
    let (status, text) = server.post(path, "application/x-ndjson", &body);
    assert_eq!(status, 422, "{text}");
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    let problems = error["details"]["problems"].as_array().unwrap();
    let found: Vec<(i64, &str)> = problems
        .iter()
        .map(|p| (p["line"].as_i64().unwrap(), p["field"].as_str().unwrap()))
        .collect();
    assert_eq!(found, vec![(4, "ts"), (7, "checkpoint_id"), (7, "plate")]);
    assert!(
        problems[0]["reason"]
            .as_str()
            .unwrap()
            .contains("UTC offset")
    );
    assert_eq!(server.count("transport.anpr_passages"), 0, "nothing stored");

    let (status, text) = server.post(
        &format!("{path}?on_error=skip"),
        "application/x-ndjson",
        &body,
    );
    assert_eq!(status, 200, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (report["accepted"].as_i64(), report["rejected"].as_i64()),
        (Some(5), Some(2))
    );
    assert_eq!(server.count("transport.anpr_passages"), 5);
    let dead = server
        .sql("SELECT line, field FROM transport.anpr_passages__rejected ORDER BY line, field");
    assert_eq!(dead.as_array().unwrap().len(), 3);
    assert_eq!(dead[0]["line"], 4);
    // Listed beside their dataset as a count, not as a twin (issue 30), unless asked.
    let names = |path: &str| -> Vec<serde_json::Value> {
        let (status, text) = server.get(path, Some(&server.token));
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["datasets"].as_array().unwrap().clone()
    };
    let listed = names("/api/v1/datasets");
    assert!(
        listed
            .iter()
            .all(|d| !d["name"].as_str().unwrap().ends_with("__rejected")),
        "{listed:?}"
    );
    let passages = listed
        .iter()
        .find(|d| d["name"] == "transport.anpr_passages")
        .unwrap();
    // One dead-letter row per problem found.
    assert_eq!(passages["rejected_rows"], 3, "{passages}");
    let all = names("/api/v1/datasets?rejected=true");
    assert!(
        all.iter()
            .any(|d| d["name"] == "transport.anpr_passages__rejected")
    );
    assert!(server.stop().success());
}

#[test]
fn a_body_over_the_cap_gets_413_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--body-limit-mib", "1"]);
    server.create_passages();
    let body = passages(0, 15_000); // about 1.6 MB
    assert!(body.len() > 1 << 20);
    let (status, text) = server.post(
        "/api/v1/datasets/transport.anpr_passages/records",
        "application/x-ndjson",
        &body,
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("1048576 bytes"), "{text}");
    assert_eq!(server.count("transport.anpr_passages"), 0);
    assert!(server.stop().success());
}

#[test]
fn kill_9_during_ingest_loses_no_acknowledged_record_and_keeps_no_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    server.create_passages();
    let (base, token) = (server.base.clone(), server.token.clone());
    const BATCH: usize = 2_000;
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let acknowledged = acknowledged.clone();
        std::thread::spawn(move || {
            for k in 0.. {
                let body = passages(k * BATCH, BATCH);
                let result = agent()
                    .post(&format!(
                        "{base}/api/v1/datasets/transport.anpr_passages/records"
                    ))
                    .header("Authorization", &format!("Bearer {token}"))
                    .header("Content-Type", "application/x-ndjson")
                    .send(&body[..]);
                match result {
                    Ok(r) if r.status().as_u16() == 200 => {
                        acknowledged.fetch_add(BATCH, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
        })
    };
    // Kill once a few batches are in, while the writer is mid-stream.
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < 10 * BATCH {
        std::thread::yield_now();
    }
    let data = server.data.clone();
    server.kill9();
    writer.join().unwrap();
    let acked = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    let server = start(&data, &[]);
    let stored = server.count("transport.anpr_passages") as usize;
    assert!(stored >= acked, "stored {stored} < acknowledged {acked}");
    assert!(
        stored <= acked + BATCH,
        "at most the in-flight batch may also have landed"
    );
    assert_eq!(stored % BATCH, 0, "no partial batch: {stored}");
    let distinct = server.sql("SELECT count(DISTINCT plate) AS n FROM transport.anpr_passages")[0]
        ["n"]
        .as_i64()
        .unwrap();
    assert_eq!(distinct as usize, stored, "no record twice");
    assert!(server.stop().success());
}

#[test]
fn graceful_shutdown_exits_zero_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    server.create_passages();
    let (status, _) = server.post(
        "/api/v1/datasets/transport.anpr_passages/records",
        "application/x-ndjson",
        &passages(0, 500),
    );
    assert_eq!(status, 200);
    let status = server.stop();
    assert_eq!(status.code(), Some(0));
    let server = start(dir.path(), &[]);
    assert_eq!(server.count("transport.anpr_passages"), 500);
    assert!(server.stop().success());
}

#[test]
fn the_cli_creates_ingests_and_queries_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let base = server.base.clone();
    let token_file = |name: &str| dir.path().join(format!("{name}.token"));
    let cli = |token: &str, args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_citybrain"))
            .args(args)
            .env("CITYBRAIN_SERVER", &base)
            .env("CITYBRAIN_TOKEN_FILE", token_file(token))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // The hub admin sets up a publisher for transport and an analyst in market.
    let (ok, _, err) = cli(
        "admin",
        &[
            "departments",
            "create",
            "market",
            "--name",
            "Market Supervision",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = cli("admin", &["departments", "list"]);
    assert!(
        ok && out.contains("market") && out.contains("transport"),
        "{out}"
    );
    for (name, department, role) in [
        ("transport_cli", "transport", "admin"),
        ("market_analyst", "market", "reader"),
    ] {
        let (ok, _, err) = cli(
            "admin",
            &[
                "principals",
                "create",
                name,
                "--department",
                department,
                "--role",
                role,
            ],
        );
        assert!(ok, "{err}");
        let out_file = token_file(name);
        let (ok, out, err) = cli(
            "admin",
            &["tokens", "issue", name, "--out", out_file.to_str().unwrap()],
        );
        assert!(ok, "{err}");
        assert!(
            !out.contains("cbt_"),
            "the secret went to the file, not the screen: {out}"
        );
    }
    let (ok, out, _) = cli("market_analyst", &["whoami"]);
    assert!(ok);
    assert_eq!(out.trim(), "market_analyst (reader in market)");

    let definition = &format!(
        "{}/../gen/definitions/transport.anpr_passages.toml",
        manifest_dir()
    );
    // A reader cannot publish.
    let (ok, _, err) = cli("market_analyst", &["datasets", "create", definition]);
    assert!(!ok && err.contains("may not publish"), "{err}");
    let (ok, out, err) = cli("transport_cli", &["datasets", "create", definition]);
    assert!(ok, "{err}");
    assert!(out.contains("created transport.anpr_passages"), "{out}");
    let (ok, _, err) = cli("transport_cli", &["datasets", "create", definition]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let file = dir.path().join("p.ndjson");
    std::fs::write(&file, passages(0, 25_000)).unwrap();
    let (ok, out, err) = cli(
        "transport_cli",
        &["ingest", "transport.anpr_passages", file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(out.contains("25000 records accepted, 0 rejected"), "{out}");
    let (ok, out, _) = cli(
        "transport_cli",
        &["sql", "SELECT count(*) AS n FROM transport.anpr_passages"],
    );
    assert!(ok);
    assert_eq!(out, "n\n25000\n");
    // A bad record in the second batch: that batch is refused whole and named by its lines;
    // the batches sent with it (two in flight) are stored and counted in the message.
    let mut bad = passages(100_000, 25_000);
    let line = bad.split(|b| *b == b'\n').nth(15_002).unwrap().to_vec();
    let broken = String::from_utf8(line.clone())
        .unwrap()
        .replace("\"lane\":1", "\"lane\":\"one\"");
    let at = bad.windows(line.len()).position(|w| w == line).unwrap();
    bad.splice(at..at + line.len(), broken.into_bytes());
    let bad_file = dir.path().join("bad.ndjson");
    std::fs::write(&bad_file, bad).unwrap();
    let (ok, _, err) = cli(
        "transport_cli",
        &[
            "ingest",
            "transport.anpr_passages",
            bad_file.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains("the batch of lines 10001–20000"), "{err}");
    assert!(err.contains("lane"), "the server's reason is shown: {err}");
    let told: i64 = err
        .split("every other batch sent was stored (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {err}"));
    assert!(told == 10_000 || told == 15_000, "{err}");
    let (_, out, _) = cli(
        "transport_cli",
        &["sql", "SELECT count(*) AS n FROM transport.anpr_passages"],
    );
    assert_eq!(out, format!("n\n{}\n", 25_000 + told));
    let (ok, out, _) = cli(
        "transport_cli",
        &[
            "sql",
            "SELECT count(*) AS n FROM transport.anpr_passages WHERE plate = '浙A115002'",
        ],
    );
    assert!(ok);
    assert_eq!(out, "n\n0\n", "nothing of the refused batch is stored");
    let (ok, out, _) = cli("transport_cli", &["datasets", "list"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("transport.anpr_passages ")
                && l.contains(&(25_000 + told).to_string())),
        "{out}"
    );

    // With --key, the same command run again stores nothing twice.
    let count = || -> i64 {
        let (_, out, _) = cli(
            "transport_cli",
            &["sql", "SELECT count(*) AS n FROM transport.anpr_passages"],
        );
        out.lines().nth(1).unwrap().parse().unwrap()
    };
    let before = count();
    let keyed_file = dir.path().join("keyed.ndjson");
    std::fs::write(&keyed_file, passages(300_000, 3_000)).unwrap();
    let keyed = [
        "ingest",
        "transport.anpr_passages",
        keyed_file.to_str().unwrap(),
        "--batch",
        "1000",
        "--key",
        "keyed-2026-11-22",
    ];
    let (ok, out, err) = cli("transport_cli", &keyed);
    assert!(ok, "{err}");
    assert!(out.contains("3000 records accepted, 0 rejected"), "{out}");
    let (ok, out, err) = cli("transport_cli", &keyed);
    assert!(ok, "{err}");
    assert!(
        out.contains("0 records accepted") && out.contains("3000 already stored under their key"),
        "{out}"
    );
    assert_eq!(count(), before + 3_000);

    // Market needs a grant (the passages are conditional), then sees plates masked.
    let plate_sql = "SELECT plate FROM transport.anpr_passages ORDER BY plate LIMIT 2";
    let (ok, _, err) = cli("market_analyst", &["sql", plate_sql]);
    assert!(
        !ok && err.contains("403") && err.contains("needs a grant"),
        "{err}"
    );
    let (ok, out, err) = cli(
        "market_analyst",
        &[
            "grants",
            "request",
            "transport.anpr_passages",
            "--purpose",
            "study of deliveries",
            "--fields",
            "ts,checkpoint_id,plate",
            "--days",
            "7",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("requested grant #1"), "{out}");
    let (ok, _, err) = cli("market_analyst", &["grants", "approve", "1"]);
    assert!(!ok && err.contains("only admins of transport"), "{err}");
    let (ok, out, err) = cli("transport_cli", &["grants", "approve", "1"]);
    assert!(ok && out.contains("approved"), "{out} {err}");
    let (ok, out, err) = cli(
        "market_analyst",
        &["sql", plate_sql, "--purpose", "delivery study"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "plate\n浙A·***00\n浙A·***00\n");
    let (ok, out, _) = cli("market_analyst", &["grants", "list"]);
    assert!(
        ok && out.contains("approved") && out.contains("study of deliveries"),
        "{out}"
    );

    // The owner sees who read its data and for what; the trail verifies.
    let (ok, out, err) = cli(
        "transport_cli",
        &["audit", "who-read", "transport.anpr_passages"],
    );
    assert!(ok, "{err}");
    let reads: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("market_analyst"))
        .collect();
    assert!(reads.iter().any(|l| l.contains("denied")), "{out}");
    assert!(
        reads
            .iter()
            .any(|l| l.contains(" ok ") && l.contains("plate") && l.contains("delivery study")),
        "{out}"
    );
    let (ok, _, err) = cli(
        "market_analyst",
        &["audit", "who-read", "transport.anpr_passages"],
    );
    assert!(!ok && err.contains("403"), "{err}");
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = cli("admin", &["audit", "verify", "--data", data]);
    assert!(ok && out.contains("audit trail intact"), "{out} {err}");

    // Revoking the token stops it at once.
    let (ok, out, _) = cli("admin", &["tokens", "list"]);
    assert!(ok);
    let id = out
        .lines()
        .find(|l| l.contains("market_analyst"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (ok, _, err) = cli("admin", &["tokens", "revoke", &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli("market_analyst", &["whoami"]);
    assert!(!ok && err.contains("401"), "{err}");

    // Without a server, the error says what to do.
    drop(server);
    let (ok, _, err) = cli("transport_cli", &["sql", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("is `citybrain up` running?"), "{err}");
}

#[test]
fn secrets_never_reach_the_logs_and_the_trail_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = start_with(&data, &[], "debug", Stdio::from(log));
    server.create_passages();
    let mut secrets = vec![server.admin.trim().to_string(), server.token.clone()];
    // A full run: a reader with an expiring token, reads, a revocation, a denied call.
    let (status, text) = server.post(
        "/api/v1/principals",
        "application/json",
        br#"{"name": "analyst", "department": "transport", "role": "reader"}"#,
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = server.post(
        "/api/v1/principals/analyst/tokens",
        "application/json",
        br#"{"expires_in_days": 1}"#,
    );
    assert_eq!(status, 201, "{text}");
    let issued: serde_json::Value = serde_json::from_str(&text).unwrap();
    let analyst = issued["token"].as_str().unwrap().to_string();
    secrets.push(analyst.clone());
    let path = "/api/v1/datasets/transport.anpr_passages/records";
    assert_eq!(
        server
            .post(path, "application/x-ndjson", &passages(0, 50))
            .0,
        200
    );
    let (status, text) = server.get(&format!("{path}?limit=3&purpose=check"), Some(&analyst));
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (status, csv) = server.get(&format!("{path}?format=csv"), Some(&analyst));
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count(), 51);
    // Readers cannot ingest; unknown datasets are 404.
    let response = agent()
        .post(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {analyst}"))
        .header("Content-Type", "application/x-ndjson")
        .send(&passages(0, 1)[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(
        server
            .get("/api/v1/datasets/transport.nope", Some(&analyst))
            .0,
        404
    );
    let (status, metrics) = server.get("/metrics", Some(&analyst));
    assert_eq!(status, 200);
    assert!(
        metrics.contains("citybrain_data_calls_total{department=\"transport\",dataset=\"transport.anpr_passages\",kind=\"export\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    // Any department gets the trail's public key and its signed head.
    let (status, key) = server.get("/api/v1/audit/key", Some(&analyst));
    assert_eq!(status, 200, "{key}");
    let published: serde_json::Value = serde_json::from_str(&key).unwrap();
    let public_key = published["public_key"].as_str().unwrap().to_string();
    assert_eq!(public_key.len(), 64);
    let (status, head) = server.get("/api/v1/audit/head", Some(&analyst));
    assert_eq!(status, 200, "{head}");
    let kept_head = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kept_head.path(), &head).unwrap();
    let id = issued["id"].as_str().unwrap();
    let response = agent()
        .delete(&format!("{}/api/v1/tokens/{id}", server.base))
        .header("Authorization", &format!("Bearer {}", server.admin.trim()))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(server.get("/api/v1/whoami", Some(&analyst)).0, 401);
    let printed = server.printed.lock().unwrap().clone();
    assert!(server.stop().success());

    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("DEBUG") || logged.contains("INFO"),
        "the log was captured: {logged}"
    );
    for secret in &secrets {
        assert!(!logged.contains(secret.as_str()), "a token reached the log");
        assert!(!printed.contains(secret.as_str()), "a token was printed");
        // Nor any recognisable part of it.
        assert!(!logged.contains(&secret[secret.len() - 16..]));
    }
    let trail = std::fs::read_to_string(data.join("audit/calls.ndjson")).unwrap();
    for secret in &secrets {
        assert!(
            !trail.contains(secret.as_str()),
            "a token reached the audit trail"
        );
    }

    // The trail verifies, and an edit is caught (exit status 1, what was altered).
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_citybrain"))
            .args(["audit", "verify", "--data"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The offline key is the one the server published.
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["audit", "key", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public_key);
    // An auditor with a copy of the audit directory, the public key and a head kept from
    // before: no secret anywhere near.
    let auditor = tempfile::tempdir().unwrap();
    let copy = || {
        for file in ["calls.ndjson", "head.json"] {
            std::fs::copy(data.join("audit").join(file), auditor.path().join(file)).unwrap();
        }
    };
    let audit_public = || {
        Command::new(env!("CARGO_BIN_EXE_citybrain"))
            .args(["audit", "verify", "--public-key", &public_key, "--head"])
            .arg(kept_head.path())
            .arg("--data")
            .arg(auditor.path())
            .output()
            .unwrap()
    };
    copy();
    let out = audit_public();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("public key"),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let edited = trail.replacen("\"rows\":3", "\"rows\":0", 1);
    assert_ne!(edited, trail);
    std::fs::write(data.join("audit/calls.ndjson"), edited).unwrap();
    let out = verify();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("was altered"));
    copy();
    let out = audit_public();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("public hash does not match"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Passages of `plates` vehicles, each read at checkpoints 1 and 2 a minute apart, starting
/// `minute` minutes after 08:00 local.
fn two_reads(plates: usize, minute: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..plates {
        for (checkpoint, offset) in [(1, 0), (2, 1)] {
            body.extend_from_slice(
                format!(
                    "{{\"ts\":\"2026-11-22T08:{:02}:{:02}+08:00\",\"checkpoint_id\":{checkpoint},\"plate\":\"浙B{i:05}\"}}\n",
                    minute + offset,
                    i % 60
                )
                .as_bytes(),
            );
        }
    }
    body
}

#[test]
fn ingested_passages_reach_the_live_indices_and_their_event_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    server.create_passages();
    // Subscribe first; the handler has subscribed once the response headers are back.
    let (events_tx, events) = std::sync::mpsc::channel::<String>();
    let (url, token) = (
        format!("{}/api/v1/indices/stream", server.base),
        server.token.clone(),
    );
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let response = agent()
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        ready_tx.send(response.status().as_u16()).unwrap();
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data: ")
                && events_tx.send(data.to_string()).is_err()
            {
                return;
            }
        }
    });
    assert_eq!(ready.recv().unwrap(), 200);
    let path = "/api/v1/datasets/transport.anpr_passages/records";
    let (status, text) = server.post(path, "application/x-ndjson", &two_reads(30, 0));
    assert_eq!(status, 200, "{text}");
    let sent = std::time::Instant::now();
    let live = loop {
        let event = events
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a live event after the ingest");
        let v: serde_json::Value = serde_json::from_str(&event).unwrap();
        if v["type"] == "live" {
            break v["live"].clone();
        }
    };
    eprintln!(
        "live event {} ms after the ingest returned",
        sent.elapsed().as_millis()
    );
    assert_eq!(live["counters"]["late_dropped"], 0);
    // All 30 vehicles are on the road and corroborated by their two reads at once, though
    // the later reads are still held for the lateness.
    assert_eq!(live["on_road"], 30, "{live}");
    assert_eq!(live["vehicles_today"], 30, "{live}");
    // The same view over HTTP: 30 vehicles corroborated by their two reads.
    let (status, text) = server.get("/api/v1/indices/traffic/live", Some(&server.token));
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["live"]["vehicles_today"], 30, "{text}");

    // A later hour replayed at speed closes the first hour's on-road windows into indices.*.
    let file = dir.path().join("later.ndjson");
    std::fs::write(&file, two_reads(10, 40)).unwrap();
    let token_file = dir.path().join("transport.token");
    std::fs::write(&token_file, &server.token).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["replay", file.to_str().unwrap(), "--speed", "3600x"])
        .env("CITYBRAIN_SERVER", &server.base)
        .env("CITYBRAIN_TOKEN_FILE", &token_file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("replayed 20 records"));
    let rows = loop {
        let n = server.sql("SELECT count(*) AS n, max(vehicles) AS top FROM indices.on_road WHERE district = 'city'");
        if n[0]["n"].as_i64().unwrap() > 0 || sent.elapsed().as_secs() > 10 {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(rows[0]["n"].as_i64().unwrap() >= 6, "{rows}");
    assert_eq!(rows[0]["top"], 30, "{rows}");

    // A restart rebuilds the live view from the stored passages and stores nothing twice.
    let stored =
        |server: &Server| server.sql("SELECT count(*) AS n FROM indices.on_road")[0]["n"].clone();
    let before = stored(&server);
    let (_, text) = server.get("/api/v1/indices/traffic/live", Some(&server.token));
    let was: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The event stream opened above is still connected: shutdown must end it, not wait.
    assert!(server.stop().success());
    let server = start(dir.path(), &[]);
    // Warmed up and caught up to the feed's head: the live view is rebuilt.
    server.caught_up("indices");
    let (status, text) = server.get("/api/v1/indices/traffic/live", Some(&server.token));
    assert_eq!(status, 200, "{text}");
    let live = serde_json::from_str::<serde_json::Value>(&text).unwrap()["live"].clone();
    assert_eq!(live["vehicles_today"], 30, "{live}");
    assert_eq!(live["vehicles_today"], was["live"]["vehicles_today"]);
    assert_eq!(live["on_road"], was["live"]["on_road"]);
    assert_eq!(live["at"], was["live"]["at"]);
    assert_eq!(stored(&server), before);
}

/// Polls `sql` until its answer satisfies `done` (at most a minute), and returns it: for
/// scenes that store their outputs on their own thread, on a loaded machine too.
fn sql_until(
    server: &Server,
    sql: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let now = server.sql(sql);
        if done(&now) || started.elapsed().as_secs() > 60 {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_demo_parking_day_bills_each_clean_stay_once_and_records_every_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &["--scale", "0.05"]);
    // Gate reads carry plates: read them as the owning department's admin.
    let (status, text) = server.post(
        "/api/v1/principals/transport_admin/tokens",
        "application/json",
        b"{}",
    );
    assert_eq!(status, 201, "{text}");
    let issued: serde_json::Value = serde_json::from_str(&text).unwrap();
    server.token = issued["token"].as_str().unwrap().to_string();
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("demo/truth.json")).unwrap())
            .unwrap();
    let truth = &truth["parking"];
    // A read two days on moves the gates' clock past the day, so every held read is applied
    // and every stay still open a day after its entry is recorded as having no exit.
    let late = "{\"ts\":\"2026-11-24T01:00:00+08:00\",\"lot_id\":1,\"plate\":\"浙A00000\",\"direction\":\"in\"}\n";
    let (status, text) = server.post(
        "/api/v1/datasets/parking.gate_events/records",
        "application/x-ndjson",
        late.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let position = serde_json::from_str::<serde_json::Value>(&text).unwrap()["position"]
        .as_i64()
        .expect("an ingest answers with its batch's position");
    // The scene has applied the late read, and stored every bill it closed.
    server.applied("parking", &[("parking.gate_events".into(), position)]);
    let count = "SELECT (SELECT count(*) FROM parking.bills) AS bills, (SELECT count(DISTINCT bill_id) FROM parking.bills) AS ids, (SELECT count(*) FROM parking.anomalies) AS anomalies";
    let bills = server.sql(count);
    assert_eq!(
        bills[0]["bills"], truth["clean_stays_ended"],
        "{bills} vs {truth}"
    );
    assert_eq!(bills[0]["bills"], bills[0]["ids"]);
    let kinds =
        server.sql("SELECT kind, count(*) AS n FROM parking.anomalies GROUP BY kind ORDER BY kind");
    let n = |kind: &str| {
        kinds
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind)
            .map_or(0, |r| r["n"].as_i64().unwrap())
    };
    assert_eq!(
        n("duplicate_entry") + n("duplicate_exit"),
        truth["duplicate_reads"].as_i64().unwrap(),
        "{kinds}"
    );
    assert_eq!(
        n("no_exit"),
        truth["open_without_exit"].as_i64().unwrap(),
        "{kinds}"
    );
    let missed_entries = truth["missed_entries"].as_i64().unwrap();
    assert!(
        n("exit_without_entry") > 0 && n("exit_without_entry") <= missed_entries,
        "{kinds}"
    );
    // Every bill is priced by its lot's tariff: a stay within the free minutes costs nothing,
    // a longer one at least one unit.
    let priced = server.sql(
        "SELECT count(*) AS wrong FROM parking.bills b JOIN parking.lots l ON b.lot_id = l.lot_id \
         WHERE (b.minutes <= l.free_minutes AND b.amount <> 0) \
            OR (b.minutes > l.free_minutes AND b.amount < least(l.day_unit, l.night_unit))",
    );
    assert_eq!(priced[0]["wrong"], 0, "{priced}");
    // Guidance near the first hospital: its own pool is among the lots, ranked by chance.
    let (status, text) = server.get(
        "/api/v1/parking/guide?lat=30.2563&lon=120.1625&arrive_in_min=30",
        Some(&server.token),
    );
    assert_eq!(status, 200, "{text}");
    let guide: serde_json::Value = serde_json::from_str(&text).unwrap();
    let lots = guide["lots"].as_array().unwrap();
    assert!(!lots.is_empty(), "{guide}");
    let chances: Vec<f64> = lots.iter().map(|l| l["chance"].as_f64().unwrap()).collect();
    assert!(
        chances
            .windows(2)
            .all(|w| (w[0] * 100.0).round() >= (w[1] * 100.0).round()),
        "{chances:?}"
    );
    let (status, _) = server.get("/api/v1/parking/guide?lat=95&lon=120", Some(&server.token));
    assert_eq!(status, 400);

    // Bills unpaid past the grace are flagged; a paid one is not. The demo day is in the
    // past, so with one hour's grace every bill but the paid one is overdue.
    let first = server.sql("SELECT bill_id, amount FROM parking.bills ORDER BY bill_id LIMIT 1");
    let payment = format!(
        "{{\"bill_id\":{},\"paid_at\":\"2026-11-22T23:00:00+08:00\",\"amount\":{}}}\n",
        first[0]["bill_id"], first[0]["amount"]
    );
    let (status, text) = server.post(
        "/api/v1/datasets/parking.payments/records",
        "application/x-ndjson",
        payment.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = server.get("/api/v1/parking/overdue?grace_hours=1", Some(&server.token));
    assert_eq!(status, 200, "{text}");
    let overdue: serde_json::Value = serde_json::from_str(&text).unwrap();
    let overdue = overdue.as_array().unwrap();
    assert_eq!(
        overdue.len() as i64,
        bills[0]["bills"].as_i64().unwrap() - 1
    );
    assert!(overdue.iter().all(|b| b["bill_id"] != first[0]["bill_id"]));

    // After a crash, the replayed reads issue no bill twice.
    let token = server.token.clone();
    server.kill9();
    let mut server = start(dir.path(), &["--scale", "0.05"]);
    server.token = token;
    // Caught up to where the feed stood before the crash: every replayed read applied.
    let scene = server.caught_up("parking");
    assert_eq!(scene["state"], "running", "{scene}");
    let again = server.sql(count);
    assert_eq!(again, bills);
}

#[test]
fn berth_sensor_messages_over_mqtt_reach_the_parking_indices() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &["--scale", "0.05", "--mqtt"]);
    // The broker's port, from the line `up` printed.
    let port = server.mqtt_port("MQTT sensors:");
    let before = server.sql("SELECT count(*) AS n FROM parking.sensor_events")[0]["n"]
        .as_i64()
        .unwrap();
    // Key-value and normalised messages, a lot-level count that empties lot 1 at 09:01 the
    // next day, one unreadable message, and a reading at 09:06 that closes the 09:05 instant.
    let messages = [
        r#"{"id":"urn:ngsi-ld:ParkingSpot:34:900","type":"ParkingSpot","status":"occupied","refParkingSite":"urn:ngsi-ld:OffStreetParking:34","dateObserved":"2026-11-23T09:00:00+08:00"}"#,
        r#"{"id":"urn:ngsi-ld:ParkingSpot:34:901","type":"ParkingSpot","status":{"type":"Property","value":"free","observedAt":"2026-11-23T01:00:30Z"},"refParkingSite":{"type":"Relationship","object":"urn:ngsi-ld:OffStreetParking:34"}}"#,
        r#"{"id":"urn:ngsi-ld:OffStreetParking:1","type":"OffStreetParking","availableSpotNumber":0,"dateObserved":"2026-11-23T09:01:00+08:00"}"#,
        r#"{"id":"urn:ngsi-ld:ParkingSpot:34:902","type":"ParkingSpot","status":"parked","refParkingSite":"urn:ngsi-ld:OffStreetParking:34","dateObserved":"2026-11-23T09:02:00+08:00"}"#,
        r#"{"id":"urn:ngsi-ld:ParkingSpot:34:903","type":"ParkingSpot","status":"occupied","refParkingSite":"urn:ngsi-ld:OffStreetParking:34","dateObserved":"2026-11-23T09:06:00+08:00"}"#,
    ];
    mosquitto_pub(&port, "citybrain/parking/sensors", &messages);
    let started = std::time::Instant::now();
    let stored = loop {
        let n = server.sql("SELECT count(*) AS n FROM parking.sensor_events")[0]["n"]
            .as_i64()
            .unwrap();
        if n >= before + 4 || started.elapsed().as_secs() > 15 {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // Four readable messages stored, the unreadable one not.
    assert_eq!(stored, before + 4);
    server.caught_up("parking");
    let lot1 = server.sql(
        "SELECT free, occupied, capacity FROM parking.index WHERE scope = 'lot' AND id = '1' AND at = TIMESTAMP '2026-11-23T01:05:00Z'",
    );
    assert_eq!(lot1[0]["free"], 0, "{lot1}");
    assert_eq!(lot1[0]["occupied"], lot1[0]["capacity"], "{lot1}");
    server.token = server.admin.clone();
    let status = server.stop();
    assert!(status.success());
    // The broker ends with citybrain.
    let _ = Command::new("pkill")
        .args(["-f", &dir.path().join("mqtt").display().to_string()])
        .status();
}

/// 一键护航 over the API: `up` co-simulates a SUMO grid under citybrain's control, an
/// emergency run started with POST /api/v1/signals/emergency crosses every light without
/// stopping, and the run and the phase decisions (with their reasons) land in datasets.
#[test]
fn an_emergency_run_started_over_the_api_crosses_every_light_without_stopping() {
    let venv = citybrain_sumo::scenario::venv();
    assert!(
        venv.join("bin/sumo").exists(),
        "SUMO is not installed at {}: run scripts/test (or scripts/install-sumo)",
        venv.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (net, routes) = citybrain_sumo::scenario::grid(&venv, dir.path(), 600).unwrap();
    let sumo = venv.join("bin/sumo");
    let data = dir.path().join("data");
    let server = start(
        &data,
        &[
            "--signals-net",
            net.to_str().unwrap(),
            "--signals-routes",
            routes.to_str().unwrap(),
            "--signals-speed",
            "20",
            "--sumo",
            sumo.to_str().unwrap(),
        ],
    );
    // A reader may watch, not dispatch.
    let (status, _) = server.post(
        "/api/v1/principals",
        "application/json",
        br#"{"name": "transport_viewer", "department": "transport", "role": "reader"}"#,
    );
    assert_eq!(status, 201);
    let (_, text) = server.post(
        "/api/v1/principals/transport_viewer/tokens",
        "application/json",
        b"{}",
    );
    let reader: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut as_reader = agent().post(&format!("{}/api/v1/signals/emergency", server.base));
    as_reader = as_reader.header(
        "Authorization",
        &format!("Bearer {}", reader["token"].as_str().unwrap()),
    );
    let refused = as_reader
        .header("Content-Type", "application/json")
        .send(br#"{"route": ["bottom3D0", "D0D1"]}"#.as_slice())
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    // A route SUMO does not know is refused, naming the edge.
    let (status, text) = server.post(
        "/api/v1/signals/emergency",
        "application/json",
        br#"{"route": ["no_such_road", "D0D1"]}"#,
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("no_such_road"), "{text}");
    // Across the grid: bottom to left, through four lights.
    let route = r#"{"route": ["bottom3D0", "D0D1", "D1C1", "C1B1", "B1A1", "A1left1"]}"#;
    let (status, text) = server.post(
        "/api/v1/signals/emergency",
        "application/json",
        route.as_bytes(),
    );
    assert_eq!(status, 202, "{text}");
    let run: serde_json::Value = serde_json::from_str(&text).unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let row = loop {
        let rows = server.sql(&format!(
            "SELECT run_id, stops, travel_s, requested_by FROM signals.emergency_runs WHERE run_id = '{run_id}'"
        ));
        if let Some(row) = rows.as_array().unwrap().first() {
            break row.clone();
        }
        assert!(started.elapsed().as_secs() < 90, "the run never arrived");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(row["stops"], 0, "{row}");
    assert_eq!(row["requested_by"], "transport_ops");
    assert!(row["travel_s"].as_f64().unwrap() > 30.0, "{row}");
    let reasons = server.sql(&format!(
        "SELECT count(*) AS n FROM signals.decisions WHERE reason = 'emergency vehicle {run_id}'"
    ));
    assert!(reasons[0]["n"].as_i64().unwrap() > 0, "{reasons}");
    let policy = server.sql(
        "SELECT count(*) AS n, min(length(state)) AS shortest FROM signals.decisions WHERE reason LIKE 'policy:%'",
    );
    assert!(policy[0]["n"].as_i64().unwrap() > 10, "{policy}");
    // Each decision names the state it shows, a signal for every link.
    assert!(policy[0]["shortest"].as_i64().unwrap() >= 8, "{policy}");
    // The dispatch is a data call on record.
    let (status, text) = server.get(
        "/api/v1/datasets/signals.emergency_runs/audit",
        Some(&server.admin),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("POST /api/v1/signals/emergency"), "{text}");
}

/// `citybrain policy check`: the shipped policies pass; a broken file fails with every
/// problem named by file, line and column.
#[test]
fn policy_check_passes_the_shipped_policies_and_names_every_problem() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let policies = root.join("../rules/policies");
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["policy", "check"])
        .arg(&policies)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("0 problems") && printed.contains("0 failed"),
        "{printed}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.policy");
    std::fs::write(
        &bad,
        "policy bad\ntitle \"B\"\ndepartment market\nbasis \"none\"\neffective 2025-01-01 to 2025-12-31\ninput paid: money\nclause early: paid < 2025-06-01\namount: paid * 10%\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        printed.contains("bad.policy:7:20: cannot order money against date"),
        "{printed}"
    );
    assert!(
        printed.contains("bad.policy:8:14: the amount may fall between fen"),
        "{printed}"
    );
}

/// `citybrain policy explain`: one enterprise against every shipped policy, clause by clause,
/// amounts in yuan, exceptions named; a fact of the wrong type names the field.
#[test]
fn policy_explain_shows_each_decision_clause_by_clause() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let policies = root.join("../rules/policies");
    let dir = tempfile::tempdir().unwrap();
    let facts = dir.path().join("firm.json");
    std::fs::write(
        &facts,
        r#"{"district": "西湖区", "employees": 48, "high_tech": true, "rd_expense": "1234567.89",
            "industry": "tea", "tea_kg_from_farmers": 180000, "small_business": true,
            "rent_paid": "240000.00", "tax_paid": "950000.00", "credit_rating": "A"}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["policy", "explain"])
        .arg(&policies)
        .arg(&facts)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains(
            "✓ eligible: ¥185,185.18 (exception high_tech_rate; the base rule gave ¥123,456.78)"
        ),
        "{printed}"
    );
    assert!(
        printed.contains("✗ large_contributor: tax_paid = ¥950,000.00, threshold = ¥10,000,000.00"),
        "{printed}"
    );
    assert!(
        printed.contains("? not assessed: the facts lack"),
        "{printed}"
    );
    assert!(printed.contains("20 policies: eligible for"), "{printed}");
    std::fs::write(&facts, r#"{"district": "西湖区", "employees": "many"}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["policy", "explain"])
        .arg(&policies)
        .arg(&facts)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("employees: \"many\" is not a whole number"),
        "{err}"
    );
}

/// `citybrain policy gen-economy` and `policy run`: a deterministic economy, every shipped
/// policy decided over it with the fast evaluator, the decisions written out and summed.
#[test]
fn policy_run_decides_every_policy_over_a_generated_economy() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let policies = root.join("../rules/policies");
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_citybrain");
    let table = dir.path().join("economy.csv");
    let again = dir.path().join("again.csv");
    for path in [&table, &again] {
        let out = Command::new(bin)
            .args(["policy", "gen-economy", "--scale", "0.002", "--out"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    // Deterministic for a seed.
    assert_eq!(
        std::fs::read(&table).unwrap(),
        std::fs::read(&again).unwrap()
    );
    let decisions = dir.path().join("decisions.ndjson");
    let out = Command::new(bin)
        .args(["policy", "run"])
        .arg(&policies)
        .arg(&table)
        .arg("--out")
        .arg(&decisions)
        .arg("--summary")
        .arg(dir.path().join("summary.json"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    // Every shipped policy compiles for the fast evaluator.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("batch evaluator"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("20 policies × 1356 enterprises"),
        "{printed}"
    );
    // The summary's count of decisions to pay is the file's.
    let written = std::fs::read_to_string(&decisions).unwrap().lines().count();
    let summary = printed.lines().last().unwrap();
    let counted: usize = summary
        .split("enterprises: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(written, counted, "{summary}");
    assert!(counted > 100, "{summary}");
    // The JSON summary agrees with the file, policy by policy.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    let per_policy = json["policies"].as_array().unwrap();
    assert_eq!(per_policy.len(), 20);
    let eligible: u64 = per_policy
        .iter()
        .map(|p| p["eligible"].as_u64().unwrap())
        .sum();
    assert_eq!(eligible as usize, written);
    // A bad cell is named by row and column.
    let text = std::fs::read_to_string(&table).unwrap();
    let broken = text.replacen(",18,", ",eighteen,", 1);
    assert_ne!(broken, text);
    std::fs::write(&table, broken).unwrap();
    let out = Command::new(bin)
        .args(["policy", "run"])
        .arg(&policies)
        .arg(&table)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not a whole number"), "{err}");
    assert!(
        err.contains(", employees:") || err.contains(", trainees:") || err.contains(", laid_off:"),
        "{err}"
    );
}

/// A department's admin token (the department and principal created if need be), issued
/// with the platform admin's token.
/// Issue 6: a payout run over the hub's enterprises, killed (SIGKILL) at random points and
/// run again, pays every eligible enterprise exactly once and exactly what the dry run
/// over the same economy says; a further run pays nobody.
#[test]
fn a_payout_run_killed_at_random_points_pays_everyone_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_citybrain");
    let data = dir.path().join("data");
    let (yuan_csv, fen_csv) = (dir.path().join("yuan.csv"), dir.path().join("fen.csv"));
    for (path, fen) in [(&yuan_csv, false), (&fen_csv, true)] {
        let mut cmd = Command::new(bin);
        cmd.args(["policy", "gen-economy", "--scale", "0.01", "--out"])
            .arg(path);
        if fen {
            cmd.arg("--fen");
        }
        assert!(cmd.output().unwrap().status.success());
    }
    // What a complete run must pay: the dry run over the same economy.
    let expected_file = dir.path().join("expected.ndjson");
    let policies = format!("{}/../rules/policies", manifest_dir());
    let out = Command::new(bin)
        .args(["policy", "run", &policies])
        .arg(&yuan_csv)
        .arg("--out")
        .arg(&expected_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(&expected_file).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["policy"].as_str().unwrap().to_string(),
            v["enterprise_id"].as_str().unwrap().to_string(),
        );
        assert!(
            expected
                .insert(key, v["paid_fen"].as_i64().unwrap())
                .is_none()
        );
    }
    assert!(expected.len() > 5_000, "{} payouts", expected.len());

    let mut server = start(&data, &[]);
    let market = department_admin(&server, "market");
    server.token = market.clone();
    let (status, text) = server.post(
        "/api/v1/datasets/market.enterprises/records",
        "text/csv",
        &std::fs::read(&fen_csv).unwrap(),
    );
    assert_eq!(status, 200, "{text}");
    let run = |base: &str, token: &str| {
        agent()
            .post(&format!("{base}/api/v1/policy/runs"))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(br#"{"run": "2025-annual", "purpose": "test payouts"}"#.as_slice())
    };
    // Kill the server in the middle of runs in progress, restarting it each time, until
    // three kills have landed mid-write. Each kill waits on the run's own watermark (the
    // payouts stored so far) to pass a pseudo-random number of fsynced batches, not on the
    // clock: a loaded machine slows the run and the kill alike.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut partial, mut before) = (0, 0);
    for round in 0..40 {
        if partial >= 3 || before == expected.len() {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let batches = 1 + (seed % 3) as usize;
        let target = (before + batches * 2_000).min(expected.len() - 1);
        let (base, token) = (server.base.clone(), market.clone());
        let caller = std::thread::spawn(move || {
            let _ = run(&base, &token);
        });
        let mut seen = before;
        while seen < target && !caller.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(2));
            seen = server.count("policy.payouts") as usize;
        }
        // A few milliseconds more, so some kills land inside the next batch's write.
        std::thread::sleep(std::time::Duration::from_millis((seed >> 8) % 12));
        server.kill9();
        caller.join().unwrap();
        server = start(&data, &[]);
        server.token = market.clone();
        let stored = server.count("policy.payouts") as usize;
        assert!(
            stored >= before,
            "round {round}: payouts lost ({stored} < {before})"
        );
        assert!(
            stored <= expected.len(),
            "round {round}: {stored} payouts, more than due"
        );
        if stored > before && stored < expected.len() {
            partial += 1;
        }
        println!(
            "kill {round} after {seen} seen (target {target}): {stored} of {} payouts stored",
            expected.len()
        );
        before = stored;
    }
    assert!(partial > 0, "no kill landed in the middle of a run");
    // Run to the end: it pays who is left; then once more: nobody.
    let finish = |server: &Server| -> serde_json::Value {
        let (status, text) = server.post(
            "/api/v1/policy/runs",
            "application/json",
            br#"{"run": "2025-annual"}"#,
        );
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let report = finish(&server);
    assert_eq!(
        report["paid_now"].as_u64().unwrap() as usize,
        expected.len() - before,
        "{report}"
    );
    assert_eq!(
        report["already_paid"].as_u64().unwrap() as usize,
        before,
        "{report}"
    );
    let again = finish(&server);
    assert_eq!(again["paid_now"], 0, "{again}");
    // Every payout once, each exactly as the dry run says.
    let rows = server.sql(
        "SELECT policy, enterprise_id, paid, payout_id FROM policy.payouts ORDER BY payout_id",
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        assert!(
            seen.insert(r["payout_id"].as_str().unwrap().to_string()),
            "{r} twice"
        );
        let key = (
            r["policy"].as_str().unwrap().to_string(),
            r["enterprise_id"].as_str().unwrap().to_string(),
        );
        assert_eq!(
            Some(&r["paid"].as_i64().unwrap()),
            expected.get(&key),
            "{r}"
        );
    }
    // One enterprise explained over the API: the decision the run paid, clause by clause.
    let ((_, enterprise), paid) = expected
        .iter()
        .find(|((p, _), _)| p == "job_retention")
        .unwrap();
    let body = serde_json::json!({"enterprise_id": enterprise}).to_string();
    let (status, text) = server.post(
        "/api/v1/policy/explain",
        "application/json",
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let explained: serde_json::Value = serde_json::from_str(&text).unwrap();
    let decisions = explained["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 20);
    let d = decisions
        .iter()
        .find(|d| d["policy"] == "job_retention")
        .unwrap();
    assert_eq!(d["eligible"], true, "{d}");
    assert_eq!(d["amount_fen"].as_i64(), Some(*paid), "{d}");
    assert!(d["clauses"].as_array().unwrap().len() >= 3, "{d}");
    let (status, _) = server.post(
        "/api/v1/policy/explain",
        "application/json",
        br#"{"enterprise_id": "no-such-firm"}"#,
    );
    assert_eq!(status, 404);
    // A run's name is checked; the run was audited.
    let (status, _) = server.post(
        "/api/v1/policy/runs",
        "application/json",
        b"{\"run\": \"x y\"}",
    );
    assert_eq!(status, 400);
    let audit = server.get("/api/v1/datasets/policy.payouts/audit", Some(&market));
    assert_eq!(audit.0, 200, "{}", audit.1);
    assert!(audit.1.contains("policy/runs"), "{}", audit.1);
    assert!(server.stop().success());
}

/// Issue 6: a policy's inputs may join and aggregate other datasets: here the kilograms of
/// tea each firm bought from farmers, summed from purchase records, decide the tea subsidy.
#[test]
fn a_payout_run_takes_its_facts_from_sql_joining_other_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_citybrain");
    let csv = dir.path().join("fen.csv");
    let out = Command::new(bin)
        .args([
            "policy",
            "gen-economy",
            "--scale",
            "0.002",
            "--fen",
            "--out",
        ])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let industry = header.iter().position(|h| *h == "industry").unwrap();
    let tea: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[industry] == "tea")
        .map(|f| f[0].to_string())
        .collect();
    assert!(tea.len() >= 2, "{} tea firms", tea.len());
    let mut server = start(&dir.path().join("data"), &[]);
    server.token = department_admin(&server, "market");
    let (status, body) = server.post(
        "/api/v1/datasets/market.enterprises/records",
        "text/csv",
        text.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let def = br#"{"name": "market.tea_purchases", "owner": "market", "sharing": "conditional",
        "description": "Tea bought from farmers, one row per purchase",
        "fields": [{"name": "enterprise_id", "type": "string"},
                   {"name": "farmer_id", "type": "string", "class": "personal"},
                   {"name": "kg", "type": "int"}]}"#;
    let (status, body) = server.post("/api/v1/datasets", "application/json", def);
    assert_eq!(status, 201, "{body}");
    // The first firm bought 60,000 kg from three farmers; the second 10,000 kg.
    let purchases = format!(
        "{{\"enterprise_id\":\"{a}\",\"farmer_id\":\"330102199001011234\",\"kg\":25000}}\n\
         {{\"enterprise_id\":\"{a}\",\"farmer_id\":\"330102199202022345\",\"kg\":20000}}\n\
         {{\"enterprise_id\":\"{a}\",\"farmer_id\":\"330102199303033456\",\"kg\":15000}}\n\
         {{\"enterprise_id\":\"{b}\",\"farmer_id\":\"330102199404044567\",\"kg\":10000}}\n",
        a = tea[0],
        b = tea[1]
    );
    let (status, body) = server.post(
        "/api/v1/datasets/market.tea_purchases/records",
        "application/x-ndjson",
        purchases.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let columns: Vec<String> = header
        .iter()
        .filter(|h| **h != "tea_kg_from_farmers")
        .map(|h| format!("e.{h}"))
        .collect();
    let inputs = format!(
        "SELECT {}, coalesce(t.kg, 0) AS tea_kg_from_farmers FROM market.enterprises e \
         LEFT JOIN (SELECT enterprise_id, sum(kg) AS kg FROM market.tea_purchases GROUP BY enterprise_id) t \
         ON e.enterprise_id = t.enterprise_id",
        columns.join(", ")
    );
    let request = serde_json::json!({"run": "2025-tea", "inputs": inputs}).to_string();
    let (status, body) = server.post(
        "/api/v1/policy/runs",
        "application/json",
        request.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let paid = server.sql(
        "SELECT enterprise_id, paid FROM policy.payouts WHERE policy = 'tea_purchase' ORDER BY enterprise_id",
    );
    // 60,000 kg at 0.20 yuan: 12,000 yuan; 10,000 kg is under the 50,000 kg minimum.
    assert_eq!(
        paid,
        serde_json::json!([{"enterprise_id": tea[0], "paid": 1_200_000}]),
        "{body}"
    );
    // The same facts explain the decision.
    let request = serde_json::json!({"enterprise_id": tea[1], "inputs": inputs}).to_string();
    let (status, body) = server.post(
        "/api/v1/policy/explain",
        "application/json",
        request.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let explained: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tea_decision = explained["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["policy"] == "tea_purchase")
        .unwrap()
        .clone();
    assert_eq!(tea_decision["eligible"], false, "{tea_decision}");
    assert!(tea_decision.to_string().contains("10000"), "{tea_decision}");
    assert!(server.stop().success());
}

/// `citybrain ... | head`: a reader that stops early ends the command quietly, without a
/// panic message.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_citybrain");
    let policies = dir.path().join("policies");
    let out = Command::new(bin)
        .args(["policy", "variants"])
        .arg(format!("{}/../rules/policies", manifest_dir()))
        .args(["--count", "400", "--out"])
        .arg(&policies)
        .output()
        .unwrap();
    assert!(out.status.success());
    let facts = dir.path().join("facts.json");
    std::fs::write(
        &facts,
        r#"{"district": "西湖区", "industry": "tea", "employees": 25, "credit_rating": "A"}"#,
    )
    .unwrap();
    // Far more than a pipe holds (about 64 KiB), and the reader takes only the start.
    let mut child = Command::new(bin)
        .args(["policy", "explain"])
        .arg(&policies)
        .arg(&facts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut start = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut start).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

/// Reads of 25 vehicles over one link: each passes `from` in the first minutes after
/// `minute` (minutes after midnight, local time, 2026-11-23) and `to` `travel_s` later.
fn link_traversals(from: i64, to: i64, minute: u32, travel_s: f64, tag: &str) -> Vec<u8> {
    let mut reads = Vec::new();
    for i in 0..25u32 {
        let start = minute * 60 + i * 4;
        for (checkpoint, t) in [(from, start as f64), (to, start as f64 + travel_s)] {
            reads.push((t.round() as u32, checkpoint, i));
        }
    }
    // In time order, as cameras send them (a read over a minute late is dropped).
    reads.sort();
    let mut body = Vec::new();
    for (t, checkpoint, i) in reads {
        body.extend_from_slice(
            format!(
                "{{\"ts\":\"2026-11-23T{:02}:{:02}:{:02}+08:00\",\"checkpoint_id\":{checkpoint},\"plate\":\"浙C{tag}{i:03}\"}}\n",
                t / 3600,
                t / 60 % 60,
                t % 60
            )
            .as_bytes(),
        );
    }
    body
}

/// Waits until `GET /api/v1/alerts` satisfies `done`.
fn alerts_until(server: &Server, done: impl Fn(&[serde_json::Value]) -> bool) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let (status, text) = server.get("/api/v1/alerts", Some(&server.token));
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if done(v["alerts"].as_array().unwrap()) {
            return v;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "alerts never as expected: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn a_link_slow_for_half_an_hour_opens_one_congestion_alert_that_a_crash_neither_loses_nor_repeats()
{
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--scale", "0.05"]);
    let link = server.sql(
        "SELECT link_id, from_checkpoint, to_checkpoint, freeflow_s FROM transport.links \
         WHERE freeflow_s BETWEEN 30 AND 120 ORDER BY link_id LIMIT 1",
    );
    let (id, from, to, freeflow) = (
        link[0]["link_id"].as_i64().unwrap(),
        link[0]["from_checkpoint"].as_i64().unwrap(),
        link[0]["to_checkpoint"].as_i64().unwrap(),
        link[0]["freeflow_s"].as_f64().unwrap(),
    );
    // A link's quarter of an hour closes once no traversal that started in it can still
    // arrive: 8 free-flow times of the longest link after its end (and a minute's lateness).
    let longest = server.sql("SELECT max(freeflow_s) AS s FROM transport.links")[0]["s"]
        .as_f64()
        .unwrap();
    let gap = ((longest * 8.0 / 60.0).ceil() as u32 + 15 + 2).div_ceil(15) * 15;
    let path = "/api/v1/datasets/transport.anpr_passages/records";
    let post = |body: Vec<u8>| {
        let (status, text) = server.post(path, "application/x-ndjson", &body);
        assert_eq!(status, 200, "{text}");
    };
    let slow = 3.0 * freeflow;
    // One slow quarter of an hour (three times free flow) is not yet an alert.
    post(link_traversals(from, to, 6 * 60, slow, "a"));
    post(link_traversals(from, to, 6 * 60 + 15, freeflow, "b"));
    let flush1 = 6 * 60 + 30 + gap;
    post(link_traversals(from, to, flush1, freeflow, "c"));
    let closed = sql_until(
        &server,
        &format!(
            "SELECT count(*) AS n FROM indices.link_travel WHERE link_id = {id} AND bin >= '2026-11-22T22:00:00Z'"
        ),
        |v| v[0]["n"].as_i64() >= Some(2),
    );
    assert_eq!(
        closed[0]["n"], 2,
        "the two quarters before the read at minute {flush1} are closed"
    );
    let (_, text) = server.get("/api/v1/alerts", Some(&server.token));
    assert!(!text.contains(&format!("\"subject_id\":{id},")), "{text}");
    // Two in a row are: the alert opens when the second quarter closes.
    let first_slow = (flush1 + 15).div_ceil(15) * 15;
    post(link_traversals(from, to, first_slow, slow, "d"));
    post(link_traversals(from, to, first_slow + 15, slow, "e"));
    let flush2 = first_slow + 30 + gap;
    post(link_traversals(from, to, flush2, freeflow, "f"));
    let v = alerts_until(&server, |alerts| {
        alerts
            .iter()
            .any(|a| a["kind"] == "congestion" && a["subject_id"] == id)
    });
    let alert = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["subject_id"] == id)
        .unwrap()
        .clone();
    assert!(alert["value"].as_f64().unwrap() >= 2.0, "{alert}");
    assert!(
        alert["loc"]["lon"].as_f64().is_some(),
        "an alert has a place: {alert}"
    );
    let since = first_slow as i64 * 60 - 8 * 3600; // local minutes to UTC seconds
    assert_eq!(
        alert["since"].as_str().unwrap(),
        format!(
            "2026-11-22T{:02}:{:02}:00Z",
            since.rem_euclid(86400) / 3600,
            since.rem_euclid(3600) / 60
        ),
        "{alert}"
    );
    let alert_id = alert["alert_id"].as_str().unwrap().to_string();
    let rows_of = |server: &Server| {
        server.sql(&format!(
            "SELECT state, count(*) AS n FROM alerts.events WHERE alert_id = '{alert_id}' \
             GROUP BY state ORDER BY state"
        ))
    };
    assert_eq!(
        rows_of(&server),
        serde_json::json!([{"state": "open", "n": 1}])
    );

    // A crash: the restarted hub rebuilds the board from the stored passages, still shows
    // the alert, and stores nothing twice.
    let token = server.token.clone();
    server.kill9();
    let mut server = start(dir.path(), &["--scale", "0.05"]);
    server.token = token;
    // Caught up to where the feed stood at the crash: the board is rebuilt.
    server.caught_up("indices");
    let open_now = |server: &Server| {
        let (_, text) = server.get("/api/v1/alerts", Some(&server.token));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alert_id"] == alert_id.as_str())
    };
    assert!(open_now(&server), "the alert is open after the restart");
    // Back to free flow: the quarter of the last reads closes it, once.
    let (status, text) = server.post(
        path,
        "application/x-ndjson",
        &link_traversals(from, to, flush2 + 15 + gap, freeflow, "g"),
    );
    assert_eq!(status, 200, "{text}");
    let position = serde_json::from_str::<serde_json::Value>(&text).unwrap()["position"]
        .as_i64()
        .unwrap();
    // Applied means its closed bins, and the alert changes they make, are stored.
    server.applied("indices", &[(PASSAGES.into(), position)]);
    assert!(!open_now(&server), "the alert closed");
    let rows = server.sql(&format!(
        "SELECT count(*) AS n FROM alerts.events WHERE alert_id = '{alert_id}'"
    ));
    assert_eq!(rows[0]["n"], 2, "{rows}");
    assert_eq!(
        rows_of(&server),
        serde_json::json!([{"state": "closed", "n": 1}, {"state": "open", "n": 1}])
    );
    let dupes = server.sql(
        "SELECT alert_id, state FROM alerts.events GROUP BY alert_id, state HAVING count(*) > 1",
    );
    assert_eq!(dupes, serde_json::json!([]));
}

#[test]
fn indices_over_a_recorded_day_are_the_same_on_one_thread_or_two() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_citybrain");
    let city = dir.path().join("city");
    let gen_out = Command::new(bin)
        .args([
            "gen",
            "--seed",
            "5",
            "--scale",
            "0.25",
            "--misread-rate",
            "0.005",
            "--out",
        ])
        .arg(&city)
        .output()
        .unwrap();
    assert!(
        gen_out.status.success(),
        "{}",
        String::from_utf8_lossy(&gen_out.stderr)
    );
    let passages = city.join("anpr_passages.ndjson");
    let lines = std::fs::read_to_string(&passages).unwrap().lines().count() as u64;
    let run = |threads: &str| {
        let out = dir.path().join(format!("indices-{threads}"));
        let result = Command::new(bin)
            .args(["indices", "traffic", "--passages"])
            .arg(&passages)
            .arg("--links")
            .arg(city.join("links.ndjson"))
            .arg("--out")
            .arg(&out)
            .args(["--threads", threads])
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        (out, summary)
    };
    let (one, summary) = run("1");
    let (two, summary_two) = run("2");
    assert_eq!(summary["passages"], lines);
    assert_eq!(summary["census"], summary_two["census"]);
    assert!(summary["link_bins"].as_u64().unwrap() > 100, "{summary}");
    for index in [
        "census_daily",
        "census_hourly",
        "census_so_far",
        "on_road",
        "link_travel",
        "delay",
        "ranking",
    ] {
        let file = format!("{index}.parquet");
        let (a, b) = (
            std::fs::read(one.join(&file)).unwrap(),
            std::fs::read(two.join(&file)).unwrap(),
        );
        assert!(a.len() > 100, "{file} is empty");
        assert!(a == b, "{file} differs between one thread and two");
    }
}
