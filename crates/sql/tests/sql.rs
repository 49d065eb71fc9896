//! SQL over a real hub: segments plus tail, read-only, and the two limits.

use std::sync::Arc;
use std::time::Duration;

use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, OnError};
use citybrain_sql::{SqlEngine, SqlError, SqlLimits};

const DEF: &str = include_str!("../../hub/tests/data/passages.toml");

fn hub_with(rows: usize, dir: &std::path::Path) -> Arc<Hub> {
    let hub = Hub::open(
        dir,
        HubConfig {
            seal_rows: usize::MAX,
        },
    )
    .unwrap();
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now)
        .unwrap();
    let name = DatasetName::parse("transport.anpr_passages").unwrap();
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
