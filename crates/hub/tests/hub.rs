//! The hub end to end on a real data directory: ingest, reject, skip, seal, restart.
//!
//! Kept whole (about 950 lines): every test drives the same `Hub` API over a temporary
//! directory; they are grouped by what they exercise (ingest, refusals, seals, restart,
//! limits, deletion).

use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, HubError, OnError};

/// A minimal passages dataset, shared with the SQL crate's tests.
const DEF: &str = include_str!("data/passages.toml");

fn name() -> DatasetName {
    DatasetName::parse("transport.anpr_passages").unwrap()
}

fn open(dir: &std::path::Path, seal_rows: usize) -> Hub {
    Hub::open(
        dir,
        HubConfig {
            seal_rows,
            ..HubConfig::default()
        },
    )
    .unwrap()
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
    assert!(report.position.is_some());
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

// ---------------------------------------------------------------------------------------
// Issue 20: derived names, unreadable catalog rows, ingest bounds, consistent decoding.

fn parquet_of(batch: &arrow::array::RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    out
}

fn batch_of(columns: Vec<(&str, arrow::array::ArrayRef)>) -> arrow::array::RecordBatch {
    arrow::array::RecordBatch::try_from_iter(columns).unwrap()
}

fn one_field_def(name: &str, field_type: &str) -> DatasetDef {
    DatasetDef::from_file_text(
        "d.toml",
        &format!(
            "name = \"{name}\"\nowner = \"sec\"\n[[fields]]\nname = \"n\"\ntype = \"{field_type}\"\n"
        ),
    )
    .unwrap()
}

/// Issue 20, item 2: `sec.` + 54 × `c` was accepted, its dead-letter name `…__rejected` has a
/// 64-character table part, and every later start failed.
#[test]
fn a_name_whose_derived_names_are_too_long_is_refused_at_definition() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    let long = format!("sec.{}", "c".repeat(54));
    let error = hub
        .create_dataset(one_field_def(&long, "int"), now())
        .unwrap_err();
    let HubError::InvalidDefinition(_) = &error else {
        panic!("{error}")
    };
    let message = error.to_string();
    assert!(message.contains("__rejected"), "{message}");
    assert!(message.contains("limit of 63"), "{message}");
    assert!(message.contains("at most 53"), "{message}");
    assert!(hub.names().is_empty(), "nothing was created");
    // The longest name that fits, and its dead-letter dataset, survive a restart.
    let longest = format!("sec.{}", "c".repeat(53));
    hub.create_dataset(one_field_def(&longest, "int"), now())
        .unwrap();
    drop(hub);
    let hub = open(dir.path(), 1_000_000);
    assert_eq!(hub.names().len(), 2);
    assert!(hub.skipped_definitions().is_empty());
}

/// Issue 20, item 2: one unreadable catalog row (here the rows an older version wrote for
/// `sec.` + 54 × `c`, and a row of garbage) must not stop the hub from opening the rest.
#[test]
fn an_unreadable_catalog_row_is_skipped_and_reported_and_the_rest_open() {
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
    drop(hub);
    // What the version before the fix stored for the long name: the dataset and its dead
    // letters, whose name no longer parses.
    let long = format!("sec.{}", "c".repeat(54));
    let def = one_field_def(&long, "int");
    let rejected_json = serde_json::to_string(&def.rejected_def()).unwrap();
    let catalog = citybrain_metadb::Db::open(
        &citybrain_metadb::Place::Sqlite(dir.path().join("catalog.sqlite")),
        &citybrain_metadb::Schema {
            component: "catalog",
            sqlite: "",
            postgres: &[],
        },
    )
    .unwrap();
    for (row_name, json) in [
        (long.clone(), serde_json::to_string(&def).unwrap()),
        (format!("{long}__rejected"), rejected_json),
        ("x.broken".to_string(), "{not json".to_string()),
    ] {
        catalog
            .execute(
                "INSERT INTO datasets (name, definition, created_at, updated_at, version)
                 VALUES (?1, ?2, 0, 0, 1)",
                citybrain_metadb::params![row_name, json],
            )
            .unwrap();
    }
    drop(catalog);

    let hub = Hub::open(dir.path(), HubConfig::default()).expect("one bad row must not block");
    assert_eq!(rows(&hub), 10, "the other datasets open with their records");
    let skipped: Vec<&str> = hub
        .skipped_definitions()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        skipped,
        vec![format!("{long}__rejected").as_str(), "x.broken"]
    );
    for skip in hub.skipped_definitions() {
        assert!(!skip.reason.is_empty());
    }
    assert!(
        hub.skipped_definitions()[0].reason.contains("63"),
        "{}",
        hub.skipped_definitions()[0]
    );
    // The long dataset itself opened; without its dead letters a skip-mode call with a bad
    // record stores nothing (not the good half with the refused half lost).
    let long = DatasetName::parse(&long).unwrap();
    let error = hub
        .ingest(
            &long,
            Format::Ndjson,
            b"{\"n\":1}\n{\"n\":\"x\"}\n",
            OnError::Skip,
            now(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("__rejected"), "{error}");
    assert_eq!(hub.snapshot(&long).unwrap().rows(), 0);
    hub.ingest(&long, Format::Ndjson, b"{\"n\":1}\n", OnError::Skip, now())
        .unwrap();
    assert_eq!(hub.snapshot(&long).unwrap().rows(), 1);
}

