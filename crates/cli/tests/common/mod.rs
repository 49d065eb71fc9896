//! What the end-to-end tests share: the real `citybrain` binary started on port 0 over a
//! temporary data directory, and an HTTP client that never turns a status into an error.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod cluster;
pub mod ngsi;
pub mod people;

use std::io::BufRead;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub child: Child,
    pub base: String,
    /// A token of `transport_ops`, admin of the transport department (owner of the
    /// passages), set up by `start` through the API.
    pub token: String,
    /// The hub admin's token.
    pub admin: String,
    pub data: PathBuf,
    /// What the server printed on stdout.
    pub printed: std::sync::Arc<std::sync::Mutex<String>>,
}

/// This crate's folder, read when the test runs: a path baked in at compile time can name an
/// old checkout when a shared target directory reuses the build.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
}

pub fn start(data: &Path, extra: &[&str]) -> Server {
    start_with(data, extra, "warn", Stdio::inherit())
}

/// Starts `citybrain up` on port 0 over `data` with `args` and `envs` and waits for its
/// address; nothing else (no departments or tokens made). The token is the hub admin's.
pub fn launch(data: &Path, args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("citybrain is up on ") {
            break rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = printed.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    Server {
        child,
        base,
        token: admin.clone(),
        admin,
        data: data.to_path_buf(),
        printed,
    }
}

/// Starts the server; without the demo city unless `extra` asks for one (`--scale`), and
/// then on its recorded day (2026-11-22) unless `extra` names another (`--demo-day`).
pub fn start_with(data: &Path, extra: &[&str], log_level: &str, stderr: Stdio) -> Server {
    let demo = extra.contains(&"--scale");
    // The demo's recorded day, loaded whole, unless a test asks for another.
    let mut args: Vec<&str> = match (demo, extra.contains(&"--demo-day")) {
        (false, _) => vec!["--no-demo"],
        (true, false) => vec!["--demo-day", "2026-11-22"],
        (true, true) => vec![],
    };
    args.extend_from_slice(extra);
    let mut server = launch(data, &args, &[("CITYBRAIN_LOG", log_level)], stderr);
    // The transport department and its admin principal (already there after a restart).
    let (status, text) = server.post(
        "/api/v1/departments",
        "application/json",
        br#"{"id": "transport", "name": "Transport Bureau"}"#,
    );
    assert!(status == 201 || status == 409, "{status} {text}");
    let (status, text) = server.post(
        "/api/v1/principals",
        "application/json",
        br#"{"name": "transport_ops", "department": "transport", "role": "admin"}"#,
    );
    assert!(status == 201 || status == 409, "{status} {text}");
    let (status, text) = server.post(
        "/api/v1/principals/transport_ops/tokens",
        "application/json",
        b"{}",
    );
    assert_eq!(status, 201, "{text}");
    let issued: serde_json::Value = serde_json::from_str(&text).unwrap();
    server.token = issued["token"].as_str().unwrap().to_string();
    server
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

impl Server {
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
        self.post_as(&self.token, path, content_type, body)
    }

    pub fn post_as(
        &self,
        token: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let response = agent()
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.into_body().read_to_string().unwrap_or_default(),
        )
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut request = agent().get(&format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request.call().unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.into_body().read_to_string().unwrap_or_default(),
        )
    }

    pub fn sql(&self, sql: &str) -> serde_json::Value {
        let body = serde_json::json!({"sql": sql, "purpose": "test"}).to_string();
        let (status, text) = self.post("/api/v1/sql", "application/json", body.as_bytes());
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The scene's entry in `GET /api/v1/scenes`.
    pub fn scene(&self, name: &str) -> serde_json::Value {
        let (status, text) = self.get("/api/v1/scenes", Some(&self.token));
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["scenes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no scene {name}: {text}"))
            .clone()
    }

    /// Waits on the scene's watermark until it has applied, in every dataset it reads,
    /// what was stored when this was called (each batch's outputs are stored before its
    /// position counts as applied). Fails after two minutes with the scene's state.
    pub fn caught_up(&self, name: &str) -> serde_json::Value {
        let first = self.scene(name);
        let targets: Vec<(String, i64)> = first["feed"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| Some((f["dataset"].as_str()?.to_string(), f["head"].as_i64()?)))
            .collect();
        self.applied(name, &targets)
    }

    /// Waits until the scene has applied `position` in `dataset` (the `position` an
    /// ingest answered with).
    pub fn applied(&self, name: &str, targets: &[(String, i64)]) -> serde_json::Value {
        let started = std::time::Instant::now();
        loop {
            let scene = self.scene(name);
            let done = targets.iter().all(|(dataset, position)| {
                scene["feed"].as_array().unwrap().iter().any(|f| {
                    f["dataset"] == dataset.as_str() && f["applied"].as_i64() >= Some(*position)
                })
            });
            if done {
                return scene;
            }
            assert!(
                started.elapsed().as_secs() < 120 && scene["state"] != "failed",
                "{name} never applied {targets:?}: {scene}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn count(&self, table: &str) -> i64 {
        self.sql(&format!("SELECT count(*) AS n FROM {table}"))[0]["n"]
            .as_i64()
            .unwrap()
    }

    pub fn create_passages(&self) {
        let def = std::fs::read(format!(
            "{}/../gen/definitions/transport.anpr_passages.toml",
            manifest_dir()
        ))
        .unwrap();
        let (status, text) = self.post("/api/v1/datasets", "application/toml", &def);
        assert_eq!(status, 201, "{text}");
    }

    /// The port of the MQTT broker `up` printed on its line starting with `label`
    /// (`MQTT sensors:`, `MQTT feed:`), waiting for the line.
    pub fn mqtt_port(&self, label: &str) -> String {
        loop {
            let text = self.printed.lock().unwrap().clone();
            if let Some(line) = text.lines().find(|l| l.contains(label)) {
                let address = line.split("mqtt://").nth(1).unwrap();
                let address = address.split_whitespace().next().unwrap();
                return address.rsplit(':').next().unwrap().to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stores NDJSON `records` in `dataset` and returns the batch's feed position (to wait
    /// on a scene's watermark with [`Server::applied`]).
    pub fn ingest(&self, dataset: &str, records: &str) -> i64 {
        self.ingest_as(&self.token, dataset, records)
    }

    /// [`Server::ingest`] as the holder of `token`.
    pub fn ingest_as(&self, token: &str, dataset: &str, records: &str) -> i64 {
        let path = format!("/api/v1/datasets/{dataset}/records");
        let (status, text) = self.post_as(token, &path, "application/x-ndjson", records.as_bytes());
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["position"]
            .as_i64()
            .expect("an ingest answers with its batch's position")
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    /// A failed test must not leave its server running (it would hold the test's pipes).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wire's port, from what the server printed.
pub fn pg_port(server: &Server) -> u16 {
    for _ in 0..600 {
        let printed = server.printed.lock().unwrap().clone();
        if let Some(line) = printed.lines().find(|l| l.contains("Postgres wire:")) {
            let after = line.split("@127.0.0.1:").nth(1).expect("an address");
            let port: String = after.chars().take_while(char::is_ascii_digit).collect();
            return port.parse().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the server never printed its Postgres wire address");
}

pub fn department_admin(server: &Server, department: &str) -> String {
    let post = |path: &str, body: String| -> (u16, String) {
        let response = agent()
            .post(&format!("{}{path}", server.base))
            .header("Authorization", &format!("Bearer {}", server.admin))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.into_body().read_to_string().unwrap_or_default(),
        )
    };
    let (status, text) = post(
        "/api/v1/departments",
        format!(r#"{{"id": "{department}", "name": "{department}"}}"#),
    );
    assert!(status == 201 || status == 409, "{status} {text}");
    let (status, text) = post(
        "/api/v1/principals",
        format!(r#"{{"name": "{department}_ops", "department": "{department}", "role": "admin"}}"#),
    );
    assert!(status == 201 || status == 409, "{status} {text}");
    let (status, text) = post(
        &format!("/api/v1/principals/{department}_ops/tokens"),
        "{}".to_string(),
    );
    assert_eq!(status, 201, "{text}");
    let issued: serde_json::Value = serde_json::from_str(&text).unwrap();
    issued["token"].as_str().unwrap().to_string()
}

/// Publishes `messages` (one a line) on `topic` with QoS 1 through Mosquitto's own client.
pub fn mosquitto_pub(port: &str, topic: &str, messages: &[&str]) {
    use std::io::Write;
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", port, "-q", "1", "-t", topic, "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs (apt-get install mosquitto-clients; scripts/test installs it)");
    publisher
        .stdin
        .take()
        .unwrap()
        .write_all((messages.join("\n") + "\n").as_bytes())
        .unwrap();
    assert!(publisher.wait().unwrap().success());
}

/// A self-signed certificate for localhost and 127.0.0.1 and its key, made by openssl in
/// `dir`: (cert.pem, key.pem).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// What a Python script (run with the clients' venv, `CITYBRAIN_PG_PYTHON`: openpyxl,
/// deltalake, psycopg, ...) prints as JSON, given `arg`; the script's stderr on failure.
#[allow(dead_code)]
pub fn python_json(script: &str, arg: &Path) -> serde_json::Value {
    let python = std::env::var("CITYBRAIN_PG_PYTHON").expect(
        "CITYBRAIN_PG_PYTHON is not set: run the tests with scripts/test, which installs the Python clients (scripts/install-pg-clients)",
    );
    let out = Command::new(python)
        .args(["-c", script])
        .arg(arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Batch `b` of 50 passages at three checkpoints, each plate unique to the batch
/// (`浙C` + three digits of `b` + two of the record), as NDJSON.
#[allow(dead_code)]
pub fn passage_batch(b: usize) -> String {
    (0..50)
        .map(|i| {
            format!(
                "{{\"ts\":\"2026-11-22T08:{:02}:{:02}+08:00\",\"checkpoint_id\":{},\"plate\":\"浙C{b:03}{i:02}\"}}\n",
                b % 60,
                i % 60,
                1 + i % 3
            )
        })
        .collect()
}

/// A loopback port free right now (for servers the tests start beside citybrain).
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `done` every 100 ms until it holds; fails with `what` after a minute.
#[allow(dead_code)]
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
