//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes as
//! `routes!` registers them (see `api_routes` in lib.rs and ADR
//! 2026-12-01-openapi-from-handlers); [`finish`] adds what is common to every operation:
//! bearer auth, the error body, and the formats a few routes also answer in.

use serde_json::{Value, json};

use crate::error::ErrorCode;

/// What every error answers with (see `error.rs`).
fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "type", "message"],
        "properties": {
            "code": {
                "type": "string",
                "enum": ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "description": ErrorCode::ALL.iter().map(|c| format!("{}: {}", c.as_str(), c.about())).collect::<Vec<_>>().join("; "),
            },
            "type": {"type": "string", "description": "The class of error: invalid_request, auth, unavailable (a scene that is not running), internal"},
            "message": {"type": "string", "description": "For people: what was wrong and what to do next"},
            "details": {"description": "Per-record problems and the like, when there are any"}
        }
    })
}

/// Routes whose JSON answer is an array of rows, and that also answer in CSV or Arrow.
const ROW_RESULTS: &[(&str, &str)] = &[
    ("/api/v1/sql", "post"),
    ("/api/v1/datasets/{name}/records", "get"),
    ("/api/v1/parking/overdue", "get"),
];

/// The generated document with bearer auth on every operation, the error responses, row
/// results, and the two routes outside the API (`/health`, the cockpit at `/`).
pub fn finish(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).expect("the document serialises");
    doc["info"] = json!({
        "title": "citybrain",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "The city data hub and its scenes. Every route but /health and / needs `Authorization: Bearer <token>`."
    });
    let components = doc["components"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut components = Value::Object(components);
    components["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer"}});
    components["schemas"]["Error"] = error_schema();
    doc["components"] = components;
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let rows = json!({"type": "array", "items": {"type": "object"}});
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                op["security"] = json!([{"bearer": []}]);
                let responses = &mut op["responses"];
                responses["4XX"] = error("Refused: the body says why and what to do next");
                responses["5XX"] =
                    error("Failed on the server (503: a scene that is not running, with why)");
                if ROW_RESULTS.contains(&(path.as_str(), method.as_str())) {
                    responses["200"]["content"] = json!({
                        "application/json": {"schema": rows},
                        "text/csv": {"schema": {"type": "string"}},
                        "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}}
                    });
                }
            }
        }
        paths.insert(
            "/api/v1/openapi.json".into(),
            json!({"get": {"summary": "This document.", "security": [{"bearer": []}], "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}, "4XX": error("Refused")}}}),
        );
        paths.insert(
            "/health".into(),
            json!({"get": {"summary": "Liveness; needs no token.", "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
        );
        paths.insert(
            "/".into(),
            json!({"get": {"summary": "The web cockpit (loads without a token; it asks for one).", "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}}),
        );
    }
    doc
}