fn limited(dir: &std::path::Path, max_rows: u64, max_bytes: u64) -> Hub {
    open(dir, 1_000_000).with_ingest_limits(citybrain_hub::IngestLimits {
        max_rows,
        max_bytes,
    })
}

/// Issue 20, item 3: a 1.2 MB Parquet body decoded to 100 M rows (3.8 GB). Under the default
/// limits a small body of more rows than allowed is refused from its footer.
#[test]
fn a_small_parquet_body_of_too_many_rows_is_refused_before_decoding() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    let flood = DatasetName::parse("sec.flood").unwrap();
    hub.create_dataset(one_field_def("sec.flood", "int"), now())
        .unwrap();
    let limit = citybrain_hub::IngestLimits::default().max_rows;
    let rows_sent = limit + 1;
    let body = {
        let chunk: arrow::array::ArrayRef =
            Arc::new(arrow::array::Int64Array::from_value(7, 1 << 20));
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        let mut out = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), None).unwrap();
        let mut left = rows_sent as usize;
        while left > 0 {
            let n = left.min(1 << 20);
            let batch = arrow::array::RecordBatch::try_new(schema.clone(), vec![chunk.slice(0, n)])
                .unwrap();
            writer.write(&batch).unwrap();
            left -= n;
        }
        writer.close().unwrap();
        out
    };
    assert!(body.len() < 2 << 20, "a small body: {} bytes", body.len());
    let error = hub
        .ingest_bytes(
            &flood,
            Format::Parquet,
            bytes::Bytes::from(body),
            OnError::Reject,
            now(),
        )
        .unwrap_err();
    let HubError::Decode(citybrain_hub::DecodeError::TooManyRows { limit: l, found }) = &error
    else {
        panic!("{error}")
    };
    assert_eq!((*l, *found), (limit, rows_sent));
    assert!(
        error
            .to_string()
            .contains(&format!("limit of {limit} records per ingest call")),
        "{error}"
    );
    assert_eq!(hub.snapshot(&flood).unwrap().rows(), 0);
}

