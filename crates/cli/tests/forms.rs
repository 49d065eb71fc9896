//! One form instead of many (issue 27, item 3) on the demo city: the shipped templates'
//! burden (fields, duplicates, the share the data fills, minutes before and after by the
//! stated model), each template filled for a community as its grid worker (the community's
//! grants and the resident_records linkage), the residents counted as the registry's owner
//! counts them another way, and a department without the grants told which it needs.

mod common;

use common::people::call;
use common::start;
use serde_json::Value;

/// A query as the registry's owner.
fn sql(server: &common::Server, sql: &str) -> Vec<Value> {
    let owner = common::department_admin(server, "public_security");
    let (status, rows) = call(
        server,
        &owner,
        "POST",
        "/api/v1/sql",
        Some(&serde_json::json!({"sql": sql, "purpose": "test: one form"})),
    );
    assert_eq!(status, 200, "{rows}");
    rows.as_array().unwrap().clone()
}

#[test]
fn forms_check_reads_templates_offline_and_names_a_mistake() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["forms", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("32 fields asking 24 questions") && text.contains("71.9 %"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "id = 'a'\ntitle = { en = 'a', zh = 'b' }\ndepartment = 'civil_affairs'\nevery = 'month'\n\n[[field]]\nid = 'x'\nconcept = 'x'\nlabel = { en = 'a', zh = 'b' }\nsql = 'SELECT 1 AS value WHERE $when'\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["forms", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("field x: $when is not a parameter"), "{text}");
}

#[test]
fn the_community_fills_the_departments_reports_from_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--scale", "0.05"]);
    server.caught_up("services");
    let grid = std::fs::read_to_string(dir.path().join("grid.token")).unwrap();
    let market = std::fs::read_to_string(dir.path().join("market.token")).unwrap();

    let (status, list) = call(&server, &grid, "GET", "/api/v1/forms", None);
    assert_eq!(status, 200, "{list}");
    let burden = &list["burden"];
    assert_eq!(burden["templates"], 4, "{burden}");
    assert_eq!(burden["fields"], 32, "{burden}");
    assert_eq!(burden["concepts"], 24, "{burden}");
    assert_eq!(burden["duplicate_fields"], 8, "{burden}");
    assert_eq!(burden["concepts_from_data"], 16, "{burden}");
    assert_eq!(burden["concepts_by_hand"], 8, "{burden}");
    assert_eq!(burden["minutes_before"], 96.0, "{burden}");
    assert_eq!(burden["minutes_after"], 24.0, "{burden}");

    // A community with residents, and the month the demo's records fall in.
    let busiest = sql(
        &server,
        "SELECT community, count(*) AS n FROM registry.residents GROUP BY community ORDER BY n DESC, community LIMIT 1",
    );
    let community = busiest[0]["community"].as_str().unwrap().to_string();
    let last = sql(
        &server,
        "SELECT max(recorded_at) AS t FROM registry.residents",
    );
    let period = last[0]["t"].as_str().unwrap()[..7].to_string();

    let mut values = std::collections::HashMap::new();
    for template in list["templates"].as_array().unwrap() {
        let id = template["id"].as_str().unwrap();
        let path = format!("/api/v1/forms/{id}?community={community}&period={period}");
        let (status, form) = call(&server, &grid, "GET", &path, None);
        assert_eq!(status, 200, "{form}");
        assert_eq!(form["denied"], 0, "{form}");
        for field in form["fields"].as_array().unwrap() {
            let concept = field["concept"].as_str().unwrap().to_string();
            if field["source"] == "person" {
                assert!(field["value"].is_null());
                continue;
            }
            let value = field["value"]
                .as_i64()
                .unwrap_or_else(|| panic!("{id}.{}: {field}", field["id"]));
            assert!(value >= 0);
            // The same question answered the same in every template.
            if let Some(before) = values.insert(concept.clone(), value) {
                assert_eq!(before, value, "{concept} differs between templates");
            }
        }
        let filled = form["filled_from_data"].as_i64().unwrap();
        let by_hand = form["left_to_person"].as_i64().unwrap();
        assert_eq!(
            filled + by_hand,
            form["fields"].as_array().unwrap().len() as i64
        );
    }
    println!("{community} {period}: {values:?}");
    let v = |c: &str| values[c];
    assert!(v("residents_total") > 0);
    assert!(v("households") > 0 && v("households") <= v("residents_total"));
    assert!(v("residents_80_plus") <= v("residents_65_plus"));
    assert!(v("residents_65_plus") <= v("residents_60_plus"));
    assert!(v("residents_60_plus") > 0 && v("residents_60_plus") < v("residents_total"));
    assert!(
        v("working_age") > 0 && v("working_age") + v("residents_60_plus") <= v("residents_total")
    );
    assert!(
        v("insured_employed") > 0
            && v("insured_employed") <= v("working_age") + v("residents_60_plus")
    );
    assert!(v("disabled_residents") > 0, "{values:?}");
    // Read through a grant naming the pension raw: masked, it would count nobody.
    assert!(v("pensioners") > 0, "{values:?}");
    // The residents, as the registry's owner counts them another way.
    let end = {
        let zone = citybrain_core::TimeZone::parse("Asia/Shanghai").unwrap();
        citybrain_cockpits::forms::Month::parse(&period, &zone)
            .unwrap()
            .end
    };
    let independent = sql(
        &server,
        &format!(
            "SELECT count(*) AS n FROM registry.residents r \
           JOIN (SELECT resident_id, max(recorded_at) AS last FROM registry.residents \
                  WHERE recorded_at < TIMESTAMP '{end}' GROUP BY resident_id) l \
             ON l.resident_id = r.resident_id AND l.last = r.recorded_at \
          WHERE r.community = '{community}' AND r.status = 'resident'"
        ),
    );
    assert_eq!(independent[0]["n"].as_i64().unwrap(), v("residents_total"));

    // A department without the grants: each data field names the grant it needs.
    let path = format!("/api/v1/forms/civil_monthly?community={community}&period={period}");
    let (status, form) = call(&server, &market, "GET", &path, None);
    assert_eq!(status, 200, "{form}");
    let fields = form["fields"].as_array().unwrap();
    let denied: Vec<&Value> = fields.iter().filter(|f| f["denied"].is_string()).collect();
    assert_eq!(denied.len() as i64, form["denied"].as_i64().unwrap());
    assert_eq!(denied.len(), 7, "{form}");
    assert!(
        denied
            .iter()
            .all(|f| f["denied"].as_str().unwrap().contains("grant"))
    );
    // Mistakes name the parameter.
    let (status, body) = call(
        &server,
        &grid,
        "GET",
        "/api/v1/forms/civil_monthly?community=x'y",
        None,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &server,
        &grid,
        "GET",
        &format!("/api/v1/forms/civil_monthly?community={community}&period=2026-13"),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("YYYY-MM"), "{body}");
    let (status, _) = call(
        &server,
        &grid,
        "GET",
        &format!("/api/v1/forms/nope?community={community}"),
        None,
    );
    assert_eq!(status, 404);
}
