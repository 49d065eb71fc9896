//! The hub end to end on a real data directory: ingest, reject, skip, seal, restart.

use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, HubError, OnError};

/// A minimal passages dataset, shared with the SQL crate's tests.
const DEF: &str = include_str!("data/passages.toml");

fn name() -> DatasetName {
    DatasetName::parse("transport.anpr_passages").unwrap()
}

fn open(dir: &std::path::Path, seal_rows: usize) -> Hub {
    Hub::open(dir, HubConfig { seal_rows }).unwrap()
}

fn now() -> Timestamp {
    Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
}

fn ndjson(range: std::ops::Range<usize>, day: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for i in range {
        body.extend_from_slice(
            format!(
                "{{\"ts\":\"{day}T08:00:00Z\",\"checkpoint_id\":{i},\"plate\":\"浙A{i:05}\"}}\n"
            )
            .as_bytes(),
        );
    }
    body
}

fn rows(hub: &Hub) -> u64 {
    hub.snapshot(&name()).unwrap().rows()
}

#[test]
fn every_format_is_stored_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now())
        .unwrap();
    hub.ingest(
        &name(),
        Format::Ndjson,
        &ndjson(0..10, "2026-11-22"),
        OnError::Reject,
        now(),
    )
    .unwrap();
    let csv =
        "ts,checkpoint_id,plate\n2026-11-22T09:00:00+08:00,1,浙B1\n2026-11-23T09:00:00Z,2,浙B2\n";
    hub.ingest(&name(), Format::Csv, csv.as_bytes(), OnError::Reject, now())
        .unwrap();
    // A Parquet body made from what is stored: the hub must read its own format back, row
    // group after row group (four of them here).
    let snapshot = hub.snapshot(&name()).unwrap();
    let mut parquet = Vec::new();
    {
        let batch = snapshot.tail[0].project(&[0, 1, 2]).unwrap();
        let small_groups = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(3))
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut parquet, batch.schema(), Some(small_groups))
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
    // As the server hands it over (an owned body): a batch per row group in the tail.
    let report = hub
        .ingest_bytes(
            &name(),
            Format::Parquet,
            bytes::Bytes::from(parquet.clone()),
            OnError::Reject,
            now(),
        )
        .unwrap();
    assert_eq!(report.accepted, 10);
    assert_eq!(report.stored.len(), 4, "a batch per row group");
    assert_eq!(rows(&hub), 22);
    let again = hub.snapshot(&name()).unwrap();
    let parts = &again.tail[again.tail.len() - 4..];
    let joined = arrow::compute::concat_batches(&parts[0].schema(), parts).unwrap();
    assert_eq!(
        joined.project(&[0, 1, 2]).unwrap(),
        snapshot.tail[0].project(&[0, 1, 2]).unwrap(),
        "the same records, in order"
    );
    // Parquet from another writer, with columns that need casting (32-bit ids, timestamps
    // in milliseconds without a zone), ingested later: the log keeps the body as it came and
    // must give back the same records and ingest time.
    let other = {
        use arrow::array::{Int32Array, StringArray, TimestampMillisecondArray};
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new(
                "ts",
                arrow::datatypes::DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Millisecond,
                    None,
                ),
                false,
            ),
            arrow::datatypes::Field::new("checkpoint_id", arrow::datatypes::DataType::Int32, false),
            arrow::datatypes::Field::new("plate", arrow::datatypes::DataType::Utf8, false),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(TimestampMillisecondArray::from(vec![
                    1_763_800_000_123,
                    1_763_800_001_456,
                ])),
                std::sync::Arc::new(Int32Array::from(vec![7, 8])),
                std::sync::Arc::new(StringArray::from(vec!["浙C00001", "浙C00002"])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    };
    let later = Timestamp::parse("2026-11-22T11:30:00.5Z").unwrap();
    hub.ingest(&name(), Format::Parquet, &other, OnError::Reject, later)
        .unwrap();
    let before = hub.snapshot(&name()).unwrap().tail;
    {
        use arrow::array::AsArray;
        let last = before.last().unwrap();
        let ts = last
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(
            ts.value(0),
            1_763_800_000_123_000,
            "milliseconds become micros, UTC"
        );
        let ingested = last
            .column(last.num_columns() - 1)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(ingested.value(1), later.0);
    }
    hub.close();
    drop(hub);
    let hub = open(dir.path(), 1_000_000);
    assert_eq!(
        rows(&hub),
        24,
        "every acknowledged record is back after a restart"
    );
    let after = hub.snapshot(&name()).unwrap().tail;
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            a, b,
            "a batch read back from the log differs from the one ingested"
        );
    }
}

#[test]
fn a_bad_batch_stores_nothing_and_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now())
        .unwrap();
    let mut body = ndjson(0..5, "2026-11-22");
    body.extend_from_slice(b"{\"ts\":\"noon\",\"checkpoint_id\":1,\"plate\":\"x\"}\n");
    body.extend_from_slice(b"{\"ts\":\"2026-11-22T08:00:00Z\",\"plate\":7}\n");
    let error = hub
        .ingest(&name(), Format::Ndjson, &body, OnError::Reject, now())
        .unwrap_err();
    let HubError::BatchRejected { rejected } = error else {
        panic!("{error}")
    };
    assert_eq!((rejected.total, rejected.rejected), (7, 2));
    let listed: Vec<(u64, Option<&str>)> = rejected
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_deref()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (6, Some("ts")),
            (7, Some("checkpoint_id")),
            (7, Some("plate"))
        ]
    );
    assert_eq!(rows(&hub), 0);

    // Skip mode keeps the good ones and the bad ones with their reasons.
    let report = hub
        .ingest(&name(), Format::Ndjson, &body, OnError::Skip, now())
        .unwrap();
    assert_eq!((report.accepted, report.rejected), (5, 2));
    assert_eq!(rows(&hub), 5);
    let dead = hub.snapshot(&name().rejected()).unwrap();
    assert_eq!(dead.rows(), 3, "one dead-letter row per problem");
}