/// The byte bound holds where rows are few but values long: a dictionary-encoded column
/// repeats one long string into far more memory than the body takes.
#[test]
fn decoded_bytes_are_bounded_in_every_format() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let hub = limited(dir.path(), 1_000_000, 1 << 20);
    let texts = DatasetName::parse("sec.texts").unwrap();
    hub.create_dataset(one_field_def("sec.texts", "string"), now())
        .unwrap();
    let long = "x".repeat(4096);
    let strings: arrow::array::ArrayRef =
        Arc::new(arrow::array::StringArray::from(vec![long.as_str(); 1000]));
    let body = parquet_of(&batch_of(vec![("n", strings)]));
    assert!(body.len() < 64 << 10, "{} bytes", body.len());
    let error = hub
        .ingest_bytes(
            &texts,
            Format::Parquet,
            bytes::Bytes::from(body),
            OnError::Reject,
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(
            error,
            HubError::Decode(citybrain_hub::DecodeError::TooManyBytes { limit, .. }) if limit == 1 << 20
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("limit of 1048576 bytes"),
        "{error}"
    );
    // NDJSON and CSV: rows are counted from the lines before decoding.
    let hub = hub.with_ingest_limits(citybrain_hub::IngestLimits {
        max_rows: 3,
        max_bytes: 1 << 20,
    });
    let four = "{\"n\":\"a\"}\n".repeat(4);
    let error = hub
        .ingest(
            &texts,
            Format::Ndjson,
            four.as_bytes(),
            OnError::Reject,
            now(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("limit of 3 records"), "{error}");
    let error = hub
        .ingest(
            &texts,
            Format::Csv,
            b"n\na\nb\nc\nd\n",
            OnError::Reject,
            now(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("limit of 3 records"), "{error}");
    // At the limit, blank lines and the header not counted, a body is accepted.
    let three = "{\"n\":\"a\"}\n\n\n\n".repeat(3);
    hub.ingest(
        &texts,
        Format::Ndjson,
        three.as_bytes(),
        OnError::Reject,
        now(),
    )
    .unwrap();
    hub.ingest(&texts, Format::Csv, b"n\na\nb\nc\n", OnError::Reject, now())
        .unwrap();
    assert_eq!(hub.snapshot(&texts).unwrap().rows(), 6);
}

/// The bounds are on ingest only: what was acknowledged is read back from the log whatever
/// the limits are now.
#[test]
fn a_logged_body_is_read_back_whatever_the_limits() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    let numbers = DatasetName::parse("sec.numbers").unwrap();
    hub.create_dataset(one_field_def("sec.numbers", "float"), now())
        .unwrap();
    let values: arrow::array::ArrayRef = Arc::new(arrow::array::Float64Array::from_iter_values(
        (0..10).map(f64::from),
    ));
    hub.ingest_bytes(
        &numbers,
        Format::Parquet,
        bytes::Bytes::from(parquet_of(&batch_of(vec![("n", values)]))),
        OnError::Reject,
        now(),
    )
    .unwrap();
    drop(hub);
    let hub = limited(dir.path(), 2, 64);
    assert_eq!(hub.snapshot(&numbers).unwrap().rows(), 10);
}

fn passages_hub(dir: &std::path::Path) -> Hub {
    let hub = open(dir, 1_000_000);
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now())
        .unwrap();
    hub
}

/// Issue 20, item 13: a byte order mark (as Excel writes one) is skipped in NDJSON as in CSV.
#[test]
fn a_byte_order_mark_is_skipped_in_ndjson_as_in_csv() {
    let dir = tempfile::tempdir().unwrap();
    let hub = passages_hub(dir.path());
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(&ndjson(0..2, "2026-11-22"));
    hub.ingest(&name(), Format::Ndjson, &with_bom, OnError::Reject, now())
        .unwrap();
    let csv = "\u{feff}ts,checkpoint_id,plate\n2026-11-22T09:00:00Z,1,浙B1\n";
    hub.ingest(&name(), Format::Csv, csv.as_bytes(), OnError::Reject, now())
        .unwrap();
    assert_eq!(rows(&hub), 3);
}

/// Issue 20, item 13: a field given twice (a JSON key, a CSV column) is refused with its line
/// and field, never resolved by the last value winning.
#[test]
fn a_field_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = passages_hub(dir.path());
    // A JSON key twice.
    let body = b"{\"ts\":\"2026-11-22T08:00:00Z\",\"checkpoint_id\":1,\"plate\":\"a\"}\n\
{\"ts\":\"2026-11-22T08:00:00Z\",\"checkpoint_id\":1,\"plate\":\"a\",\"plate\":\"b\"}\n";
    let HubError::BatchRejected { rejected } = hub
        .ingest(&name(), Format::Ndjson, body, OnError::Reject, now())
        .unwrap_err()
    else {
        panic!()
    };
    let listed: Vec<_> = rejected
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_deref()))
        .collect();
    assert_eq!(listed, vec![(2, Some("plate"))]);
    assert!(rejected.problems[0].reason.contains("more than once"));
    // A CSV column twice: the header is refused, naming the line and the column.
    let csv = "ts,plate,checkpoint_id,plate\n2026-11-22T09:00:00Z,a,1,b\n";
    let error = hub
        .ingest(&name(), Format::Csv, csv.as_bytes(), OnError::Reject, now())
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("line 1"), "{message}");
    assert!(
        message.contains("column 'plate' appears more than once (columns 2 and 4)"),
        "{message}"
    );
    assert_eq!(rows(&hub), 0);
}

