//! Every node reads the whole cluster's records (issue 25, item 2; target "a query on any
//! node sees every record acknowledged on any node before it started"), against a real
//! NATS JetStream server and a real PostgreSQL: with `[segments] backend = "directory"`,
//! a batch acknowledged by node a is counted by node b's very next query, with no wait;
//! once both nodes have sealed (their frames purged from the stream), each reads the
//! other's segments from the shared directory; every record is counted exactly once; and
//! after `kill -9` of node a, node b still reads a's unsealed records from the stream.

mod common;

use std::path::{Path, PathBuf};

use common::cluster::{Nats, Postgres, S3, deployment, deployment_with, node};
use common::{Server, free_port, wait_until};

fn ingest(server: &Server, b: usize) {
    let (status, text) = server.post(
        "/api/v1/datasets/transport.anpr_passages/records",
        "application/x-ndjson",
        common::passage_batch(b).as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
}

/// Sends batch `b` with an idempotency key; (status, "replayed").
fn ingest_keyed(server: &Server, b: usize, key: &str) -> (u16, bool) {
    let (status, text) = post_keyed(server, b, key);
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    (status, body["replayed"].as_bool().unwrap_or(false))
}

/// Sends batch `b` with `Idempotency-Key: key`; the status and the answer's text.
fn post_keyed(server: &Server, b: usize, key: &str) -> (u16, String) {
    let mut response = common::agent()
        .post(&format!(
            "{}/api/v1/datasets/transport.anpr_passages/records",
            server.base
        ))
        .header("Authorization", &format!("Bearer {}", server.token))
        .header("Content-Type", "application/x-ndjson")
        .header("Idempotency-Key", key)
        .send(common::passage_batch(b).as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// Node a (which creates the passages) and node b (with a's secret) over `config`.
fn two_nodes(dir: &Path, config: &str) -> (Server, Server, PathBuf, PathBuf) {
    let (data_a, data_b) = (dir.join("a"), dir.join("b"));
    let a = node(&data_a, config, &dir.join("a.log"));
    a.create_passages();
    std::fs::create_dir_all(&data_b).unwrap();
    std::fs::copy(data_a.join("secret.key"), data_b.join("secret.key")).unwrap();
    let b = node(&data_b, config, &dir.join("b.log"));
    (a, b, data_a, data_b)
}

/// (rows, distinct plates) as `server` answers: each batch's 50 plates are its own.
fn counted(server: &Server) -> (i64, i64) {
    let row = &server
        .sql("SELECT count(*) AS n, count(DISTINCT plate) AS plates FROM transport.anpr_passages")
        [0];
    (row["n"].as_i64().unwrap(), row["plates"].as_i64().unwrap())
}

#[test]
fn a_query_on_any_node_sees_every_record_acknowledged_on_any_node() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), free_port());
    let pg = Postgres::start();
    let config = deployment(dir.path(), &nats, &pg);
    let (a, b, data_a, data_b) = two_nodes(dir.path(), &config);

    // Acknowledged on one node, counted by the other's next query: no waiting.
    for batch in 0..3 {
        ingest(&a, batch);
        assert_eq!(
            counted(&b),
            (50 * (batch as i64 + 1), 50 * (batch as i64 + 1))
        );
    }
    for batch in 3..6 {
        ingest(&b, batch);
        assert_eq!(
            counted(&a),
            (50 * (batch as i64 + 1), 50 * (batch as i64 + 1))
        );
    }

    // Past --seal-rows on both: each seals its own records, publishes the seal and purges
    // its frames. Then each node reads the other's records from the shared directory.
    ingest(&a, 6);
    ingest(&b, 7);
    wait_until("both nodes' seals were never published and purged", || {
        pg.psql("SELECT count(DISTINCT owner) FROM seals WHERE dataset = 'transport.anpr_passages'")
            == "2"
            && nats.passage_frames(&data_a) == 0
            && nats.passage_frames(&data_b) == 0
    });
    assert!(
        std::fs::read_dir(dir.path().join("shared/transport.anpr_passages"))
            .unwrap()
            .count()
            == 2,
        "a directory of segments per node"
    );
    assert_eq!(counted(&a), (400, 400));
    assert_eq!(counted(&b), (400, 400));
    // The dataset's page counts the cluster's rows too.
    let (status, text) = b.get("/api/v1/datasets/transport.anpr_passages", Some(&b.token));
    assert_eq!(status, 200, "{text}");
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["rows"], 400, "{text}");

    // Sealed records and unsealed ones together, once each.
    ingest(&a, 8);
    ingest(&b, 9);
    assert_eq!(counted(&a), (500, 500));
    assert_eq!(counted(&b), (500, 500));

    // Node a dies with records unsealed: node b still reads them from the stream.
    a.kill9();
    assert_eq!(counted(&b), (500, 500));
    let by_checkpoint = b.sql(
        "SELECT checkpoint_id, count(*) AS n FROM transport.anpr_passages GROUP BY checkpoint_id ORDER BY checkpoint_id",
    );
    let total: i64 = by_checkpoint
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 500);

    // Back over its directory, node a answers for everyone again.
    let a = node(&data_a, &config, &dir.path().join("a2.log"));
    assert_eq!(counted(&a), (500, 500));
    ingest(&a, 10);
    assert_eq!(counted(&b), (550, 550));

    // A keyed call sent again to the other node is recognised there: from the first node's
    // unsealed frame in the stream, then (once sealed) from the seal book.
    assert_eq!(ingest_keyed(&a, 11, "call-11"), (200, false));
    assert_eq!(ingest_keyed(&b, 11, "call-11"), (200, true));
    assert_eq!(ingest_keyed(&a, 11, "call-11"), (200, true));
    assert_eq!(counted(&b), (600, 600));
    // Node a's tail reaches --seal-rows with one more batch: sealed and purged.
    ingest(&a, 12);
    wait_until("node a never sealed the keyed call", || {
        nats.passage_frames(&data_a) == 0
    });
    assert_eq!(ingest_keyed(&b, 11, "call-11"), (200, true));
    assert_eq!(counted(&a), (650, 650));
    assert_eq!(counted(&b), (650, 650));
    // A key that is not one is refused, naming the header.
    let (status, text) = post_keyed(&b, 14, "two words");
    assert_eq!(status, 400);
    assert!(
        text.contains("invalid_idempotency_key") && text.contains("Idempotency-Key"),
        "{text}"
    );
}