#[test]
fn at_most_a_thousand_problems_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now())
        .unwrap();
    let body = "{\"ts\":1}\n".repeat(1500);
    let HubError::BatchRejected { rejected } = hub
        .ingest(
            &name(),
            Format::Ndjson,
            body.as_bytes(),
            OnError::Reject,
            now(),
        )
        .unwrap_err()
    else {
        panic!()
    };
    assert_eq!(rejected.rejected, 1500);
    assert_eq!(rejected.problems.len(), 1000);
    assert!(rejected.truncated);
}

#[test]
fn sealing_partitions_by_day_and_recovers_from_a_crashed_seal() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), usize::MAX);
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now())
        .unwrap();
    hub.ingest(
        &name(),
        Format::Ndjson,
        &ndjson(0..100, "2026-11-22"),
        OnError::Reject,
        now(),
    )
    .unwrap();
    hub.ingest(
        &name(),
        Format::Ndjson,
        &ndjson(0..50, "2026-11-23"),
        OnError::Reject,
        now(),
    )
    .unwrap();
    assert_eq!(hub.seal_all().unwrap(), 150);
    let snapshot = hub.snapshot(&name()).unwrap();
    let mut paths: Vec<_> = snapshot.segments.iter().map(|s| s.path.clone()).collect();
    paths.sort();
    assert!(paths[0].contains("date=2026-11-22"), "{paths:?}");
    assert!(paths[1].contains("date=2026-11-23"), "{paths:?}");
    assert!(snapshot.tail.is_empty());
    hub.ingest(
        &name(),
        Format::Ndjson,
        &ndjson(0..7, "2026-11-23"),
        OnError::Reject,
        now(),
    )
    .unwrap();
    drop(hub);

    // A seal that crashed before its manifest leaves a stray segment: it must not count.
    let stray = dir
        .path()
        .join("datasets/transport.anpr_passages/segments/date=2026-11-23/999999999999-0.parquet");
    std::fs::copy(
        dir.path()
            .join("datasets/transport.anpr_passages")
            .join(&paths[1]),
        &stray,
    )
    .unwrap();
    let hub = open(dir.path(), usize::MAX);
    assert_eq!(rows(&hub), 157);
    assert!(!stray.exists());
}

#[test]
fn breaking_schema_changes_are_refused_and_additions_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    let def = DatasetDef::from_file_text("d.toml", DEF).unwrap();
    hub.create_dataset(def.clone(), now()).unwrap();
    hub.ingest(
        &name(),
        Format::Ndjson,
        &ndjson(0..3, "2026-11-22"),
        OnError::Reject,
        now(),
    )
    .unwrap();
    let mut broken = def.clone();
    broken.fields.remove(2);
    let error = hub.update_dataset(broken, now()).unwrap_err();
    assert!(error.to_string().contains("field 'plate'"), "{error}");
    let mut added = def.clone();
    added.fields.push(citybrain_hub::FieldDef {
        name: "lane".into(),
        field_type: citybrain_hub::FieldType::Int,
        class: citybrain_hub::Classification::Public,
        nullable: true,
        description: String::new(),
        mask: None,
    });
    let info = hub.update_dataset(added, now()).unwrap();
    assert_eq!(info.version, 2);
    let body =
        b"{\"ts\":\"2026-11-22T08:00:00Z\",\"checkpoint_id\":1,\"plate\":\"x\",\"lane\":2}\n";
    hub.ingest(&name(), Format::Ndjson, body, OnError::Reject, now())
        .unwrap();
    drop(hub);
    let hub = open(dir.path(), 1_000_000);
    let snapshot = hub.snapshot(&name()).unwrap();
    assert_eq!(snapshot.rows(), 4);
    assert!(
        snapshot
            .tail
            .iter()
            .all(|b| b.schema().field_with_name("lane").is_ok())
    );
}

/// The layering rule of ARCHITECTURE.md, checked: the pure crates take no async runtime,
/// HTTP stack or query engine.
#[test]
fn pure_crates_do_not_depend_on_io_frameworks() {
    // Read at run time: a compile-time path can name an old checkout (shared target dir).
    let root = format!("{}/..", std::env::var("CARGO_MANIFEST_DIR").unwrap());
    for krate in [
        "core", "hub", "gen", "indices", "parking", "signals", "sumo", "rules",
    ] {
        let manifest = std::fs::read_to_string(format!("{root}/{krate}/Cargo.toml")).unwrap();
        for forbidden in ["tokio", "axum", "datafusion", "hyper", "ureq"] {
            assert!(
                !manifest
                    .lines()
                    .any(|l| l.trim_start().starts_with(forbidden)),
                "crates/{krate} must not depend on {forbidden}"
            );
        }
    }
    // The signal core knows no simulator and no network either.
    let signals = std::fs::read_to_string(format!("{root}/signals/Cargo.toml")).unwrap();
    assert!(
        !signals.contains("roxmltree") && !signals.contains("citybrain-sumo"),
        "crates/signals must stay free of SUMO"
    );
}