/// Issue 20, item 13: NaN and infinities, refused in CSV (and impossible in JSON), are refused
/// in Parquet too, with the row and the field.
#[test]
fn non_finite_numbers_are_refused_in_parquet_as_in_csv() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    let numbers = DatasetName::parse("sec.numbers").unwrap();
    hub.create_dataset(one_field_def("sec.numbers", "float"), now())
        .unwrap();
    let error = hub
        .ingest(
            &numbers,
            Format::Csv,
            b"n\n1.5\nNaN\n",
            OnError::Reject,
            now(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("1 of 2 records"), "{error}");
    let values: arrow::array::ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![
        1.5,
        f64::NAN,
        f64::INFINITY,
    ]));
    let body = parquet_of(&batch_of(vec![("n", values)]));
    let HubError::BatchRejected { rejected } = hub
        .ingest(&numbers, Format::Parquet, &body, OnError::Reject, now())
        .unwrap_err()
    else {
        panic!()
    };
    let listed: Vec<_> = rejected
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_deref(), p.reason.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (2, Some("n"), "'NaN' is not a finite number"),
            (3, Some("n"), "'inf' is not a finite number"),
        ]
    );
    // Skip mode keeps the finite one and the two refused as dead letters: nothing lost.
    let report = hub
        .ingest(&numbers, Format::Parquet, &body, OnError::Skip, now())
        .unwrap();
    assert_eq!((report.accepted, report.rejected), (1, 2));
    assert_eq!(
        hub.snapshot(&numbers.rejected()).unwrap().rows(),
        2,
        "the refused rows are kept"
    );
}

