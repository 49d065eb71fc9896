//! The PostgreSQL wire protocol with the clients a city's analysts use: psql, psycopg (text
//! and binary), asyncpg (prepared, binary), SQLAlchemy with pandas, and Node's `pg`, each
//! running a scripted session against a real server over the demo city. Every answer must
//! equal what `POST /api/v1/sql` gives the same principal: the dataset list, a query with
//! parameters (an integer and a timestamp), money and dates, and a masked reader's plates,
//! which must be masked on the wire too. The clients come from PyPI and npm
//! (scripts/install-pg-clients, run by scripts/test).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

mod common;
use common::*;

fn http_sql(server: &Server, token: &str, sql: &str) -> Vec<Value> {
    let body = json!({"sql": sql, "purpose": "pgwire test"}).to_string();
    let response = agent()
        .post(&format!("{}/api/v1/sql", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap();
    assert_eq!(status, 200, "{sql}: {text}");
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

/// A value of the HTTP API's JSON as the client scripts report it: timestamps as
/// microseconds, dates tagged.
fn norm_http(value: &Value) -> Value {
    let Value::String(text) = value else {
        return value.clone();
    };
    let is_date = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
    if is_date {
        return json!({ "date": text });
    }
    if text.len() >= 19
        && text.as_bytes()[10] == b'T'
        && text.as_bytes()[13] == b':'
        && let Ok(nanos) = arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text)
    {
        return json!({ "ts": nanos / 1_000 });
    }
    value.clone()
}

/// Rows as the clients report them, compared column by column (the HTTP API's JSON leaves
/// out null fields).
fn assert_same_rows(client: &str, query: &str, got: &Value, http: &[Value]) {
    let got = got
        .as_array()
        .unwrap_or_else(|| panic!("{client} {query}: {got}"));
    assert_eq!(
        got.len(),
        http.len(),
        "{client} {query}: row counts differ\n{got:?}\n{http:?}"
    );
    for (i, (row, reference)) in got.iter().zip(http).enumerate() {
        let row = row.as_object().unwrap();
        for column in reference.as_object().unwrap().keys() {
            assert!(
                row.contains_key(column),
                "{client} {query} row {i}: no column {column} over the wire"
            );
        }
        for (column, value) in row {
            let expected = reference.get(column).map_or(Value::Null, norm_http);
            let same = match (value.as_f64(), expected.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                _ => *value == expected,
            };
            assert!(
                same,
                "{client} {query} row {i} column {column}: {value} over the wire, {expected} over HTTP"
            );
        }
    }
}

#[test]
fn psql_psycopg_asyncpg_sqlalchemy_and_node_pg_read_what_http_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--scale", "0.05", "--pg-listen", "127.0.0.1:0"],
    );
    let port = pg_port(&server);
    let cockpit = std::fs::read_to_string(dir.path().join("cockpit.token")).unwrap();
    let market = std::fs::read_to_string(dir.path().join("market.token")).unwrap();
    let owner = server.token.clone();

    // The references, over HTTP.
    let busiest = http_sql(
        &server,
        &owner,
        "SELECT checkpoint_id, count(*) AS n FROM transport.anpr_passages GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    );
    let checkpoint = busiest[0]["checkpoint_id"].as_i64().unwrap();
    let since = http_sql(
        &server,
        &owner,
        &format!(
            "SELECT min(ts) AS t FROM transport.anpr_passages WHERE checkpoint_id = {checkpoint}"
        ),
    )[0]["t"]
        .as_str()
        .unwrap()
        .to_string();
    let passages = format!(
        "SELECT ts, checkpoint_id, plate, speed_kmh FROM transport.anpr_passages WHERE checkpoint_id = {checkpoint} AND ts >= '{since}' ORDER BY ts, plate LIMIT 40"
    );
    let passages_wire = "SELECT ts, checkpoint_id, plate, speed_kmh FROM transport.anpr_passages WHERE checkpoint_id = $1 AND ts >= $2 ORDER BY ts, plate LIMIT 40";
    let payouts = "SELECT payout_id, period_start, paid, qualified, decided_at FROM policy.payouts ORDER BY payout_id LIMIT 25";
    let per_policy =
        "SELECT policy, count(*) AS n, sum(paid) AS paid FROM policy.payouts GROUP BY 1 ORDER BY 1";
    let tables_http = "SELECT table_schema AS nspname, table_name AS relname FROM information_schema.tables WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2";
    let tables_wire = "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' ORDER BY 1, 2";
    let params = json!([{"int": checkpoint}, {"ts": since}]);
    // Every passage, longer than the wire holds before it streams (citybrain_sql's
    // HOLD_ROWS): read row by row by the clients that can.
    let all_passages = "SELECT ts, checkpoint_id, plate, speed_kmh FROM transport.anpr_passages ORDER BY ts, checkpoint_id, plate";

    let mut references = Vec::new();
    let mut sessions = Vec::new();
    for (user, token, queries) in [
        (
            "transport_ops",
            &owner,
            vec![
                ("passages", passages.as_str(), passages_wire, params.clone()),
                ("tables", tables_http, tables_wire, json!([])),
            ],
        ),
        (
            "cockpit",
            &cockpit,
            vec![
                ("passages", passages.as_str(), passages_wire, params.clone()),
                ("tables", tables_http, tables_wire, json!([])),
                ("all_passages", all_passages, all_passages, json!([])),
            ],
        ),
        (
            "market_admin",
            &market,
            vec![
                ("payouts", payouts, payouts, json!([])),
                ("per_policy", per_policy, per_policy, json!([])),
            ],
        ),
    ] {
        let mut spec_queries = Vec::new();
        for (name, http, wire, params) in queries {
            let rows = http_sql(&server, token, http);
            assert!(!rows.is_empty(), "{user} {name}: the demo city has rows");
            if name == "all_passages" {
                assert!(
                    rows.len() > citybrain_sql::HOLD_ROWS,
                    "{} passages: too few to stream",
                    rows.len()
                );
            }
            references.push((user, name, rows));
            let stream = name == "all_passages";
            spec_queries
                .push(json!({"name": name, "sql": wire, "params": params, "stream": stream}));
        }
        sessions.push(json!({"user": user, "password": token.trim(), "queries": spec_queries}));
    }
    // What `user` read over HTTP as `name`.
    let reference = |user: &str, name: &str| -> &Vec<Value> {
        &references
            .iter()
            .find(|(u, n, _)| *u == user && *n == name)
            .unwrap()
            .2
    };
    // The masked reader sees other plates than the owner, over HTTP as over the wire.
    let plates = |user: &str| -> BTreeSet<String> {
        reference(user, "passages")
            .iter()
            .map(|r| r["plate"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        plates("cockpit").is_disjoint(&plates("transport_ops")),
        "the cockpit reader's plates are masked"
    );

    let spec = json!({"host": "127.0.0.1", "port": port, "sessions": sessions});
    let spec_path = dir.path().join("pg-spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let data = format!("{}/tests/data/pg", manifest_dir());

    let python = std::env::var("CITYBRAIN_PG_PYTHON").unwrap_or_else(|_| {
        panic!("CITYBRAIN_PG_PYTHON is not set: run the tests with scripts/test, which installs the clients (scripts/install-pg-clients)")
    });
    let output = Command::new(&python)
        .arg(format!("{data}/session.py"))
        .arg(&spec_path)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the Python clients failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut results: serde_json::Map<String, Value> =
        serde_json::from_slice(&output.stdout).unwrap();
    let node_modules = std::env::var("CITYBRAIN_PG_NODE_MODULES").unwrap();
    let output = Command::new("node")
        .arg(format!("{data}/session.js"))
        .arg(&spec_path)
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "node's pg failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let node: serde_json::Map<String, Value> = serde_json::from_slice(&output.stdout).unwrap();
    results.extend(node);

    for client in [
        "psycopg-text",
        "psycopg-binary",
        "asyncpg",
        "sqlalchemy-pandas",
        "node-pg",
    ] {
        for (user, name, http) in &references {
            let got = &results[client][*user][*name];
            assert_same_rows(client, &format!("{user}/{name}"), got, http);
        }
    }

    // psql: the tables a reader may read with \dt, a count, a refused write, a bad login.
    let psql = |user: &str, password: &str, command: &str| {
        Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(format!(
                "host=127.0.0.1 port={port} user={user} dbname=citybrain sslmode=disable"
            ))
            .args(["-c", command])
            .env("PGPASSWORD", password.trim())
            .output()
            .expect("psql runs (Debian: postgresql-client)")
    };
    let listed = psql("cockpit", &cockpit, "\\dt");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && text.contains("transport|anpr_passages|table"),
        "psql \\dt: {text}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    // psql's \d NAME and \d+ NAME describe a table by its columns (psql 15's catalog
    // queries, rewritten by the wire: crates/pg/src/psql.rs).
    for describe in [
        "\\d transport.anpr_passages",
        "\\d+ transport.anpr_passages",
    ] {
        let described = psql("cockpit", &cockpit, describe);
        let text = String::from_utf8_lossy(&described.stdout);
        assert!(
            described.status.success()
                && text.contains("plate|text|")
                && text.contains("|timestamp with time zone|"),
            "psql {describe}: {text}{}",
            String::from_utf8_lossy(&described.stderr)
        );
    }
    // SQLAlchemy lists schemas with `LIKE ... ESCAPE '/'`.
    let escaped = psql(
        "cockpit",
        &cockpit,
        "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname LIKE 'pg/_' || '%' ESCAPE '/'",
    );
    assert_eq!(
        String::from_utf8_lossy(&escaped.stdout).trim(),
        "pg_catalog",
        "{}",
        String::from_utf8_lossy(&escaped.stderr)
    );
    let missing = psql("cockpit", &cockpit, "\\d transport.no_such_table");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("Did not find any relation"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let count = psql(
        "cockpit",
        &cockpit,
        "SELECT count(*) FROM transport.anpr_passages",
    );
    let http_count = http_sql(
        &server,
        &cockpit,
        "SELECT count(*) AS n FROM transport.anpr_passages",
    )[0]["n"]
        .as_i64()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        http_count.to_string()
    );
    // Several long statements in one simple query: each answers in full. (Streaming all of
    // them at once would hold a slot per statement until the client reads, and the third
    // would wait out the timeout for one of the server's two.)
    let triple = "SELECT p.plate FROM transport.anpr_passages p CROSS JOIN generate_series(1, 3) g";
    let many = psql(
        "cockpit",
        &cockpit,
        &format!("{triple}; {triple}; {triple}; SELECT 'end' AS mark"),
    );
    let text = String::from_utf8_lossy(&many.stdout);
    assert!(
        many.status.success(),
        "{}",
        String::from_utf8_lossy(&many.stderr)
    );
    assert_eq!(text.lines().count() as i64, 9 * http_count + 1);
    assert_eq!(text.lines().last(), Some("end"));
    let write = psql("cockpit", &cockpit, "DELETE FROM transport.anpr_passages");
    let error = String::from_utf8_lossy(&write.stderr);
    assert!(
        !write.status.success() && error.contains("read-only"),
        "a write is refused: {error}"
    );
    let wrong = psql("transport_ops", &cockpit, "SELECT 1");
    let error = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && error.contains("password authentication failed"),
        "another principal's token is refused: {error}"
    );

    // Wire statements are in the owner's audit trail as the principal's SQL calls, with
    // the purpose the session set.
    let (status, text) = server.get(
        "/api/v1/datasets/transport.anpr_passages/audit?limit=1000",
        Some(&owner),
    );
    assert_eq!(status, 200, "{text}");
    let calls = text.matches("\"pgwire test\"").count();
    assert!(
        text.contains("\"cockpit\"") && calls >= 5,
        "the wire's reads are audited with their purpose: {calls} calls in {text}"
    );
    // Every passage went out streamed: recorded before its first row, then closed with the
    // total, once per client that read it (psycopg text and binary, asyncpg, SQLAlchemy,
    // node-pg).
    let total = reference("cockpit", "all_passages").len();
    let audit: Value = serde_json::from_str(&text).unwrap();
    let closing = audit["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("the audit answer: {text}"))
        .iter()
        .filter(|c| c["closes"].is_u64() && c["rows"] == json!(total))
        .count();
    assert_eq!(
        closing, 5,
        "closing records of the streamed statement in {text}"
    );

    // Over HTTP, asked for with `stream`, a long result is sent as it is produced
    // (chunked, no length) and a short one in one piece with its length; read whole, each
    // is the same rows, in JSON, CSV and Arrow. Without `stream` it is sent whole.
    let http = |sql: &str, format: &str| {
        let stream = format != "whole";
        let format = if stream { format } else { "json" };
        let body =
            json!({"sql": sql, "purpose": "pgwire test", "format": format, "stream": stream})
                .to_string();
        let mut response = agent()
            .post(&format!("{}/api/v1/sql", server.base))
            .header("Authorization", &format!("Bearer {}", cockpit.trim()))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{sql} as {format}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let streamed = header("content-length").is_none()
            && header("transfer-encoding").as_deref() == Some("chunked");
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        (streamed, bytes)
    };
    let (streamed, json_bytes) = http(all_passages, "json");
    assert!(streamed, "a result of {total} rows is streamed over HTTP");
    let rows: Vec<Value> = serde_json::from_slice(&json_bytes).unwrap();
    assert!(
        &rows == reference("cockpit", "all_passages"),
        "the streamed JSON is the rows read before"
    );
    let (streamed, csv) = http(all_passages, "csv");
    assert!(streamed);
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count(), total + 1, "a header and every passage");
    assert_eq!(
        csv.lines().next(),
        Some("ts,checkpoint_id,plate,speed_kmh"),
        "one header, first"
    );
    let (streamed, arrow) = http(all_passages, "arrow");
    assert!(streamed);
    let read = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None)
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum::<usize>();
    assert_eq!(read, total, "every passage in the Arrow stream");
    // An export of the dataset, streamed: every passage, one header.
    let mut response = agent()
        .get(&format!(
            "{}/api/v1/datasets/transport.anpr_passages/records?format=csv&stream=true&purpose=export",
            server.base
        ))
        .header("Authorization", &format!("Bearer {}", cockpit.trim()))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().get("content-length").is_none());
    let export = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .unwrap();
    assert!(
        export.lines().count() > total,
        "{} lines",
        export.lines().count()
    );
    assert_eq!(export.matches("speed_kmh").count(), 1, "one header");
    let (streamed, whole) = http(all_passages, "whole");
    assert!(!streamed, "without stream, the result is sent whole");
    assert_eq!(whole, json_bytes, "the same bytes, streamed or not");
    let (streamed, short) = http(&passages, "json");
    assert!(!streamed, "a short result keeps its length");
    let short: Vec<Value> = serde_json::from_slice(&short).unwrap();
    assert!(
        &short == reference("cockpit", "passages"),
        "the short result as read before"
    );

    // The first row reaches the client while the statement is still producing: a result
    // of many megabytes (more than the sockets buffer) has no closing record yet when the
    // client holds its first row. A client that stops reading stops the statement, and the
    // trail says after how many rows.
    let long = "SELECT g.value AS copy, p.ts, p.plate, p.speed_kmh FROM transport.anpr_passages p CROSS JOIN generate_series(1, 100) g";
    let probe_path = dir.path().join("probe.json");
    let probe = json!({
        "host": "127.0.0.1", "port": port, "user": "cockpit", "password": cockpit.trim(),
        "sql": long,
        "audit_url": format!("{}/api/v1/datasets/transport.anpr_passages/audit?limit=1000", server.base),
        "audit_token": owner.trim(),
    });
    std::fs::write(&probe_path, probe.to_string()).unwrap();
    let output = Command::new(&python)
        .arg(format!("{data}/stream_probe.py"))
        .arg(&probe_path)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the stream probe failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["first_row_columns"], 4, "{seen}");
    assert_eq!(seen["closed_at_first_row"], 0, "{seen}");
    assert_eq!(seen["closed_after"], 1, "{seen}");
    assert!(
        seen["closing_rows"].as_u64().unwrap() < total as u64 * 100,
        "the statement stopped early: {seen}"
    );
    assert!(server.stop().success());
}

