//! The OpenAPI document, generated from the route table so the two cannot drift.

use serde_json::{Value, json};

/// Every route: method, path, summary. The router test checks each one answers.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/health", "Liveness; needs no token."),
    ("get", "/api/v1/openapi.json", "This document."),
    (
        "get",
        "/api/v1/datasets",
        "List datasets with size and freshness.",
    ),
    (
        "post",
        "/api/v1/datasets",
        "Create a dataset from a JSON (or TOML, Content-Type application/toml) definition.",
    ),
    (
        "get",
        "/api/v1/datasets/{name}",
        "One dataset's definition and statistics.",
    ),
    (
        "put",
        "/api/v1/datasets/{name}",
        "Change a dataset's schema; changes that break stored data are refused.",
    ),
    (
        "post",
        "/api/v1/datasets/{name}/records",
        "Ingest NDJSON, CSV or Parquet (by Content-Type); acknowledged after fsync. ?on_error=skip keeps valid records and dead-letters the rest.",
    ),
    (
        "post",
        "/api/v1/sql",
        "Run read-only SQL: {\"sql\", \"purpose\", \"format\": json|csv|arrow}.",
    ),
];

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let mut op = json!({"summary": summary, "responses": {"200": {"description": "OK"}}});
        if *path != "/health" {
            op["security"] = json!([{"bearer": []}]);
        }
        if path.contains("{name}") {
            op["parameters"] = json!([{"name": "name", "in": "path", "required": true,
                "schema": {"type": "string"}, "example": "transport.anpr_passages"}]);
        }
        paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path item is an object")
            .insert(method.to_string(), op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "citybrain", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}