/// Issue 20, item 13: Parquet problems name the row and the field like the other formats: a
/// value that does not fit is a problem of its row (not of the whole body), and a body the
/// reader cannot decode names the rows and the column it failed in.
#[test]
fn parquet_problems_name_the_row_and_the_field() {
    use arrow::array::{ArrayRef, Float64Array, StringArray, StructArray, TimestampSecondArray};
    use arrow::datatypes::{DataType, Field, Fields};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    let def = DatasetDef::from_file_text(
        "d.toml",
        "name = \"sec.places\"\nowner = \"sec\"\n\
         [[fields]]\nname = \"ts\"\ntype = \"timestamp\"\n\
         [[fields]]\nname = \"loc\"\ntype = \"geo\"\nnullable = true\n\
         [[fields]]\nname = \"label\"\ntype = \"string\"\nnullable = true\n",
    )
    .unwrap();
    let places = def.name.clone();
    hub.create_dataset(def, now()).unwrap();

    // Seconds that overflow microseconds; a longitude that is not a number; a point without
    // its longitude (a nullable member inside a valid point).
    let ts: ArrayRef = Arc::new(TimestampSecondArray::from(vec![
        1_763_800_000,
        100_000_000_000_000_000,
        1_763_800_000,
        1_763_800_000,
    ]));
    let members = Fields::from(vec![
        Field::new("lon", DataType::Utf8, true),
        Field::new("lat", DataType::Float64, false),
    ]);
    let loc: ArrayRef = Arc::new(StructArray::new(
        members,
        vec![
            Arc::new(StringArray::from(vec![
                Some("120.1"),
                Some("120.2"),
                Some("abc"),
                None,
            ])),
            Arc::new(Float64Array::from(vec![30.1, 30.2, 30.3, 30.4])),
        ],
        None,
    ));
    let body = parquet_of(&batch_of(vec![("ts", ts), ("loc", loc)]));
    let error = hub
        .ingest(&places, Format::Parquet, &body, OnError::Reject, now())
        .unwrap_err();
    let HubError::BatchRejected { rejected } = error else {
        panic!("{error}")
    };
    let listed: Vec<_> = rejected
        .problems
        .iter()
        .map(|p| (p.line, p.field.as_deref()))
        .collect();
    assert_eq!(
        listed,
        vec![(2, Some("ts")), (3, Some("loc")), (4, Some("loc"))],
        "{:?}",
        rejected.problems
    );
    assert!(
        rejected.problems[0].reason.contains("100000000000000000")
            || rejected.problems[0].reason.contains("does not fit")
    );
    assert!(
        rejected.problems[1].reason.contains("'abc'"),
        "{:?}",
        rejected.problems[1]
    );
    assert!(
        rejected.problems[2].reason.contains("no lon"),
        "{:?}",
        rejected.problems[2]
    );

    // A column given twice is refused, as in CSV.
    let labels = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    let ts: ArrayRef = Arc::new(TimestampSecondArray::from(vec![1_763_800_000]));
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        Field::new("ts", ts.data_type().clone(), false),
        Field::new("label", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
    ]));
    let twice =
        arrow::array::RecordBatch::try_new(schema, vec![ts.clone(), labels("a"), labels("b")])
            .unwrap();
    let error = hub
        .ingest(
            &places,
            Format::Parquet,
            &parquet_of(&twice),
            OnError::Reject,
            now(),
        )
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("column 'label' appears more than once (columns 2 and 3)"),
        "{error}"
    );

    // A body whose pages do not decode: the error names the rows and the column.
    let n = 1000;
    let ts: ArrayRef = Arc::new(TimestampSecondArray::from(vec![1_763_800_000; n]));
    let label: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("label number {i} of a batch")),
    ));
    let batch = batch_of(vec![("ts", ts), ("label", label)]);
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .build();
    let mut body = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut body, batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes::Bytes::from(body.clone()))
        .unwrap();
    let (start, length) = metadata.row_group(0).column(1).byte_range();
    let (start, length) = (start as usize, length as usize);
    for byte in &mut body[start + length / 2..start + length - 4] {
        *byte = 0xFF;
    }
    let error = hub
        .ingest(&places, Format::Parquet, &body, OnError::Reject, now())
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&format!("rows 1-{n}")), "{message}");
    assert!(message.contains("field 'label'"), "{message}");
    assert_eq!(hub.snapshot(&places).unwrap().rows(), 0);
}

/// Issue 20, item 9: an owner can delete a dataset; its files go, and a dataset created
/// again under the name starts empty (even when a crash left the old files behind).
#[test]
fn a_deleted_dataset_is_gone_and_a_new_one_of_its_name_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::open(dir.path(), HubConfig::default()).unwrap();
    let def = DatasetDef::from_file_text(
        "d.toml",
        "name = \"t.gone\"\nowner = \"t\"\n[[fields]]\nname = \"a\"\ntype = \"int\"\n",
    )
    .unwrap();
    let name = def.name.clone();
    hub.create_dataset(def.clone(), Timestamp(0)).unwrap();
    hub.ingest(
        &name,
        Format::Ndjson,
        b"{\"a\":1}\n{\"a\":2}\n",
        OnError::Reject,
        Timestamp(1),
    )
    .unwrap();
    let files = dir.path().join("datasets").join("t.gone");
    assert!(files.exists());
    assert!(matches!(
        hub.delete_dataset(&name.rejected()),
        Err(citybrain_hub::HubError::ReadOnly(_))
    ));
    assert_eq!(hub.delete_dataset(&name).unwrap(), 2);
    assert!(!files.exists());
    assert!(hub.definition(&name).is_err());
    assert!(hub.definition(&name.rejected()).is_err());
    // A crash after the catalog forgot it but before the files went: files come back.
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("stale"), b"old").unwrap();
    drop(hub);
    let hub = Hub::open(dir.path(), HubConfig::default()).unwrap();
    assert!(hub.definition(&name).is_err());
    hub.create_dataset(def, Timestamp(2)).unwrap();
    assert_eq!(hub.info(&name).unwrap().rows, 0);
    assert!(!files.join("stale").exists());
}

