//! The crate layering of ARCHITECTURE.md, checked over `cargo metadata` for every crate in
//! the workspace: which citybrain crates each may depend on, and which frameworks the pure
//! crates must not take (an async runtime, an HTTP stack, a query engine). A crate added to
//! the workspace without a line here fails the test until its place is decided.

use std::collections::BTreeSet;
use std::process::Command;

/// Frameworks a crate without I/O of its own must not depend on.
const IO: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "hyper-util",
    "datafusion",
    "ureq",
    "utoipa",
    "utoipa-axum",
    "rumqttc",
    "rusqlite",
];

/// crate → (citybrain crates it may depend on, external crates it must not).
fn rules(name: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match name {
        "citybrain-core" => (&[], IO),
        // Pure scene and generator crates: vocabulary only.
        "citybrain-gen" | "citybrain-indices" | "citybrain-parking" | "citybrain-alerts"
        | "citybrain-rules" | "citybrain-medical" | "citybrain-cockpits" => {
            (&["citybrain-core"], IO)
        }
        // Warnings bind their queries' periods as the cockpits do.
        "citybrain-warnings" => (&["citybrain-core", "citybrain-cockpits"], IO),
        // Services that find the citizen: rules in the policy language, facts, tasks.
        "citybrain-services" => (&["citybrain-core", "citybrain-rules"], IO),
        // NGSI-LD as rows and SQL text: dataset definitions in, no store, no engine.
        "citybrain-ngsi" => (&["citybrain-core", "citybrain-hub"], IO),
        // Road networks from GIS files: text in, rows out; not even the vocabulary.
        "citybrain-roads" => (&[], IO),
        // Signal control knows no simulator, no hub, no network.
        "citybrain-signals" => (
            &[],
            &[
                "tokio",
                "axum",
                "hyper",
                "datafusion",
                "ureq",
                "utoipa",
                "rumqttc",
                "rusqlite",
                "roxmltree",
                "citybrain-sumo",
            ],
        ),
        "citybrain-sumo" => (
            &["citybrain-signals"],
            &["tokio", "axum", "hyper", "datafusion", "utoipa"],
        ),
        // The metadata's database, SQLite or PostgreSQL: no HTTP, no query engine.
        "citybrain-metadb" => (
            &[],
            &["axum", "hyper", "datafusion", "ureq", "utoipa", "rumqttc"],
        ),
        // The storage layer does its own file I/O; its catalog goes through metadb (which
        // alone holds a database client and its runtime).
        "citybrain-hub" => (
            &["citybrain-core", "citybrain-metadb"],
            &[
                "tokio",
                "axum",
                "hyper",
                "datafusion",
                "ureq",
                "utoipa",
                "rumqttc",
                "rusqlite",
            ],
        ),
        // The hub's log in NATS JetStream: the hub's SharedLog over async-nats, no HTTP,
        // no query engine.
        "citybrain-jetstream" => (
            &["citybrain-hub"],
            &["axum", "hyper", "datafusion", "ureq", "utoipa", "rumqttc"],
        ),
        // Sealed segments in S3: the hub's SegmentStore over object_store, no HTTP server, no
        // query engine (DataFusion reads the same store, registered by the binary).
        "citybrain-objects" => (
            &["citybrain-hub"],
            &["axum", "datafusion", "ureq", "utoipa", "rumqttc"],
        ),
        "citybrain-gov" => (
            &["citybrain-core", "citybrain-hub", "citybrain-metadb"],
            &[
                "rusqlite",
                "tokio",
                "axum",
                "hyper",
                "datafusion",
                "ureq",
                "utoipa",
                "rumqttc",
            ],
        ),
        // The only crate with DataFusion; no HTTP.
        "citybrain-sql" => (
            &["citybrain-core", "citybrain-hub", "citybrain-gov"],
            &["axum", "hyper", "ureq", "utoipa", "rumqttc"],
        ),
        // The Postgres wire in front of the SQL engine: no HTTP, no DataFusion of its own.
        "citybrain-pg" => (
            &["citybrain-core", "citybrain-gov", "citybrain-sql"],
            &["axum", "hyper", "ureq", "utoipa", "rumqttc", "datafusion"],
        ),
        "citybrain-server" => (
            &[
                "citybrain-core",
                "citybrain-hub",
                "citybrain-gov",
                "citybrain-sql",
                "citybrain-indices",
                "citybrain-parking",
                "citybrain-alerts",
                "citybrain-rules",
                "citybrain-medical",
                "citybrain-warnings",
                "citybrain-cockpits",
                "citybrain-services",
                "citybrain-signals",
                "citybrain-sumo",
                "citybrain-ngsi",
            ],
            // No command line. An HTTP client it has (ureq): NGSI-LD subscriptions POST
            // notifications to subscribers' endpoints (ADR 2026-12-03-ngsi-ld).
            &["clap"],
        ),
        // The binary: everything.
        "citybrain" => (
            &[
                "citybrain-core",
                "citybrain-hub",
                "citybrain-gov",
                "citybrain-sql",
                "citybrain-server",
                "citybrain-gen",
                "citybrain-indices",
                "citybrain-parking",
                "citybrain-alerts",
                "citybrain-rules",
                "citybrain-medical",
                "citybrain-warnings",
                "citybrain-cockpits",
                "citybrain-services",
                "citybrain-signals",
                "citybrain-sumo",
                "citybrain-pg",
                "citybrain-roads",
                "citybrain-jetstream",
                "citybrain-metadb",
                "citybrain-objects",
            ],
            &[],
        ),
        _ => return None,
    })
}

#[test]
fn every_crate_keeps_to_its_layer() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    assert!(
        packages.len() >= 13,
        "the whole workspace: {}",
        packages.len()
    );
    let mut problems = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let Some((allowed, forbidden)) = rules(name) else {
            problems.push(format!("{name} has no place in the layering (add it to tests/layering.rs and ARCHITECTURE.md)"));
            continue;
        };
        // Normal dependencies only: a test may use the demo generator, say.
        let deps: BTreeSet<&str> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        for dep in &deps {
            if dep.starts_with("citybrain") && !allowed.contains(dep) {
                problems.push(format!("{name} must not depend on {dep}"));
            }
            if forbidden.contains(dep) {
                problems.push(format!("{name} must not depend on {dep}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
