//! The OpenAPI document, from a hand-kept route table (issue 22 item 4 replaces it with one
//! generated from the handlers); `cli.rs` checks that every documented path answers.

use serde_json::{Value, json};

/// Every route: method, path, summary. The router test checks each one answers.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/health", "Liveness; needs no token."),
    (
        "get",
        "/",
        "The web cockpit (needs no token to load; it asks for one).",
    ),
    ("get", "/api/v1/openapi.json", "This document."),
    (
        "get",
        "/api/v1/scenes",
        "Each scene (indices, parking, signals, policy, alerts): running, idle or failed with why, its cockpit page, the datasets it writes, and per dataset it reads from the change feed the position it has applied and committed, the newest stored (head) and its lag in seconds. Wait on `applied` >= an ingest's `position` to know its outputs are stored.",
    ),
    (
        "get",
        "/api/v1/datasets",
        "List datasets with size, freshness and rejected_rows (their dead letters); ?rejected=true also lists the dead-letter datasets themselves.",
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
        "delete",
        "/api/v1/datasets/{name}",
        "Delete a dataset, its dead letters and their files (its owner's admins; audited).",
    ),
    (
        "post",
        "/api/v1/datasets/{name}/records",
        "Ingest NDJSON, CSV or Parquet (by Content-Type); acknowledged after fsync. ?on_error=skip keeps valid records and dead-letters the rest.",
    ),
    (
        "post",
        "/api/v1/sql",
        "Run read-only SQL: {\"sql\", \"purpose\", \"format\": json|csv|arrow}. Through grants and masks; audited.",
    ),
    (
        "get",
        "/api/v1/datasets/{name}/records",
        "Read records (?limit=100, JSON) or export them (?format=csv|arrow); through grants and masks; audited.",
    ),
    (
        "get",
        "/api/v1/datasets/{name}/audit",
        "Who touched the dataset, when, which fields, for what purpose (its owner's admins and publishers).",
    ),
    ("get", "/api/v1/whoami", "The calling principal."),
    (
        "get",
        "/api/v1/indices/traffic/live",
        "Live traffic view: the stream's time, vehicles on the road (provisional), today's census so far.",
    ),
    (
        "get",
        "/api/v1/indices/stream",
        "Server-Sent Events: `live` after each ingested batch of passages, `rows` as index windows close (also stored in indices.*).",
    ),
    (
        "get",
        "/api/v1/alerts",
        "Open alerts (congestion on a link, a lot nearly full), worst first, with the rules that open and close them; every change is a row of alerts.events (also on /api/v1/indices/stream).",
    ),
    (
        "get",
        "/api/v1/parking/guide",
        "Lots near ?lat=&lon= within radius_m (2500) ranked by the chance of a free berth on arrival (arrive_in_min), then walk, then price.",
    ),
    (
        "get",
        "/api/v1/parking/overdue",
        "Bills with no payment in parking.payments once grace_hours (48) after the exit have passed: the follow-up list (through grants and masks; audited).",
    ),
    (
        "post",
        "/api/v1/signals/emergency",
        "Start an emergency run (一键护航) in the live signal scene: {\"route\": [edges in order], \"priority\": 1} → 202 {\"run_id\"}; progress on /api/v1/indices/stream (type emergency), the finished run in signals.emergency_runs (publishers and admins; audited).",
    ),
    (
        "get",
        "/api/v1/policy/policies",
        "The loaded policies: id, title, issuing department, legal basis, effective dates.",
    ),
    (
        "post",
        "/api/v1/policy/runs",
        "A payout run (亲清在线): {\"run\": name, \"purpose\"} decides every loaded policy for every enterprise in market.enterprises (read with your grants) and writes policy.payouts exactly once per policy, period and enterprise; rerun an interrupted run to finish it. 409 while another runs (publishers and admins; audited).",
    ),
    (
        "post",
        "/api/v1/policy/explain",
        "One enterprise against every loaded policy: {\"enterprise_id\"} → each decision clause by clause with the values read, the amount in fen and any exception (audited).",
    ),
    ("get", "/api/v1/departments", "List departments."),
    (
        "post",
        "/api/v1/departments",
        "Create a department: {\"id\", \"name\"} (hub admins).",
    ),
    (
        "get",
        "/api/v1/principals",
        "List principals (own department; all for hub admins).",
    ),
    (
        "post",
        "/api/v1/principals",
        "Create a principal: {\"name\", \"department\", \"role\": reader|publisher|admin}.",
    ),
    (
        "post",
        "/api/v1/principals/{name}/tokens",
        "Issue a token {\"expires_in_days\"} (admins of the principal's department or the hub); it expires no later than the caller's token. The secret is in this response only.",
    ),
    (
        "get",
        "/api/v1/tokens",
        "List tokens you manage (ids, never secrets).",
    ),
    (
        "delete",
        "/api/v1/tokens/{id}",
        "Revoke a token, and (unless ?cascade=false) every token issued with it; they stop working at once.",
    ),
    (
        "get",
        "/api/v1/grants",
        "Grants of your department and on its datasets, with status (requested, approved, refused, revoked, expired).",
    ),
    (
        "post",
        "/api/v1/grants",
        "Request a grant: {\"dataset\", \"purpose\", \"fields\", \"raw\", \"days\"}.",
    ),
    (
        "post",
        "/api/v1/grants/{id}/{decision}",
        "approve, refuse (with {\"reason\"}) or revoke a grant (the dataset owner's admins).",
    ),
    (
        "get",
        "/api/v1/linkages",
        "Linkages your department takes part in: pseudonymised columns of several datasets that share pseudonyms once every owner approved (status active, pending or withdrawn).",
    ),
    (
        "post",
        "/api/v1/linkages",
        "Propose a linkage (admins of an owning department): {\"name\", \"purpose\", \"members\": [{\"dataset\", \"field\"}, ..]}.",
    ),
    (
        "post",
        "/api/v1/linkages/{name}/{decision}",
        "approve (an owning department's admins, for it) or withdraw a linkage.",
    ),
    (
        "get",
        "/metrics",
        "Prometheus counters of data calls by department, dataset, kind and outcome (a dataset's to its owner, the rest summed per department as dataset=\"*\"; all to hub admins).",
    ),
];

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let mut op = json!({"summary": summary, "responses": {"200": {"description": "OK"}}});
        if *path != "/health" && *path != "/" {
            op["security"] = json!([{"bearer": []}]);
        }
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
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
