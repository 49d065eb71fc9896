//! SQL over a real hub: segments plus tail, read-only, and the two limits.

use std::sync::Arc;
use std::time::Duration;

use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, OnError};
use citybrain_sql::{SqlEngine, SqlError, SqlLimits};

const DEF: &str = include_str!("../../hub/tests/data/passages.toml");

/// A hub in `dir` that seals only when asked, with the dataset `definition` created; its
/// name and the time the tests call now.
fn hub_of(dir: &std::path::Path, definition: &str) -> (Hub, DatasetName, Timestamp) {
    let hub = Hub::open(
        dir,
        HubConfig {
            seal_rows: usize::MAX,
            ..HubConfig::default()
        },
    )
    .unwrap();
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let def = DatasetDef::from_file_text("d.toml", definition).unwrap();
    let name = def.name.clone();
    hub.create_dataset(def, now).unwrap();
    (hub, name, now)
}

fn hub_with(rows: usize, dir: &std::path::Path) -> Arc<Hub> {
    let (hub, name, now) = hub_of(dir, DEF);
    let body: String = (0..rows)
        .map(|i| {
            format!(
                "{{\"ts\":\"2026-11-22T08:00:00Z\",\"checkpoint_id\":{},\"plate\":\"P{i}\"}}\n",
                i % 10
            )
        })
        .collect();
    hub.ingest(&name, Format::Ndjson, body.as_bytes(), OnError::Reject, now)
        .unwrap();
    Arc::new(hub)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn segments_and_tail_are_both_visible() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(1000, dir.path());
    hub.seal_all().unwrap();
    let name = DatasetName::parse("transport.anpr_passages").unwrap();
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let more = "{\"ts\":\"2026-11-23T08:00:00Z\",\"checkpoint_id\":99,\"plate\":\"Q\"}\n";
    hub.ingest(&name, Format::Ndjson, more.as_bytes(), OnError::Reject, now)
        .unwrap();
    let engine = SqlEngine::new(hub, SqlLimits::default());
    let result = runtime()
        .block_on(engine.query(
            "SELECT count(*) AS n, count(DISTINCT plate) AS plates, max(checkpoint_id) AS top FROM transport.anpr_passages",
        ))
        .unwrap();
    let json = String::from_utf8(
        citybrain_sql::encode(&result, citybrain_sql::ResultFormat::Json).unwrap(),
    )
    .unwrap();
    assert_eq!(json, r#"[{"n":1001,"plates":1001,"top":99}]"#);
}

#[test]
fn writes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SqlEngine::new(hub_with(10, dir.path()), SqlLimits::default());
    let rt = runtime();
    for statement in [
        "DROP TABLE transport.anpr_passages",
        "INSERT INTO transport.anpr_passages SELECT * FROM transport.anpr_passages",
        "CREATE TABLE x AS SELECT 1",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let error = rt.block_on(engine.query(statement)).unwrap_err();
        assert!(
            matches!(error, SqlError::NotReadOnly(_)),
            "{statement}: {error}"
        );
    }
}

#[test]
fn the_memory_limit_is_named_when_hit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        timeout: Duration::from_secs(60),
        memory_bytes: 64 * 1024,
        ..Default::default()
    };
    let engine = SqlEngine::new(hub_with(50_000, dir.path()), limits);
    let error = runtime()
        .block_on(engine.query(
            "SELECT plate, count(*) FROM transport.anpr_passages GROUP BY plate ORDER BY 2, 1",
        ))
        .unwrap_err();
    assert!(matches!(error, SqlError::MemoryLimit { .. }), "{error}");
    assert!(
        error.to_string().contains("memory limit of 65536 bytes"),
        "{error}"
    );
}

#[test]
fn the_timeout_is_named_when_hit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        timeout: Duration::from_millis(1),
        memory_bytes: 1 << 30,
        ..Default::default()
    };
    let engine = SqlEngine::new(hub_with(20_000, dir.path()), limits);
    // A cross join big enough to outlast the timeout by far.
    let error = runtime()
        .block_on(engine.query(
            "SELECT count(*) FROM transport.anpr_passages a, transport.anpr_passages b WHERE a.plate < b.plate",
        ))
        .unwrap_err();
    assert!(matches!(error, SqlError::Timeout(_)), "{error}");
    assert!(error.to_string().contains("statement timeout"), "{error}");
}

