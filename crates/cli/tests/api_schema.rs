//! The API against its own OpenAPI document, as a client generator or fuzzer would use it:
//! the document is generated from the handlers (every route the router serves is in it by
//! construction), and schemathesis (PyPI, installed by scripts/test) sends generated
//! requests to every operation over a small demo city. No answer may be a 5xx, and every
//! answer must match the schema the document declares for its status.

use std::process::Command;

mod common;
use common::*;

#[test]
fn the_openapi_document_describes_every_route_and_the_api_keeps_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--scale", "0.02"]);
    let (status, text) = server.get("/api/v1/openapi.json", Some(&server.token));
    assert_eq!(status, 200, "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    // Every scene's routes are in the document, with their query parameters and bodies.
    for path in [
        "/api/v1/scenes",
        "/api/v1/indices/traffic/live",
        "/api/v1/alerts",
        "/api/v1/parking/guide",
        "/api/v1/signals/emergency",
        "/api/v1/policy/runs",
        "/api/v1/datasets/{name}/records",
        "/metrics",
        "/health",
    ] {
        assert!(paths.contains_key(path), "{path} undocumented");
    }
    let guide = &paths["/api/v1/parking/guide"]["get"]["parameters"];
    assert!(
        guide.as_array().unwrap().iter().any(|p| p["name"] == "lat"),
        "{guide}"
    );
    assert!(
        paths["/api/v1/policy/runs"]["post"]["requestBody"]["content"]["application/json"]
            .is_object()
    );

    let Some(schemathesis) = std::env::var_os("CITYBRAIN_SCHEMATHESIS") else {
        panic!(
            "CITYBRAIN_SCHEMATHESIS is not set: run the tests with scripts/test, which installs schemathesis (scripts/install-schemathesis)"
        );
    };
    // schemathesis keeps a cache in its working directory: the test's own.
    let output = Command::new(schemathesis)
        .current_dir(dir.path())
        .args(["run", &format!("{}/api/v1/openapi.json", server.base)])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", server.token),
        ])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--workers", "2", "--seed", "1"])
        // The event stream never ends; the signal scene needs SUMO (its route is tested
        // by the emergency-run test), so here it answers 503 as it should.
        .args(["--exclude-path", "/api/v1/indices/stream"])
        .args(["--exclude-path", "/api/v1/signals/emergency"])
        .args(["--max-failures", "20"])
        .env(
            "SCHEMATHESIS_HOOKS",
            format!("{}/tests/data/schemathesis_hooks.py", manifest_dir()),
        )
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}"
    );
    assert!(server.stop().success());
}
