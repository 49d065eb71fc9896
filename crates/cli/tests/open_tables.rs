//! Open tables (issue 25, item 4): with `up --open-tables DIR`, every dataset that may
//! leave the hub's governance is also a Delta Lake table of its sealed segments, read here
//! with PyPI's `deltalake` (delta-rs, as Spark, Trino or pandas users read one) and
//! compared with citybrain's SQL. A dataset with personal fields or a grant to ask for
//! stays in unless its owner says otherwise; a schema change is a new table schema that
//! old files read as nulls; a restart commits nothing new; a deleted dataset's table goes.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{department_admin, start};
use serde_json::{Value, json};

const PRICES: &str = r#"name = "market.prices"
owner = "market"
sharing = "unconditional"
description = "Wholesale prices at the city's markets."
event_time = "at"

[[fields]]
name = "at"
type = "timestamp"

[[fields]]
name = "day"
type = "date"

[[fields]]
name = "stall"
type = "string"
class = "public"

[[fields]]
name = "price"
type = "money"

[[fields]]
name = "weight"
type = "float"

[[fields]]
name = "organic"
type = "bool"

[[fields]]
name = "site"
type = "geo"
"#;

/// Readable with a grant only, and it has a personal field: stays in.
const FINES: &str = r#"name = "market.fines"
owner = "market"
sharing = "conditional"

[[fields]]
name = "firm"
type = "string"

[[fields]]
name = "inspector"
type = "string"
class = "personal"
"#;

/// The owner exports it although it has a personal field.
const INSPECTIONS: &str = r#"name = "market.inspections"
owner = "market"
sharing = "conditional"
open_table = true

[[fields]]
name = "firm"
type = "string"

[[fields]]
name = "inspector"
type = "string"
class = "personal"
"#;

/// The table as delta-rs reads it: its version, configuration, columns and rows (times
/// and dates as ISO text).
fn read_table(path: &Path) -> Value {
    let script = r#"
import json, sys, datetime
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
table = t.to_pyarrow_table()
def plain(v):
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v
print(json.dumps({
    "version": t.version(),
    "configuration": t.metadata().configuration,
    "name": t.metadata().name,
    "columns": table.column_names,
    "rows": [{k: plain(v) for k, v in row.items()} for row in table.to_pylist()],
}))
# deltalake 1.6.6 with pyarrow aborts now and then while the interpreter shuts down
# ("terminate called without an active exception"), after the answer is out.
sys.stdout.flush()
import os
os._exit(0)
"#;
    common::python_json(script, path)
}

/// Waits for a table's commit of `version` (seals run in the background after an ingest).
fn wait_for_version(table: &Path, version: u64) {
    let commit = table.join("_delta_log").join(format!("{version:020}.json"));
    let start = Instant::now();
    while !commit.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            commit.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn versions(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_str().unwrap();
            name.len() == 25 && name.ends_with(".json")
        })
        .count()
}

fn price_row(i: u32, day: u32) -> String {
    json!({
        "at": format!("2026-12-{day:02}T0{i}:15:00Z"),
        "day": format!("2026-12-{day:02}"),
        "stall": format!("摊位{i}"),
        "price": 1000 + i64::from(i),
        "weight": f64::from(i) + 0.5,
        "organic": i.is_multiple_of(2),
        "site": {"lon": 120.1, "lat": 30.2},
    })
    .to_string()
        + "\n"
}