const READINGS: &str = r#"
name = "test.readings"
owner = "test"
event_time = "ts"
[[fields]]
name = "ts"
type = "timestamp"
[[fields]]
name = "k"
type = "int"
nullable = true
[[fields]]
name = "w"
type = "int"
[[fields]]
name = "v"
type = "int"
nullable = true
[[fields]]
name = "d"
type = "date"
[[fields]]
name = "seq"
type = "int"
"#;

/// 60,000 readings over two sealed segments and a tail: `k` a small range with nulls, `w`
/// a small range for the first 15,000 rows of each 20,000 and then spread over billions (so
/// grouping by it starts dense and must move to a hash table midway), `v` values with nulls.
fn readings(dir: &std::path::Path) -> Arc<Hub> {
    let (hub, name, now) = hub_of(dir, READINGS);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for part in 0..3 {
        let body: String = (part * 20_000..(part + 1) * 20_000)
            .map(|i: u64| {
                let r = next();
                let k = if r % 17 == 0 {
                    "null".to_string()
                } else {
                    ((r >> 8) % 300).to_string()
                };
                let w = if i % 20_000 < 15_000 {
                    (r >> 20) % 50
                } else {
                    (r >> 20) % 4_000_000_000
                };
                let v = if (r >> 40) % 11 == 0 {
                    "null".to_string()
                } else {
                    (((r >> 30) % 2_000_001) as i64 - 1_000_000).to_string()
                };
                format!(
                    "{{\"ts\":\"2026-11-2{}T08:00:00Z\",\"k\":{k},\"w\":{w},\"v\":{v},\"d\":\"2026-11-{:02}\",\"seq\":{i}}}\n",
                    1 + part,
                    1 + (r >> 50) % 30
                )
            })
            .collect();
        hub.ingest(&name, Format::Ndjson, body.as_bytes(), OnError::Reject, now)
            .unwrap();
        if part < 2 {
            hub.seal_all().unwrap();
        }
    }
    Arc::new(hub)
}

fn json(engine: &SqlEngine, rt: &tokio::runtime::Runtime, sql: &str) -> String {
    let result = rt.block_on(engine.query(sql)).unwrap();
    String::from_utf8(citybrain_sql::encode(&result, citybrain_sql::ResultFormat::Json).unwrap())
        .unwrap()
}