/// The short version of `bench/cluster/failover` (its 20-kill run is in docs/benchmarks.md):
/// three NATS servers (R=3), PostgreSQL and three nodes, one node killed with `kill -9`
/// during ingest three times, a different one each time. Every acknowledged batch is on
/// every node exactly once and whole, every other batch whole or absent.
#[test]
fn kill_9_of_a_node_during_ingest_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // A base with room for the 31 ports the script uses above it, all below Linux's
    // ephemeral range (32768 up), where the free ports other tests take and every
    // outgoing connection's port come from.
    let base = 20_000 + (std::process::id() as u16 % 120) * 100;
    let out = dir.path().join("failover.json");
    let status = std::process::Command::new(format!(
        "{}/../../bench/cluster/failover",
        common::manifest_dir()
    ))
    .args(["--kills", "3", "--every", "3", "--batch", "200"])
    .arg("--ports")
    .arg(base.to_string())
    .arg("--dir")
    .arg(dir.path().join("run"))
    .arg("--out")
    .arg(&out)
    .env("CITYBRAIN_BIN", env!("CARGO_BIN_EXE_citybrain"))
    .status()
    .expect("bench/cluster/failover runs (python3)");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the run wrote its result"))
            .unwrap();
    assert!(status.success(), "{result:#}");
    assert_eq!(result["problems"], serde_json::json!([]), "{result:#}");
    assert!(result["batches"]["ack"].as_u64().unwrap() > 0, "{result:#}");
    assert_eq!(result["kills"].as_array().unwrap().len(), 3);
}

/// Segments in object storage (S3 API; moto's server stands in for the city's store):
/// every node reads the other's sealed segments in place from the bucket, and a node whose
/// segments the store lost copies them again at its next start.
#[test]
fn segments_in_s3_are_read_in_place_and_restored_when_the_store_loses_them() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), free_port());
    let pg = Postgres::start();
    let s3 = S3::start();
    s3.create_bucket("city");
    let segments = format!(
        "backend = \"s3\"\nendpoint = \"{}\"\nbucket = \"city\"\nprefix = \"segments\"\n\
         access_key_id = \"citybrain\"\nsecret_access_key = \"not-a-real-secret\"\n",
        s3.endpoint()
    );
    let config = deployment_with(dir.path(), &nats, &pg, &segments);
    let (a, b, data_a, data_b) = two_nodes(dir.path(), &config);

    // 200 rows each: --seal-rows, so each node seals everything it took.
    for batch in 0..4 {
        ingest(&a, batch);
    }
    for batch in 4..8 {
        ingest(&b, batch);
    }
    wait_until("both nodes' seals were never published and purged", || {
        pg.psql("SELECT count(DISTINCT owner) FROM seals WHERE dataset = 'transport.anpr_passages'")
            == "2"
            && nats.passage_frames(&data_a) == 0
            && nats.passage_frames(&data_b) == 0
    });
    let keys = s3.keys("city", "segments/transport.anpr_passages/");
    assert_eq!(
        keys.len(),
        2,
        "one segment per node in the bucket: {keys:?}"
    );
    assert!(keys.iter().all(|k| k.ends_with(".parquet")), "{keys:?}");
    // And one unsealed batch each, read from the stream.
    ingest(&a, 8);
    ingest(&b, 9);
    assert_eq!(counted(&a), (500, 500));
    assert_eq!(counted(&b), (500, 500));
    let grouped = b.sql(
        "SELECT checkpoint_id, count(*) AS n FROM transport.anpr_passages WHERE checkpoint_id = 2 GROUP BY checkpoint_id",
    );
    assert!(grouped[0]["n"].as_i64().unwrap() > 0, "{grouped}");
    // The secret key shows nowhere in what the nodes print.
    for log in ["a.log", "b.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap();
        assert!(
            !text.contains("not-a-real-secret"),
            "{log} shows the secret key"
        );
    }

    // The store loses everything (a new, empty bucket): each node, started again, copies
    // its own segments back, and both count every record again.
    drop(s3);
    let s3 = S3::start();
    s3.create_bucket("city");
    a.kill9();
    b.kill9();
    let segments = format!(
        "backend = \"s3\"\nendpoint = \"{}\"\nbucket = \"city\"\nprefix = \"segments\"\n\
         access_key_id = \"citybrain\"\nsecret_access_key = \"not-a-real-secret\"\n",
        s3.endpoint()
    );
    let config = deployment_with(dir.path(), &nats, &pg, &segments);
    let a = node(&data_a, &config, &dir.path().join("a2.log"));
    let b = node(&data_b, &config, &dir.path().join("b2.log"));
    assert_eq!(
        s3.keys("city", "segments/transport.anpr_passages/").len(),
        2
    );
    assert_eq!(counted(&a), (500, 500));
    assert_eq!(counted(&b), (500, 500));
}
