//! The catalog and governance in PostgreSQL (issue 25, item 1), against a real PostgreSQL
//! server (Debian's, started by scripts/scratch-postgres): with `up --config` saying
//! `[catalog] backend = "postgres"`, two nodes share the datasets' definitions and every
//! department, principal, token and grant: a token issued on one node works on the other,
//! and revoked on the other it stops on the first at its next call. A node with another
//! secret is refused. While PostgreSQL restarts, calls answer 503 `metadata_unavailable`,
//! and work again once it is back; the password never shows.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::cluster::Postgres;
use common::{Server, department_admin, start_with, wait_until};

fn deployment(dir: &Path, pg: &Postgres) -> String {
    let path = dir.join("deploy.toml");
    std::fs::write(
        &path,
        format!(
            "[catalog]\nbackend = \"postgres\"\nurl = \"{}\"\ntimeout_s = 2\n",
            pg.url
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn node(data: &Path, config: &str, stderr: &Path) -> Server {
    let log = std::fs::File::create(stderr).unwrap();
    start_with(
        data,
        &["--config", config, "--pg-listen", "127.0.0.1:0"],
        "info",
        Stdio::from(log),
    )
}

fn get(server: &Server, path: &str, token: &str) -> (u16, String) {
    server.get(path, Some(token))
}

#[test]
fn two_nodes_share_catalog_and_governance_in_postgres_and_ride_out_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    let config = deployment(dir.path(), &pg);
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));

    let a = node(&data_a, &config, &dir.path().join("a.log"));
    a.create_passages();
    a.ingest("transport.anpr_passages", &common::passage_batch(0));
    assert_eq!(a.count("transport.anpr_passages"), 50);
    // The metadata is in PostgreSQL, not in the data directory.
    assert!(!data_a.join("catalog.sqlite").exists());
    assert!(!data_a.join("governance.sqlite").exists());
    assert_eq!(
        pg.psql("SELECT count(*) FROM datasets WHERE name = 'transport.anpr_passages'"),
        "1"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM principals WHERE name = 'transport_ops'"),
        "1"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(component || version, ',' ORDER BY component, version) FROM citybrain_migrations"),
        "audit1,catalog1,catalog2,catalog3,catalog4,catalog5,governance1"
    );
    let police = department_admin(&a, "police");

    // A second node with the hub's secret: the same datasets, departments and tokens.
    std::fs::create_dir_all(&data_b).unwrap();
    std::fs::copy(data_a.join("secret.key"), data_b.join("secret.key")).unwrap();
    let b = node(&data_b, &config, &dir.path().join("b.log"));
    let (status, text) = get(&b, "/api/v1/datasets/transport.anpr_passages", &police);
    assert_eq!(
        status, 200,
        "a token issued on node a works on node b: {text}"
    );
    let (status, text) = get(&b, "/api/v1/departments", &a.admin);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("police") && text.contains("transport"),
        "{text}"
    );
    // Revoked on b, it stops on a at its next call.
    let (status, text) = get(&a, "/api/v1/tokens", &police);
    assert_eq!(status, 200, "{text}");
    let token_id = police.split('_').nth(1).unwrap();
    let response = common::agent()
        .delete(&format!("{}/api/v1/tokens/{token_id}", b.base))
        .header("Authorization", &format!("Bearer {}", b.admin))
        .call()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let (status, _) = get(&a, "/api/v1/tokens", &police);
    assert_eq!(
        status, 401,
        "a token revoked on node b is refused on node a"
    );

    // A dataset created on node a is served by node b within seconds; deleted, it goes.
    let definition = std::fs::read(format!(
        "{}/../gen/definitions/environment.noise.toml",
        common::manifest_dir()
    ))
    .unwrap();
    let environment = department_admin(&a, "environment");
    let (status, text) = a.post_as(
        &environment,
        "/api/v1/datasets",
        "application/toml",
        &definition,
    );
    assert_eq!(status, 201, "{text}");
    wait_until("node b never served the dataset node a created", || {
        get(&b, "/api/v1/datasets/environment.noise", &environment).0 == 200
    });
    let (status, text) = b.post_as(
        &environment,
        "/api/v1/datasets",
        "application/toml",
        &definition,
    );
    assert_eq!(status, 409, "created twice across nodes: {text}");
    let response = common::agent()
        .delete(&format!("{}/api/v1/datasets/environment.noise", a.base))
        .header("Authorization", &format!("Bearer {environment}"))
        .call()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    wait_until("node b kept serving a dataset node a deleted", || {
        get(&b, "/api/v1/datasets/environment.noise", &environment).0 == 404
    });

    // Both nodes read at once: each call's audit record joins the one chain in PostgreSQL,
    // sequenced there, never forked.
    let before: i64 = pg.psql("SELECT count(*) FROM audit_trail").parse().unwrap();
    std::thread::scope(|s| {
        for server in [&a, &b, &a, &b] {
            s.spawn(move || {
                for _ in 0..15 {
                    server.sql("SELECT count(*) AS n FROM transport.anpr_passages");
                }
            });
        }
    });
    let after: i64 = pg.psql("SELECT count(*) FROM audit_trail").parse().unwrap();
    assert!(after - before >= 60, "{before} -> {after}");
    assert_eq!(
        pg.psql("SELECT max(seq) - min(seq) + 1 = count(*) FROM audit_trail"),
        "t",
        "one gapless sequence"
    );
    assert!(!data_a.join("audit/calls.ndjson").exists());
    let verify = |data: &Path| {
        Command::new(env!("CARGO_BIN_EXE_citybrain"))
            .args(["audit", "verify", "--config", &config, "--data"])
            .arg(data)
            .output()
            .unwrap()
    };
    let out = verify(&data_b);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && printed.contains(&format!("intact: {after} records")),
        "{printed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.stop();

    // A node with another secret would pseudonymise differently and sign another trail.
    let data_c = dir.path().join("c");
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args([
            "up",
            "--no-demo",
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config,
            "--data",
        ])
        .arg(&data_c)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("copy secret.key"), "{stderr}");
    assert!(
        !stderr.contains(&pg.password()),
        "the password shows: {stderr}"
    );

    // PostgreSQL restarts: while it is down, calls fail with a clear 503; then work again.
    pg.stop("fast");
    let (status, text) = get(&a, "/api/v1/datasets", &a.token);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("metadata_unavailable"), "{text}");
    assert!(!text.contains(&pg.password()), "the password shows: {text}");
    let (status, text) = a.post(
        "/api/v1/datasets/transport.anpr_passages/records",
        "application/x-ndjson",
        common::passage_batch(1).as_bytes(),
    );
    assert_eq!(status, 503, "ingest is refused, not lost: {text}");
    // Over the Postgres wire, a login is told why it cannot be checked, not that the
    // token is wrong.
    let login = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=transport_ops dbname=citybrain sslmode=disable",
            common::pg_port(&a)
        ))
        .args(["-XAtc", "SELECT 1"])
        .env("PGPASSWORD", a.token.trim())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&login.stderr);
    assert!(
        !login.status.success() && stderr.contains("cannot check the token now"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&pg.password()),
        "the password shows: {stderr}"
    );
    pg.up();
    wait_until(
        "calls never worked again after PostgreSQL came back",
        || get(&a, "/api/v1/datasets", &a.token).0 == 200,
    );
    a.ingest("transport.anpr_passages", &common::passage_batch(1));
    assert_eq!(a.count("transport.anpr_passages"), 100);

    // Started without the deployment file, the node would find no datasets or tokens:
    // refused, saying what to do.
    a.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["up", "--no-demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data_a)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("are in PostgreSQL citybrain@127.0.0.1") && stderr.contains("--config"),
        "{stderr}"
    );
    // An edited record in the database is caught.
    pg.psql(
        r#"UPDATE audit_trail SET line = regexp_replace(line, '"principal":"[^"]*"', '"principal":"nobody"') WHERE seq = 3"#,
    );
    let out = verify(&data_a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("record 3 was altered"),
        "{stderr}"
    );

    // Nothing the nodes printed or logged holds the password.
    for log in ["a.log", "b.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap();
        assert!(!text.contains(&pg.password()), "{log} holds the password");
    }
}