/// Found by fuzzing: a Parquet footer stating a negative column offset made the parquet
/// crate assert (a panic in the decoder); now the body is refused with the column named.
/// The demo's passages definition, whose columns the crafted and fuzzed Parquet bodies match.
fn passages_def() -> DatasetDef {
    DatasetDef::from_file_text(
        "d.toml",
        include_str!("../../gen/definitions/transport.anpr_passages.toml"),
    )
    .unwrap()
}

#[test]
fn a_parquet_body_with_impossible_offsets_is_refused_not_a_panic() {
    // The demo's definition, whose columns the crafted file matches (as the fuzzer's did).
    let def = passages_def();
    let body = include_bytes!("data/crafted_negative_offset.parquet");
    let e = citybrain_hub::decode::decode(&def, Format::Parquet, body).unwrap_err();
    assert!(e.to_string().contains("outside the file"), "{e}");
}

/// Found by fuzzing: a Parquet body whose definition levels claim more values than a page
/// holds made the parquet crate's level decoder assert (a panic in the decoder); now the
/// body is refused as malformed, with nothing decoded.
#[test]
fn a_parquet_body_with_impossible_definition_levels_is_refused_not_a_panic() {
    let def = passages_def();
    // The fuzzer's input: its first byte picked the format.
    let body = &include_bytes!("data/fuzzed_definition_levels_panic.bin")[1..];
    let e = citybrain_hub::decode::decode(&def, Format::Parquet, body).unwrap_err();
    assert!(e.to_string().contains("definition levels"), "{e}");
}

#[test]
fn a_parquet_page_encoded_with_a_dictionary_it_lacks_is_refused_not_a_panic() {
    let def = passages_def();
    // The fuzzer's input (2026-12-04, an hour of `records`): its first byte picked the
    // format. A data page says RLE_DICTIONARY and its column chunk has no dictionary page.
    let body = &include_bytes!("data/fuzzed_dictionary_missing_panic.bin")[1..];
    let e = citybrain_hub::decode::decode(&def, Format::Parquet, body).unwrap_err();
    assert!(e.to_string().contains("no dictionary page"), "{e}");
    assert!(e.to_string().contains("row group 1, column"), "{e}");
}

#[test]
fn a_parquet_footer_declaring_billions_of_elements_is_refused_at_once() {
    let def = passages_def();
    // The fuzzer's input (2026-12-04, `records`, a timeout): 667 bytes whose footer holds
    // a field the parquet crate does not know, a list declaring 2³¹ booleans, which the
    // crate skipped one by one, taking no bytes each (3.3 s in a release build).
    let body = &include_bytes!("data/fuzzed_thrift_list_of_booleans.bin")[1..];
    let e = citybrain_hub::decode::decode(&def, Format::Parquet, body).unwrap_err();
    assert!(e.to_string().contains("footer's metadata"), "{e}");
    assert!(e.to_string().contains("declares"), "{e}");
}

#[test]
fn a_shared_log_frame_whose_schema_declares_a_union_is_refused_not_a_panic() {
    // The fuzzer's input (2026-12-04, `shared_log`): one IPC frame whose schema declares a
    // union with type ids the union has no field for (and, before it, a field of no type);
    // arrow-ipc 59.3.2 panicked converting it. A node replaying the cluster's log at start
    // reads such frames.
    let frame = bytes::Bytes::from_static(include_bytes!("data/fuzzed_ipc_union_type_ids.bin"));
    let e = citybrain_hub::log::parse_frames(frame).unwrap_err();
    assert!(e.to_string().contains("frame at byte 0"), "{e}");
    assert!(
        e.to_string().contains("which no dataset field maps to"),
        "{e}"
    );
}

#[test]
fn a_shared_log_frame_whose_buffers_lie_outside_its_body_is_refused_not_a_panic() {
    // The fuzzer's input (2026-12-04, `shared_log`, after the schema check): a record
    // batch stating a buffer past the end of its body; arrow-ipc 59.3.2 asserted slicing it.
    let frame =
        bytes::Bytes::from_static(include_bytes!("data/fuzzed_ipc_buffer_outside_body.bin"));
    let e = citybrain_hub::log::parse_frames(frame).unwrap_err();
    assert!(e.to_string().contains("lies outside its body"), "{e}");
}
