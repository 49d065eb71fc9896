//! The change feed on a real data directory: catch-up then live, in order, each batch once;
//! committed positions survive a restart; a seal (which reorders rows by day) loses no place.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::{Change, DatasetDef, Format, Hub, HubConfig, OnError, Positions};

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

fn ndjson(range: std::ops::Range<usize>, day: &str) -> Vec<u8> {
    range
        .map(|i| {
            format!(
                "{{\"ts\":\"{day}T08:00:00Z\",\"checkpoint_id\":{i},\"plate\":\"浙A{i:05}\"}}\n"
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// The checkpoint ids a change carries, in order.
fn ids(change: &Change) -> Vec<i64> {
    change
        .batches
        .iter()
        .flat_map(|b: &RecordBatch| {
            let column = b.column_by_name("checkpoint_id").unwrap();
            column.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

fn ingest(
    hub: &Hub,
    range: std::ops::Range<usize>,
    day: &str,
    now: Timestamp,
) -> citybrain_hub::Position {
    hub.ingest(
        &name(),
        Format::Ndjson,
        &ndjson(range, day),
        OnError::Reject,
        now,
    )
    .unwrap()
    .position
    .expect("a stored batch has a position")
}

#[test]
fn catch_up_then_live_each_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), 1_000_000);
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now)
        .unwrap();
    // The same wall-clock time for every call: positions must still increase.
    let p1 = ingest(&hub, 0..3, "2026-11-22", now);
    let p2 = ingest(&hub, 3..5, "2026-11-21", now);
    assert!(
        p2 > p1,
        "positions are strictly increasing: {p1:?} then {p2:?}"
    );
    let mut sub = hub.subscribe(&[name()], &Positions::new()).unwrap();
    assert_eq!(sub.catching_up(), 1, "both stored batches, joined");
    let first = sub.recv().unwrap();
    assert!(first.replayed);
    assert_eq!(ids(&first), vec![0, 1, 2, 3, 4]);
    assert_eq!(first.position, p2);
    let p3 = ingest(&hub, 5..6, "2026-11-22", now);
    let live = sub.recv().unwrap();
    assert!(!live.replayed);
    assert_eq!((ids(&live), live.position), (vec![5], p3));
    assert!(sub.try_recv().is_none(), "nothing is handed out twice");
    assert_eq!(hub.head(&name()), Some(p3));
}

#[test]
fn committed_positions_survive_a_restart_and_a_seal() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let committed;
    {
        let hub = open(dir.path(), 4);
        hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now)
            .unwrap();
        let mut sub = hub.subscribe(&[name()], &Positions::new()).unwrap();
        // Two days in one batch: the seal splits it by day, out of stamp order.
        let mut body = ndjson(0..2, "2026-11-23");
        body.extend(ndjson(2..4, "2026-11-21"));
        hub.ingest(&name(), Format::Ndjson, &body, OnError::Reject, now)
            .unwrap();
        let change = sub.recv().unwrap();
        assert_eq!(ids(&change), vec![0, 1, 2, 3]);
        hub.commit("indices", &Positions::from([(name(), change.position)]))
            .unwrap();
        // Stored after the commit, not applied before the "crash".
        ingest(&hub, 4..6, "2026-11-22", now);
        hub.seal_all().unwrap();
        hub.close();
        committed = hub.committed("indices").unwrap();
    }
    // The clock stepped back an hour across the restart: positions still increase.
    let earlier = Timestamp::parse("2026-11-22T09:00:00Z").unwrap();
    let hub = open(dir.path(), 1_000_000);
    assert_eq!(hub.committed("indices").unwrap(), committed);
    let mut sub = hub.subscribe(&[name()], &committed).unwrap();
    let missed = sub.recv().unwrap();
    assert_eq!(ids(&missed), vec![4, 5], "only what was not committed");
    let p = ingest(&hub, 6..7, "2026-11-22", earlier);
    assert!(p > missed.position);
    assert_eq!(ids(&sub.recv().unwrap()), vec![6]);
    assert!(hub.committed("nobody").unwrap().is_empty());
    assert!(hub.commit("../escape", &committed).is_err());
}

#[test]
fn concurrent_ingest_is_delivered_in_position_order() {
    let dir = tempfile::tempdir().unwrap();
    let hub = std::sync::Arc::new(open(dir.path(), 1_000_000));
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now)
        .unwrap();
    let mut sub = hub.subscribe(&[name()], &Positions::new()).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for k in 0..25 {
                    let start = w * 1000 + k * 10;
                    ingest(&hub, start..start + 10, "2026-11-22", now);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut last = None;
    let mut rows = 0;
    while let Some(change) = sub.try_recv() {
        assert!(Some(change.position) > last, "in position order");
        last = Some(change.position);
        rows += change.rows();
    }
    assert_eq!(rows, 1000);
}

/// Issue 30: the dataset list's size counts the unsealed log too, and its last-ingest time is
/// when the newest batch was stored, also after a restart (not the restart's time).
#[test]
fn info_shows_stored_bytes_and_the_real_last_ingest_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let stored_at = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let position = {
        let hub = open(dir.path(), 1_000_000);
        hub.create_dataset(
            DatasetDef::from_file_text("d.toml", DEF).unwrap(),
            stored_at,
        )
        .unwrap();
        ingest(&hub, 0..100, "2026-11-22", stored_at)
    };
    let hub = open(dir.path(), 1_000_000);
    let info = hub.info(&name()).unwrap();
    assert_eq!(info.segment_bytes, 0, "nothing sealed yet");
    assert!(info.stored_bytes > 1_000, "{}", info.stored_bytes);
    assert_eq!(
        info.last_ingest.as_deref(),
        Some(Timestamp(position.0).to_string().as_str())
    );
    assert_eq!(info.last_ingest.as_deref(), Some("2026-11-22T10:00:00Z"));
}
