//! Durable ingest into the hub with the embedded log against the log in NATS JetStream,
//! same run, same work (issue 25's target: JetStream at least half the embedded rate):
//! `BATCHES` NDJSON batches of 10,000 passages, each acknowledged (fsynced, or stored by
//! the stream) before the next, into a fresh data directory; rounds alternate between the
//! two and the median of `ROUNDS` is reported. Starts its own nats-server (JetStream,
//! `sync_interval: always`, so a stored message is fsynced as the embedded log's frame is)
//! from `CITYBRAIN_NATS_SERVER` (scripts/install-nats).
//!
//! `cargo run --release -p citybrain-jetstream --example log_bench -- [BATCHES] [ROUNDS]`

use std::sync::Arc;

use citybrain_core::{DatasetName, Timestamp};
use citybrain_hub::log::SharedLog;
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, OnError};

#[path = "../../hub/examples/shared/passages.rs"]
mod passages;

const DEF: &str = include_str!("../../hub/tests/data/passages.toml");

/// Rows per second ingesting `bodies` into a fresh hub.
fn run(bodies: &[Vec<u8>], shared: Option<Arc<dyn SharedLog>>) -> f64 {
    let dir = std::env::temp_dir().join(format!("log-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let hub = Hub::open(
        &dir,
        HubConfig {
            seal_rows: 1_000_000,
            shared_log: shared,
            ..HubConfig::default()
        },
    )
    .unwrap();
    let name = DatasetName::parse("transport.anpr_passages").unwrap();
    // Drops what an earlier round left in the stream too.
    let _ = hub.delete_dataset(&name);
    hub.create_dataset(DatasetDef::from_file_text("d.toml", DEF).unwrap(), now)
        .unwrap();
    let started = std::time::Instant::now();
    for body in bodies {
        hub.ingest(&name, Format::Ndjson, body, OnError::Reject, now)
            .unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Both logs must have stored the same thing: every row, each once, readable.
    let snapshot = hub.snapshot(&name).unwrap();
    assert_eq!(snapshot.rows(), (bodies.len() * 10_000) as u64);
    hub.close();
    let _ = std::fs::remove_dir_all(&dir);
    (bodies.len() * 10_000) as f64 / elapsed
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let batches: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let nats = std::env::var("CITYBRAIN_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let dir = std::env::temp_dir().join(format!("log-bench-nats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            dir.join("js").display()
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new(&nats)
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server starts (scripts/install-nats)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let shared: Arc<dyn SharedLog> = Arc::new(
        citybrain_jetstream::JetStreamLog::connect(citybrain_jetstream::Settings {
            url: format!("nats://127.0.0.1:{port}"),
            ..Default::default()
        })
        .unwrap(),
    );
    let bodies = passages::bodies(batches);
    let (mut embedded, mut jetstream) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        embedded.push(run(&bodies, None));
        jetstream.push(run(&bodies, Some(shared.clone())));
        eprintln!(
            "round {round}: embedded {:.0} rows/s, jetstream {:.0} rows/s",
            embedded[round], jetstream[round]
        );
    }
    let (e, j) = (median(embedded.clone()), median(jetstream.clone()));
    println!(
        "{{\"batches\":{batches},\"rows_per_batch\":10000,\"rounds\":{rounds},\"embedded_rows_per_s\":{embedded:?},\"jetstream_rows_per_s\":{jetstream:?},\"median_embedded\":{e:.0},\"median_jetstream\":{j:.0},\"ratio\":{:.3}}}",
        j / e
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
