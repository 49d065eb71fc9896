//! The demo city alive: its day loaded up to the demo clock, the rest sent as the clock
//! passes each record's time; killed mid-day and started again, nothing is sent twice and
//! nothing is lost.

mod common;
use common::*;

fn passages_in_file(server: &Server) -> Vec<i64> {
    let text = std::fs::read_to_string(server.data.join("demo/anpr_passages.ndjson")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            citybrain_core::Timestamp::parse(v["ts"].as_str().unwrap())
                .unwrap()
                .0
        })
        .collect()
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed().as_secs() < 120,
            "waited two minutes for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_demo_day_arrives_as_its_clock_runs_and_a_crash_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let day = [
        "--scale",
        "0.02",
        "--demo-day",
        "2026-11-22",
        "--demo-from",
        "08:00",
    ];
    let server = start(dir.path(), &[&day[..], &["--demo-speed", "600"]].concat());
    let times = passages_in_file(&server);
    let eight = citybrain_core::Timestamp::parse("2026-11-22T08:00:00+08:00")
        .unwrap()
        .0;
    let after_eight = times.iter().filter(|t| **t > eight).count();
    assert!(
        after_eight > 1000,
        "most of the day is after 08:00: {after_eight}"
    );
    // The banner says how much is still to come (passages and parking events).
    until("the banner", || {
        server.printed.lock().unwrap().contains("demo day:")
    });
    let printed = server.printed.lock().unwrap().clone();
    assert!(
        printed.contains("demo day:       2026-11-22, live:"),
        "{printed}"
    );
    // Loaded up to 08:00 at start; more arrives as the clock runs (ten minutes a second).
    let count = |server: &Server| server.count("transport.anpr_passages") as usize;
    let before = times.len() - after_eight;
    assert!(count(&server) >= before);
    until("the replay to send passages after 08:00", || {
        count(&server) > before + 50
    });
    // Killed mid-day, wherever the replay was.
    server.kill9();

    // Started again, faster: the rest of the day arrives, and nothing twice.
    let server = start(
        dir.path(),
        &[&day[..], &["--demo-speed", "100000"]].concat(),
    );
    until("the whole day", || count(&server) >= times.len());
    let rows = server.sql(
        "SELECT count(*) AS n, count(DISTINCT concat(CAST(ts AS VARCHAR), plate, CAST(checkpoint_id AS VARCHAR))) AS distinct_rows, max(ts) AS newest FROM transport.anpr_passages",
    );
    assert_eq!(rows[0]["n"].as_u64(), Some(times.len() as u64), "{rows}");
    assert_eq!(rows[0]["n"], rows[0]["distinct_rows"], "{rows}");
    // Parking's events arrived the same way: every gate read of the file, once.
    let gates = std::fs::read_to_string(dir.path().join("demo/parking_gate_events.ndjson"))
        .unwrap()
        .lines()
        .count() as i64;
    until("every gate read", || {
        server.count("parking.gate_events") >= gates
    });
    assert_eq!(server.count("parking.gate_events"), gates);
    assert!(server.stop().success());
}
