//! The leak matrix: on the demo city, every personal field of every dataset, read by each
//! department that is not its owner (the operations office's cockpit, a grid worker, a
//! hospital's doctor, the market's admin), through SQL and through the records export as
//! CSV, through the Postgres wire (psql) and, for datasets holding NGSI-LD entities, through
//! `/ngsi-ld/v1/entities` and its history: no value the owner sees raw reaches a reader
//! unless an active grant of the reader's department names that field raw. New datasets (a
//! scene's inputs and outputs) are in the matrix as soon as the demo loads them: nothing
//! here lists them.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};

use common::{Server, agent, department_admin, pg_port, start};
use serde_json::{Value, json};

fn get(server: &Server, token: &str, path: &str) -> (u16, String) {
    let response = agent()
        .get(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.into_body().read_to_string().unwrap_or_default(),
    )
}

fn sql(server: &Server, token: &str, sql: &str) -> (u16, Value) {
    let response = agent()
        .post(&format!("{}/api/v1/sql", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(
            json!({"sql": sql, "purpose": "test: the leak matrix"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

fn post(server: &Server, token: &str, path: &str, body: &Value) -> Value {
    let response = agent()
        .post(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let text = response.into_body().read_to_string().unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(json!(text))
}

/// A dataset of NGSI-LD entities (Open311 service requests) with personal fields.
const SERVICE_REQUESTS: &str = r#"name = "community.service_requests"
owner = "community"
sharing = "conditional"
description = "Residents' reports through a FIWARE app (NGSI-LD ServiceRequest)"
event_time = "reported_at"

[ngsi_ld]
type = "ServiceRequest"

[[fields]]
name = "entity_id"
type = "string"
[[fields]]
name = "reported_at"
type = "timestamp"
[[fields]]
name = "description"
type = "string"
nullable = true
[[fields]]
name = "reporter"
type = "string"
class = "personal"
nullable = true
[[fields]]
name = "contact_phone"
type = "string"
class = "personal"
nullable = true
[[fields]]
name = "location"
type = "geo"
nullable = true
"#;

/// A query's rows through psql as `user` (one value a line, nulls left out).
fn psql(port: u16, user: &str, token: &str, sql: &str) -> Vec<String> {
    let output = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname=citybrain sslmode=disable"
        ))
        .args(["-c", sql])
        .env("PGPASSWORD", token.trim())
        .output()
        .expect("psql runs (Debian: postgresql-client)");
    assert!(
        output.status.success(),
        "psql as {user}: {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The field's values as text, nulls left out.
fn values(rows: &Value) -> Vec<String> {
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| match &r["v"] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One column of a CSV export, by its header name; empty when the export lacks it.
fn csv_column(text: &str, field: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let Some(at) = reader
        .headers()
        .ok()
        .and_then(|h| h.iter().position(|name| name == field))
    else {
        return Vec::new();
    };
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|r| r.get(at).map(str::to_string))
        .collect()
}

#[test]
fn no_personal_value_reaches_a_department_without_it_raw_in_a_grant() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--scale", "0.05", "--pg-listen", "127.0.0.1:0"],
    );
    let port = pg_port(&server);
    let token = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap();
    // Residents' reports to the community through a FIWARE app (NGSI-LD), with who
    // reported and their phone: personal fields behind a third door.
    let community = department_admin(&server, "community");
    let (status, text) = server.post_as(
        &community,
        "/api/v1/datasets",
        "application/toml",
        SERVICE_REQUESTS.as_bytes(),
    );
    assert_eq!(status, 201, "{text}");
    for n in 0..6 {
        let entity = json!({
            "id": format!("urn:ngsi-ld:ServiceRequest:report-{n}"),
            "type": "ServiceRequest",
            "description": {"type": "Property", "value": format!("streetlight out on lane {n}")},
            "reporter": {"type": "Property", "value": format!("Resident Zhang Wei-{n}")},
            "contactPhone": {"type": "Property", "value": format!("1390571{n:04}")},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.15, 30.27]}},
        });
        let response = agent()
            .post(&format!("{}/ngsi-ld/v1/entities", server.base))
            .header("Authorization", &format!("Bearer {community}"))
            .header("Content-Type", "application/json")
            .send(entity.to_string().as_bytes())
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    // A department with a grant on every shared dataset, none of its fields raw: every
    // personal field reaches it masked or not at all.
    let probe = department_admin(&server, "probe");
    let readers = [
        ("probe", probe.clone()),
        ("city_office", token("cockpit.token")),
        ("community", token("grid.token")),
        ("hz_first_people", token("hospital.token")),
        ("market", token("market.token")),
    ];
    // Each reader's principal, its user name on the Postgres wire.
    let user_of: HashMap<&str, String> = readers
        .iter()
        .map(|(department, t)| {
            let (status, text) = get(&server, t, "/api/v1/whoami");
            assert_eq!(status, 200, "{text}");
            let me: Value = serde_json::from_str(&text).unwrap();
            (*department, me["name"].as_str().unwrap().to_string())
        })
        .collect();
    let mut wire_checked = 0;
    let mut ngsi_checked = 0;
    // What each reader's department holds raw: (dataset, field) from its active grants.
    let mut raw_for: HashMap<&str, HashSet<(String, String)>> = HashMap::new();
    for (department, t) in &readers {
        let (status, text) = get(&server, t, "/api/v1/grants");
        assert_eq!(status, 200, "{text}");
        let grants: Value = serde_json::from_str(&text).unwrap();
        let list = grants["grants"]
            .as_array()
            .or(grants.as_array())
            .unwrap()
            .clone();
        let held = raw_for.entry(department).or_default();
        for g in list {
            if g["department"] == *department && g["state"] == "approved" {
                for f in g["raw"].as_array().into_iter().flatten() {
                    held.insert((
                        g["dataset"].as_str().unwrap().to_string(),
                        f.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    let (status, text) = get(&server, &server.admin, "/api/v1/datasets");
    assert_eq!(status, 200, "{text}");
    let listing: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<String> = listing["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    let mut owners: HashMap<String, String> = HashMap::new();
    let (mut checked, mut granted_raw, mut refused) = (0, 0, 0);
    let mut datasets_with_personal = BTreeSet::new();
    for name in &names {
        let (status, text) = get(&server, &server.admin, &format!("/api/v1/datasets/{name}"));
        assert_eq!(status, 200, "{text}");
        let def: Value = serde_json::from_str(&text).unwrap();
        let def = if def["definition"].is_object() {
            &def["definition"]
        } else {
            &def
        };
        let owner = def["owner"].as_str().unwrap().to_string();
        let personal: Vec<String> = def["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["class"] == "personal")
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        if personal.is_empty() {
            continue;
        }
        if def["sharing"] == "conditional" {
            let owner_admin = owners
                .entry(owner.clone())
                .or_insert_with(|| department_admin(&server, &owner))
                .clone();
            let grant = post(
                &server,
                &probe,
                "/api/v1/grants",
                &json!({"dataset": name,
                "purpose": "test: every field, none raw", "fields": [], "raw": [], "days": 1}),
            );
            let decided = post(
                &server,
                &owner_admin,
                &format!("/api/v1/grants/{}/approve", grant["id"]),
                &json!({"reason": "masked only"}),
            );
            assert_eq!(decided["state"], "approved", "{name}: {grant} {decided}");
        }
        datasets_with_personal.insert(name.clone());
        let owner_token = owners
            .entry(owner.clone())
            .or_insert_with(|| department_admin(&server, &owner))
            .clone();
        for field in &personal {
            let query = format!(
                "SELECT \"{field}\" AS v FROM {name} WHERE \"{field}\" IS NOT NULL LIMIT 300"
            );
            let (status, rows) = sql(&server, &owner_token, &query);
            assert_eq!(status, 200, "{name}.{field} as its owner: {rows}");
            let raw: HashSet<String> = values(&rows).into_iter().collect();
            if raw.is_empty() {
                continue;
            }
            let all = format!("SELECT \"{field}\" AS v FROM {name} LIMIT 5000");
            for (department, t) in &readers {
                if *department == owner {
                    continue;
                }
                let (status, rows) = sql(&server, t, &all);
                if status != 200 {
                    assert!(
                        status == 403 || status == 404 || status == 400,
                        "{name}.{field} as {department}: {status} {rows}"
                    );
                    refused += 1;
                    // Refused by SQL, so by NGSI-LD: not found, or nothing of it.
                    if let Some(kind) = def["ngsi_ld"]["type"].as_str() {
                        let path = format!("/ngsi-ld/v1/entities?type={kind}&limit=1000");
                        let (_, body) = get(&server, t, &path);
                        assert!(
                            !raw.iter().any(|v| body.contains(&format!("\"{v}\""))),
                            "{name}.{field} reached {department}, refused by SQL, through {path}: {body}"
                        );
                        ngsi_checked += 1;
                    }
                    continue;
                }
                let seen = values(&rows);
                if raw_for[department].contains(&(name.clone(), field.clone())) {
                    granted_raw += 1;
                    continue;
                }
                checked += 1;
                let leaked: Vec<&String> =
                    seen.iter().filter(|v| raw.contains(*v)).take(3).collect();
                assert!(
                    leaked.is_empty(),
                    "{name}.{field} reached {department} raw without a grant: {leaked:?}"
                );
                // The Postgres wire answers the same query the same way.
                let lines = psql(port, &user_of[department], t, &all);
                let leaked: Vec<&String> =
                    lines.iter().filter(|v| raw.contains(*v)).take(3).collect();
                assert!(
                    leaked.is_empty(),
                    "{name}.{field} reached {department} raw over the Postgres wire: {leaked:?}"
                );
                wire_checked += 1;
                // Entities of an NGSI-LD type, now and as history.
                if let Some(kind) = def["ngsi_ld"]["type"].as_str() {
                    for path in [
                        format!("/ngsi-ld/v1/entities?type={kind}&limit=1000"),
                        format!("/ngsi-ld/v1/temporal/entities?type={kind}&limit=1000"),
                    ] {
                        let (status, body) = get(&server, t, &path);
                        assert!(
                            status == 200 || status == 403 || status == 404,
                            "{path} as {department}: {status} {body}"
                        );
                        let leaked: Vec<&String> = raw
                            .iter()
                            .filter(|v| body.contains(&format!("\"{v}\"")))
                            .take(3)
                            .collect();
                        assert!(
                            leaked.is_empty(),
                            "{name}.{field} reached {department} raw through {path}: {leaked:?}"
                        );
                        ngsi_checked += 1;
                    }
                }
                // The export writes the same masked values; long raw texts must not appear.
                let (status, csv) = get(
                    &server,
                    t,
                    &format!("/api/v1/datasets/{name}/records?format=csv&limit=5000"),
                );
                if status == 200 {
                    // Only the field's own column: a raw birth date is also the day part of
                    // another row's `recorded_at`, which is not personal.
                    let cells = csv_column(&csv, field);
                    assert!(
                        !cells.is_empty(),
                        "{name}.{field}: the CSV export for {department} has no such column"
                    );
                    let leaked: Vec<&String> = raw
                        .iter()
                        .filter(|v| {
                            cells.iter().any(|c| {
                                c == *v || (v.chars().count() >= 6 && c.contains(v.as_str()))
                            })
                        })
                        .take(3)
                        .collect();
                    assert!(
                        leaked.is_empty(),
                        "{name}.{field} reached {department} raw in the CSV export: {leaked:?}"
                    );
                }
            }
        }
    }
    println!(
        "{} datasets with personal fields; {checked} (field, reader) pairs read masked ({wire_checked} also over the Postgres wire, {ngsi_checked} NGSI-LD reads), {granted_raw} raw by a grant, {refused} refused",
        datasets_with_personal.len()
    );
    assert!(
        wire_checked == checked && ngsi_checked >= 4,
        "{wire_checked} {ngsi_checked}"
    );
    for expected in [
        "registry.residents",
        "services.tasks",
        "health.test_results",
        "transport.anpr_passages",
        "health.visits",
        "credit.ratings",
        "paylater.charges",
        "paylater.bill_steps",
        "community.service_requests",
    ] {
        assert!(
            datasets_with_personal.contains(expected),
            "{expected} is not in the matrix: {datasets_with_personal:?}"
        );
    }
    assert!(checked >= 30 && granted_raw >= 3, "{checked} {granted_raw}");
}
