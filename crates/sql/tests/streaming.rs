//! Results handed out while they are produced (`SqlEngine::stream_with_params_as`, the
//! Postgres wire's path): the same rows and masks as `query_as`, the first rows out before
//! the statement has produced its last, and every read on the audit trail before its first
//! row leaves, with its total when it ends.

mod common;

use std::time::{Duration, Instant};

use citybrain_core::DatasetName;
use citybrain_gov::audit::Entry;
use citybrain_gov::{CallKind, Gov, Outcome, Role};
use citybrain_sql::{DataCall, HOLD_ROWS, Reader, ResultStream};
use common::*;
use futures::StreamExt;

/// 40,000 × 12 people: far more batches than the statement may run ahead of its reader.
/// No ORDER BY: the rows are compared as sets.
const LONG: &str = "SELECT g.value AS n, p.plate, p.district FROM generate_series(1, 40000) g CROSS JOIN transport.people_u p";
const LONG_ROWS: u64 = 40_000 * PEOPLE as u64;

fn call(city: &City) -> DataCall {
    DataCall {
        reader: Reader::Principal(principal("market_admin", "market", Role::Admin)),
        purpose: "streaming test".into(),
        kind: CallKind::Sql,
        now: city.now,
    }
}

fn stream(city: &City, sql: &str) -> ResultStream {
    city.rt
        .block_on(
            city.engine
                .stream_with_params_as(sql, Vec::new(), &call(city)),
        )
        .unwrap()
}

fn calls(city: &City) -> Vec<Entry> {
    city.gov
        .audit()
        .calls_on(&DatasetName::parse("transport.people_u").unwrap(), 100)
        .unwrap()
}

fn ok_calls(city: &City) -> String {
    city.gov
        .metrics_text(&Gov::admin_principal(), |_| None)
        .lines()
        .filter(|l| {
            l.contains(
                "department=\"market\",dataset=\"transport.people_u\",kind=\"sql\",outcome=\"ok\"",
            )
        })
        .collect()
}

#[test]
fn a_long_result_streams_with_the_rows_and_masks_of_query_as_and_is_audited_before_and_after() {
    let city = city();
    let whole = city
        .rt
        .block_on(city.engine.query_as(LONG, &call(&city)))
        .unwrap();
    assert_eq!(whole.rows() as u64, LONG_ROWS);
    let before = calls(&city).len();
    let counted = ok_calls(&city);

    let mut result = stream(&city, LONG);
    assert_eq!(result.schema(), &whole.schema);
    let first = city.rt.block_on(result.next()).unwrap().unwrap();
    // Recorded before the first row left, and not yet closed: the statement has produced
    // at most a few batches past what it held.
    let opened = calls(&city);
    assert_eq!(opened.len(), before + 1, "one record so far");
    let open = opened.last().unwrap();
    assert!(
        open.call.detail.contains("streamed"),
        "{}",
        open.call.detail
    );
    assert!(open.call.rows >= HOLD_ROWS as u64 && open.call.rows < LONG_ROWS);
    assert_eq!(open.call.closes, None);
    assert_eq!(open.call.datasets[0].fields, vec!["district", "plate"]);

    let mut batches = vec![first];
    while let Some(batch) = city.rt.block_on(result.next()) {
        batches.push(batch.unwrap());
    }
    // The same rows, masks included (the statement has no order: compared as sets).
    let lines = |batches: &[arrow::array::RecordBatch]| {
        let text = arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(lines(&batches), lines(&whole.batches));
    assert!(
        !format!("{:?}", batches[0].column(1)).contains(&plate(0)),
        "the plate is masked for market"
    );
    // The closing record came before the end of the stream: the total and the call it closes.
    let closed = calls(&city);
    assert_eq!(closed.len(), before + 2);
    let close = closed.last().unwrap();
    assert_eq!(close.call.closes, Some(open.seq));
    assert_eq!(close.call.rows, LONG_ROWS);
    assert_eq!(close.call.outcome, Outcome::Ok);
    // One call in the counters, not two.
    let n = |text: &str| -> u64 { text.rsplit(' ').next().unwrap().parse().unwrap() };
    assert_eq!(n(&ok_calls(&city)), n(&counted) + 1);
    // The trail with its closing records still verifies.
    let key = Gov::audit_key(city._dir.path()).unwrap();
    let check = citybrain_gov::audit::verify(&city._dir.path().join("audit"), &key).unwrap();
    assert!(check.is_intact(), "{:?}", check.problems);
}

#[test]
fn a_short_result_is_recorded_once_with_its_count() {
    let city = city();
    let before = calls(&city).len();
    let mut result = stream(&city, "SELECT plate FROM transport.people_u");
    let mut rows = 0;
    while let Some(batch) = city.rt.block_on(result.next()) {
        rows += batch.unwrap().num_rows();
    }
    assert_eq!(rows, PEOPLE);
    let after = calls(&city);
    assert_eq!(after.len(), before + 1);
    let last = after.last().unwrap();
    assert_eq!((last.call.rows, last.call.closes), (PEOPLE as u64, None));
    assert!(!last.call.detail.contains("streamed"));
}

#[test]
fn a_reader_that_stops_reading_stops_the_statement_and_the_trail_says_so() {
    let city = city();
    let mut result = stream(&city, LONG);
    city.rt.block_on(result.next()).unwrap().unwrap();
    let open = calls(&city).last().unwrap().seq;
    drop(result);
    // The statement notices at its next batch; wait for its closing record.
    let since = Instant::now();
    let close = loop {
        if let Some(close) = calls(&city)
            .into_iter()
            .find(|e| e.call.closes == Some(open))
        {
            break close;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "no closing record"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        close.call.detail.contains("stopped reading"),
        "{}",
        close.call.detail
    );
    assert!(close.call.rows < LONG_ROWS, "{}", close.call.rows);
}

#[test]
fn a_refusal_is_an_error_before_any_row_and_is_audited() {
    let city = city();
    let refused = city.rt.block_on(city.engine.stream_with_params_as(
        "SELECT * FROM transport.people_c",
        Vec::new(),
        &call(&city),
    ));
    assert!(matches!(refused, Err(citybrain_sql::SqlError::Denied(_))));
    assert_market_denied_people_c_once(&city);
}

#[test]
fn a_reader_too_slow_for_the_timeout_gets_an_error_not_a_shorter_result() {
    let city = city();
    let timeout = Duration::from_secs(2);
    let engine = citybrain_sql::SqlEngine::new(
        city.hub.clone(),
        citybrain_sql::SqlLimits {
            timeout,
            ..Default::default()
        },
    )
    .with_gov(city.gov.clone());
    let mut result = city
        .rt
        .block_on(engine.stream_with_params_as(LONG, Vec::new(), &call(&city)))
        .unwrap();
    let mut rows = city.rt.block_on(result.next()).unwrap().unwrap().num_rows() as u64;
    // The reader stalls past the statement's timeout while the statement waits on it.
    std::thread::sleep(timeout + Duration::from_millis(500));
    let mut failed = None;
    while let Some(batch) = city.rt.block_on(result.next()) {
        match batch {
            Ok(batch) => rows += batch.num_rows() as u64,
            Err(e) => failed = Some(e),
        }
    }
    assert!(rows < LONG_ROWS, "{rows}");
    assert!(
        matches!(failed, Some(citybrain_sql::SqlError::Timeout(_))),
        "{failed:?} after {rows} rows"
    );
}
