//! Idempotency keys on ingest (issue 23): a call sent again with the key of one already
//! stored stores nothing again and answers what the first stored, whether the first is
//! still in the log, was sealed, or the hub restarted in between (the key is in the same
//! checksummed frame as its records, then in the seal's manifest).

use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, IngestCall, OnError};

const DEF: &str = include_str!("data/passages.toml");

fn name() -> DatasetName {
    DatasetName::parse("transport.anpr_passages").unwrap()
}

fn open(dir: &std::path::Path) -> Hub {
    Hub::open(
        dir,
        HubConfig {
            seal_rows: 1_000_000,
            ..HubConfig::default()
        },
    )
    .unwrap()
}

fn now() -> Timestamp {
    Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
}

fn ndjson(range: std::ops::Range<usize>) -> bytes::Bytes {
    let mut body = Vec::new();
    for i in range {
        body.extend_from_slice(
            format!(
                "{{\"ts\":\"2026-11-22T08:00:00Z\",\"checkpoint_id\":{i},\"plate\":\"浙A{i:05}\"}}\n"
            )
            .as_bytes(),
        );
    }
    body.into()
}

fn send(hub: &Hub, body: bytes::Bytes, key: &str) -> citybrain_hub::IngestReport {
    hub.ingest_call(
        &name(),
        Format::Ndjson,
        body,
        IngestCall {
            key: Some(key),
            on_error: OnError::Skip,
            ..IngestCall::default()
        },
        now(),
    )
    .unwrap()
}

fn rows(hub: &Hub) -> u64 {
    hub.snapshot(&name()).unwrap().rows()
}

#[test]
fn a_call_sent_again_with_its_key_stores_nothing_twice_across_restarts_and_seals() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now())
        .unwrap();
    let first = send(&hub, ndjson(0..10), "batch-1");
    assert_eq!((first.accepted, first.replayed), (10, false));
    let again = send(&hub, ndjson(0..10), "batch-1");
    assert!(again.replayed);
    assert_eq!(again.accepted, 10);
    assert_eq!(
        again.position, first.position,
        "the first call's place in the feed"
    );
    assert_eq!(rows(&hub), 10);
    // Another key is another call, even with the same body.
    assert!(!send(&hub, ndjson(0..10), "batch-2").replayed);
    assert_eq!(rows(&hub), 20);

    // Restarted: the keys come back from the log with their records.
    hub.close();
    drop(hub);
    let hub = open(dir.path());
    assert!(send(&hub, ndjson(0..10), "batch-1").replayed);
    assert_eq!(rows(&hub), 20);

    // Sealed: the keys move to the seal's manifest, and survive another restart there.
    assert_eq!(hub.seal_all().unwrap(), 20);
    assert!(send(&hub, ndjson(0..10), "batch-2").replayed);
    hub.close();
    drop(hub);
    let hub = open(dir.path());
    assert!(send(&hub, ndjson(0..10), "batch-1").replayed);
    assert!(send(&hub, ndjson(0..10), "batch-2").replayed);
    assert_eq!(rows(&hub), 20);
    assert!(!send(&hub, ndjson(10..15), "batch-3").replayed);
    assert_eq!(rows(&hub), 25);
}

#[test]
fn a_keyed_parquet_body_is_recognised_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path());
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now())
        .unwrap();
    send(&hub, ndjson(0..5), "seed");
    // A Parquet body made from what is stored (without the hub's own column).
    let stored = hub.snapshot(&name()).unwrap().tail[0].clone();
    let mut plain = stored.clone();
    plain.remove_column(stored.num_columns() - 1);
    let mut body = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut body, plain.schema(), None).unwrap();
    writer.write(&plain).unwrap();
    writer.close().unwrap();
    let call = |hub: &Hub| {
        hub.ingest_call(
            &name(),
            Format::Parquet,
            body.clone().into(),
            IngestCall {
                key: Some("file-2026-11-22"),
                ..IngestCall::default()
            },
            now(),
        )
        .unwrap()
    };
    assert!(!call(&hub).replayed);
    assert_eq!(rows(&hub), 10);
    hub.close();
    drop(hub);
    let hub = open(dir.path());
    let again = call(&hub);
    assert!(again.replayed);
    assert_eq!(again.accepted, 5);
    assert_eq!(rows(&hub), 10);
}

#[test]
fn keys_are_checked() {
    assert!(citybrain_hub::check_key("2026-11-22/batch-7").is_ok());
    assert!(citybrain_hub::check_key("").is_err());
    assert!(citybrain_hub::check_key("has space").is_err());
    assert!(citybrain_hub::check_key("浙A").is_err());
    assert!(citybrain_hub::check_key(&"k".repeat(201)).is_err());
}