/// With a certificate, the wire takes logins over TLS only (a token is a password): psql
/// with sslmode=require reads, psql without TLS is refused before it sends the token.
#[test]
fn with_a_certificate_logins_come_over_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let data = dir.path().join("data");
    let server = start(
        &data,
        &[
            "--pg-listen",
            "127.0.0.1:0",
            "--pg-tls-cert",
            cert.to_str().unwrap(),
            "--pg-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = pg_port(&server);
    let psql = |sslmode: &str| {
        Command::new("psql")
            .args(["-X", "-A", "-t", "-c", "SELECT current_database()"])
            .arg(format!(
                "host=127.0.0.1 port={port} user=transport_ops dbname=citybrain sslmode={sslmode}"
            ))
            .env("PGPASSWORD", &server.token)
            .output()
            .expect("psql runs")
    };
    let secure = psql("require");
    assert!(
        secure.status.success() && String::from_utf8_lossy(&secure.stdout).trim() == "citybrain",
        "over TLS: {}{}",
        String::from_utf8_lossy(&secure.stdout),
        String::from_utf8_lossy(&secure.stderr)
    );
    let plain = psql("disable");
    let error = String::from_utf8_lossy(&plain.stderr);
    assert!(
        !plain.status.success() && error.contains("TLS only"),
        "without TLS: {error}"
    );
    assert!(server.stop().success());
}

/// Found by fuzzing: the `pgwire` crate's decoder reads a Parse message past its stated
/// length and panics when the bytes run out. That panic ends the one connection's task;
/// the server answers the next client and stops cleanly.
#[test]
fn a_malformed_message_ends_its_connection_only() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &["--pg-listen", "127.0.0.1:0"]);
    let port = pg_port(&server);
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    socket
        .write_all(include_bytes!(
            "../../pg/tests/data/fuzzed_parse_message.bin"
        ))
        .unwrap();
    let mut answer = Vec::new();
    // The connection ends (EOF or reset), rather than waiting for more.
    let _ = socket.read_to_end(&mut answer);
    let psql = Command::new("psql")
        .args(["-X", "-A", "-t", "-c", "SELECT current_database()"])
        .arg(format!(
            "host=127.0.0.1 port={port} user=transport_ops dbname=citybrain sslmode=disable"
        ))
        .env("PGPASSWORD", &server.token)
        .output()
        .expect("psql runs");
    assert!(
        psql.status.success() && String::from_utf8_lossy(&psql.stdout).trim() == "citybrain",
        "{}{}",
        String::from_utf8_lossy(&psql.stdout),
        String::from_utf8_lossy(&psql.stderr)
    );
    assert!(server.stop().success());
}
