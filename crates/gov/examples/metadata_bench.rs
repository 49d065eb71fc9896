//! The cost of keeping governance and the audit trail in PostgreSQL (a cluster) against
//! SQLite and files (one machine), same process, same run (bench/cluster/metadata;
//! docs/benchmarks.md "Metadata in PostgreSQL"). `CITYBRAIN_BENCH_PG` names the database.
//!
//! Measured per backend: a token check (`Gov::authenticate`, what every call does first),
//! one caller appending audit records, and 8 callers appending at once (the group commit),
//! and, for PostgreSQL, two hubs (two nodes) appending to the one chain at once. Each
//! run ends with the trail verified, so a fast wrong answer cannot pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_core::Timestamp;
use citybrain_gov::Gov;
use citybrain_gov::audit::{Call, CallKind};

fn now() -> Timestamp {
    Timestamp(1_796_000_000_000_000)
}

fn call(i: usize) -> Call {
    let mut c = Call::new(now(), "admin", "hub", CallKind::Sql);
    c.rows = i as u64;
    c.detail = "SELECT count(*) FROM transport.anpr_passages".into();
    c
}

fn percentiles(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    serde_json::json!({"n": samples.len(), "p50_us": at(0.5), "p99_us": at(0.99)})
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn measure(gov: &Arc<Gov>, token: &str, n: usize) -> serde_json::Value {
    // Warm: statements prepared, pages cached.
    for _ in 0..200 {
        gov.authenticate(token, now()).unwrap();
    }
    let auth: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            gov.authenticate(token, now()).unwrap();
            t.elapsed()
        })
        .collect();
    let append: Vec<Duration> = (0..n / 4)
        .map(|i| {
            let t = Instant::now();
            gov.record(call(i)).unwrap();
            t.elapsed()
        })
        .collect();
    let callers = 8;
    let each = n / 8;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..callers {
            s.spawn(|| {
                for i in 0..each {
                    gov.record(call(i)).unwrap();
                }
            });
        }
    });
    serde_json::json!({
        "authenticate": percentiles(auth),
        "audit_append_one_caller": percentiles(append),
        "audit_appends_8_callers_per_s": rate(callers * each, start.elapsed()),
    })
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: calls per measure"))
        .unwrap_or(4000);
    let url = std::env::var("CITYBRAIN_BENCH_PG").expect("CITYBRAIN_BENCH_PG: a database URL");
    let pg = citybrain_metadb::Postgres::new(url);

    let embedded_dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(Gov::open(embedded_dir.path(), now()).unwrap());
    let token = embedded.issue_admin_token(now()).unwrap().token;
    let embedded_result = measure(&embedded, &token, n);
    let key = Gov::audit_key(embedded_dir.path()).unwrap();
    let check = citybrain_gov::audit::verify(&embedded_dir.path().join("audit"), &key).unwrap();
    assert!(check.is_intact(), "{:?}", check.problems);

    let node_a = tempfile::tempdir().unwrap();
    let node_b = tempfile::tempdir().unwrap();
    let a = Arc::new(Gov::open_with(node_a.path(), Some(&pg), now()).unwrap());
    std::fs::copy(
        node_a.path().join("secret.key"),
        node_b.path().join("secret.key"),
    )
    .unwrap();
    let b = Arc::new(Gov::open_with(node_b.path(), Some(&pg), now()).unwrap());
    let token = a.issue_admin_token(now()).unwrap().token;
    let postgres_result = measure(&a, &token, n);
    // Two nodes, 4 callers each, on the one chain.
    let each = n / 8;
    let start = Instant::now();
    std::thread::scope(|s| {
        for gov in [&a, &b, &a, &b, &a, &b, &a, &b] {
            s.spawn(move || {
                for i in 0..each {
                    gov.record(call(i)).unwrap();
                }
            });
        }
    });
    let two_nodes = rate(8 * each, start.elapsed());
    let key = Gov::audit_key(node_a.path()).unwrap();
    let check = citybrain_gov::audit::verify_shared(&pg, &key).unwrap();
    assert!(check.is_intact(), "{:?}", check.problems);

    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "calls_per_measure": n,
            "embedded": embedded_result,
            "postgres": postgres_result,
            "postgres_two_nodes_8_callers_per_s": two_nodes,
            "postgres_trail_records_verified": check.records,
        }))
        .unwrap()
    );
}