#[test]
fn exportable_datasets_are_delta_tables_that_outside_engines_read_as_the_hub_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root: PathBuf = dir.path().join("open");
    let root_arg = root.to_str().unwrap().to_string();
    let args = ["--open-tables", root_arg.as_str(), "--seal-rows", "4"];
    let server = start(&data, &args);
    let market = department_admin(&server, "market");
    for def in [PRICES, FINES, INSPECTIONS] {
        let (status, text) = server.post_as(
            &market,
            "/api/v1/datasets",
            "application/toml",
            def.as_bytes(),
        );
        assert_eq!(status, 201, "{text}");
    }
    let prices = root.join("market.prices");
    // Created: a table with the schema and no files yet.
    wait_for_version(&prices, 0);
    let empty = read_table(&prices);
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(empty["name"], "market.prices");
    assert_eq!(empty["configuration"]["delta.appendOnly"], "true");
    assert_eq!(
        empty["columns"],
        json!([
            "at",
            "day",
            "stall",
            "price",
            "weight",
            "organic",
            "site",
            "_ingested_at"
        ])
    );

    // Five rows over two days: the seal makes two segments, one commit adds both.
    let batch: String = (1..=3)
        .map(|i| price_row(i, 1))
        .chain((4..=5).map(|i| price_row(i, 2)))
        .collect();
    server.ingest_as(&market, "market.prices", &batch);
    wait_for_version(&prices, 1);
    let table = read_table(&prices);
    assert_eq!(table["version"], 1);
    let mut rows = table["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r["at"].as_str().unwrap().to_string());
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[0],
        json!({"at": "2026-12-01T01:15:00+00:00", "day": "2026-12-01", "stall": "摊位1",
               "price": 1001, "weight": 1.5, "organic": false,
               "site": {"lon": 120.1, "lat": 30.2}, "_ingested_at": rows[0]["_ingested_at"]})
    );
    // The same rows as the hub's SQL answers.
    let sql = server.sql(
        "SELECT stall, price, weight, organic, CAST(day AS VARCHAR) AS day FROM market.prices ORDER BY at",
    );
    let from_sql: Vec<Value> = sql
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["stall"], r["price"], r["weight"], r["organic"], r["day"]]))
        .collect();
    let from_delta: Vec<Value> = rows
        .iter()
        .map(|r| json!([r["stall"], r["price"], r["weight"], r["organic"], r["day"]]))
        .collect();
    assert_eq!(from_delta, from_sql);

    // A new nullable field: a new table schema; the old files read it as null.
    let put = |def: &Value| {
        common::agent()
            .put(&format!("{}/api/v1/datasets/market.prices", server.base))
            .header("Authorization", &format!("Bearer {market}"))
            .header("Content-Type", "application/json")
            .send(def.to_string().as_bytes())
            .unwrap()
            .status()
            .as_u16()
    };
    let (status, text) = server.get("/api/v1/datasets/market.prices", Some(&market));
    assert_eq!(status, 200, "{text}");
    let info: Value = serde_json::from_str(&text).unwrap();
    let mut changed = json!({
        "name": "market.prices", "owner": "market", "sharing": "unconditional",
        "description": info["description"], "event_time": "at", "fields": info["fields"],
    });
    changed["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "grade", "type": "string", "nullable": true}));
    assert_eq!(put(&changed), 200);
    wait_for_version(&prices, 2);
    let graded: String = (6..=9)
        .map(|i| {
            let mut row: Value = serde_json::from_str(&price_row(i, 3)).unwrap();
            row["grade"] = json!("A");
            row.to_string() + "\n"
        })
        .collect();
    server.ingest_as(&market, "market.prices", &graded);
    wait_for_version(&prices, 3);
    let table = read_table(&prices);
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 9);
    assert_eq!(rows.iter().filter(|r| r["grade"] == "A").count(), 4);
    assert_eq!(rows.iter().filter(|r| r["grade"].is_null()).count(), 5);
    assert_eq!(server.count("market.prices"), 9);

    // Personal or granted data stays in; the owner's word exports it, raw.
    let fines: String = (0..4)
        .map(|i| json!({"firm": format!("firm {i}"), "inspector": "王五"}).to_string() + "\n")
        .collect();
    server.ingest_as(&market, "market.fines", &fines);
    server.ingest_as(&market, "market.inspections", &fines);
    let inspections = root.join("market.inspections");
    wait_for_version(&inspections, 1);
    let table = read_table(&inspections);
    assert_eq!(table["rows"].as_array().unwrap().len(), 4);
    assert_eq!(table["rows"][0]["inspector"], "王五");
    let (status, text) = server.get("/api/v1/datasets/market.fines", Some(&market));
    assert_eq!(status, 200, "{text}");
    let info: Value = serde_json::from_str(&text).unwrap();
    assert!(info["segments"].as_u64().unwrap() > 0, "{info}");
    assert!(!root.join("market.fines").exists());
    assert!(!root.join("market.fines__rejected").exists());

    // A restart brings the tables up to date and, being current, commits nothing.
    let before = versions(&prices);
    server.stop();
    let server = start(&data, &args);
    assert_eq!(versions(&prices), before);
    assert_eq!(read_table(&prices)["rows"].as_array().unwrap().len(), 9);

    // A deleted dataset's table goes with it; one its owner withdraws too.
    let market = department_admin(&server, "market");
    let response = common::agent()
        .delete(&format!(
            "{}/api/v1/datasets/market.inspections",
            server.base
        ))
        .header("Authorization", &format!("Bearer {market}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(!inspections.exists());
    changed["open_table"] = json!(false);
    let response = common::agent()
        .put(&format!("{}/api/v1/datasets/market.prices", server.base))
        .header("Authorization", &format!("Bearer {market}"))
        .header("Content-Type", "application/json")
        .send(changed.to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(!prices.exists());
}