#[test]
fn integer_key_grouping_answers_as_datafusion_does() {
    let dir = tempfile::tempdir().unwrap();
    let hub = readings(dir.path());
    let ours = SqlEngine::new(hub.clone(), SqlLimits::default());
    let datafusion = SqlEngine::new(hub, SqlLimits::default()).without_int_key_grouping();
    let rt = runtime();
    let t = "test.readings";
    let queries = [
        format!(
            "SELECT k, count(*) AS n, count(v) AS nv, sum(v) AS s, min(v) AS lo, max(v) AS hi FROM {t} GROUP BY k ORDER BY k"
        ),
        format!("SELECT k % 7 AS m, count(*) AS n, sum(w) AS s FROM {t} GROUP BY 1 ORDER BY 1"),
        format!("SELECT w, count(*) AS n, sum(v) AS s FROM {t} GROUP BY w ORDER BY w"),
        // Only rows counted (one pass, no slot per row), dense, then moving to a table.
        format!("SELECT w, count(*) AS n FROM {t} GROUP BY w ORDER BY w"),
        format!("SELECT (60000 - seq) / 100 AS g, count(*) AS n FROM {t} GROUP BY 1 ORDER BY 1"),
        // Nullable keys spread too wide for slots from the first batch on.
        format!(
            "SELECT k * 1000000007 AS g, count(*) AS n, count(v) AS nv FROM {t} GROUP BY 1 ORDER BY 1"
        ),
        format!("SELECT d, count(*) AS n, max(w) AS hi FROM {t} GROUP BY d ORDER BY d"),
        format!(
            "SELECT k, sum(v) AS s FROM {t} WHERE v > 500000 GROUP BY k HAVING count(*) > 10 ORDER BY k"
        ),
        format!("SELECT k, count(*) AS n FROM {t} WHERE k IS NULL GROUP BY k"),
        // Keys that climb, and keys that fall, batch after batch: the slots widen both ways.
        format!(
            "SELECT seq / 1000 AS g, count(*) AS n, sum(v) AS s FROM {t} GROUP BY 1 ORDER BY 1"
        ),
        format!("SELECT (60000 - seq) / 1000 AS g, min(v) AS lo FROM {t} GROUP BY 1 ORDER BY 1"),
        format!("SELECT k, count(*) AS n FROM {t} WHERE v > 2000000 GROUP BY k"),
    ];
    for sql in &queries {
        let plan = json(&ours, &rt, &format!("EXPLAIN {sql}"));
        assert!(plan.contains("IntKeyAggregateExec"), "{sql}: {plan}");
        assert!(!json(&datafusion, &rt, &format!("EXPLAIN {sql}")).contains("IntKeyAggregateExec"));
        let got = json(&ours, &rt, sql);
        assert_eq!(got, json(&datafusion, &rt, sql), "{sql}");
        assert!(got.len() > 2 || sql.contains("2000000"), "{sql}: {got}");
    }
    // Nearly every wide `w` is its own group: the dense slots gave way to a
    // hash table midway and lost none of the first rows' groups.
    let groups = json(
        &ours,
        &rt,
        &format!("SELECT count(*) AS g FROM (SELECT w FROM {t} GROUP BY w)"),
    );
    let distinct = json(
        &datafusion,
        &rt,
        &format!("SELECT count(DISTINCT w) AS g FROM {t}"),
    );
    assert_eq!(groups, distinct);
    // Folds it does not do, and keys it does not take, stay with DataFusion.
    for sql in [
        format!("SELECT k, avg(v) FROM {t} GROUP BY k"),
        format!("SELECT k, count(DISTINCT v) FROM {t} GROUP BY k"),
        format!("SELECT k, w, count(*) FROM {t} GROUP BY k, w"),
        format!("SELECT v / 3.0 AS x, count(*) FROM {t} GROUP BY 1"),
    ] {
        let plan = json(&ours, &rt, &format!("EXPLAIN {sql}"));
        let first_step = plan.contains("IntKeyAggregateExec");
        assert!(
            !first_step || sql.contains("DISTINCT"),
            "{sql} should keep DataFusion's grouping: {plan}"
        );
    }
}

/// Exports officials open: CSV that Excel reads as UTF-8 (a byte-order mark), and GeoJSON
/// of a result with a point, which a map or QGIS opens as it is.
#[test]
fn excel_csv_has_a_bom_and_geojson_takes_the_point_as_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(3, dir.path());
    let engine = SqlEngine::new(hub, SqlLimits::default());
    let rt = runtime();
    let result = rt
        .block_on(engine.query(
            "SELECT '浙A' || plate AS plate, named_struct('lon', 120.0 + checkpoint_id, 'lat', 30.25) AS at FROM transport.anpr_passages ORDER BY plate",
        ))
        .unwrap();
    let csv = citybrain_sql::encode(&result, citybrain_sql::ResultFormat::CsvExcel).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("\u{feff}plate,at\n浙AP0,POINT(120 30.25)"),
        "{csv}"
    );
    let geo = citybrain_sql::encode(&result, citybrain_sql::ResultFormat::GeoJson).unwrap();
    let geo: serde_json::Value = serde_json::from_slice(&geo).unwrap();
    assert_eq!(geo["type"], "FeatureCollection");
    assert_eq!(geo["features"].as_array().unwrap().len(), 3);
    assert_eq!(
        geo["features"][1]["geometry"],
        serde_json::json!({"type": "Point", "coordinates": [121.0, 30.25]})
    );
    assert_eq!(geo["features"][1]["properties"]["plate"], "浙AP1");
    let no_point = rt
        .block_on(engine.query("SELECT plate FROM transport.anpr_passages"))
        .unwrap();
    let refused = citybrain_sql::encode(&no_point, citybrain_sql::ResultFormat::GeoJson)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("geo (point) column"), "{refused}");
}
