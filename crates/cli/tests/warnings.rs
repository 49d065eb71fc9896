//! Risk early warning end to end (issue 27, item 4): four departments publish a district's
//! workplaces, migrant registrations, diagnoses and injury claims over HTTP with the 铁屑伤眼
//! cluster planted; emergency management's rules run under its own grants, every id
//! pseudonymised. Without a grant a rule says which it lacks; without the linkage the
//! diagnoses do not join the registrations; with both, the warnings stored are exactly those
//! the rule's statistics give over the generator's own counts, the cluster (planted in the
//! current week) is found while that week runs and shows on the alert board, and nothing
//! outside it is warned. A second run and a restart raise
//! nothing again. The evidence is read as the reader: emergency management sees the cases
//! with pseudonyms, a department without the grants is refused.

mod common;

use std::collections::BTreeSet;

use citybrain_core::{TimeZone, Timestamp};
use citybrain_warnings::demo::{DemoConfig, District, counts, generate};
use citybrain_warnings::{Period, judge_series, shipped, warning_id};
use common::people::{call, now};
use common::{Server, department_admin, start};
use serde_json::{Value, json};

fn ndjson<T: serde::Serialize>(rows: &[T]) -> Vec<u8> {
    rows.iter()
        .flat_map(|r| {
            let mut line = serde_json::to_vec(r).unwrap();
            line.push(b'\n');
            line
        })
        .collect()
}

fn publish(server: &Server, token: &str, dataset: &str, body: &[u8]) {
    let (status, text) = server.post_as(
        token,
        &format!("/api/v1/datasets/{dataset}/records"),
        "application/x-ndjson",
        body,
    );
    assert_eq!(status, 200, "{dataset}: {text}");
}

fn post(server: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    call(server, token, "POST", path, Some(body))
}

fn run(server: &Server, token: &str) -> Value {
    let (status, answer) = post(server, token, "/api/v1/warnings/run", &json!({}));
    assert_eq!(status, 200, "{answer}");
    answer
}

fn rule_status<'a>(answer: &'a Value, rule: &str) -> &'a Value {
    answer["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == rule)
        .unwrap()
}

/// The warning ids the scene must raise at `at`: each shipped rule judged over the same
/// periods as the scene, on counts computed from the generated rows.
fn expected(d: &District, at: Timestamp, zone: &TimeZone) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for rule in shipped() {
        let c = counts(d, &rule.name);
        let current = Period::of(at, rule.every, zone);
        let n = rule.baseline_periods as usize;
        let total = n + rule.look_back as usize + 1;
        let periods: Vec<Period> = (0..total)
            .rev()
            .map(|k| current.back(k as i32, rule.every, zone))
            .collect();
        let areas: BTreeSet<&String> = c.keys().map(|(a, _)| a).collect();
        for area in areas {
            let series: Vec<u64> = periods
                .iter()
                .map(|p| c.get(&(area.clone(), p.first_day)).copied().unwrap_or(0))
                .collect();
            for (j, p) in judge_series(&rule, &series).iter().zip(&periods[n..]) {
                if j.warn {
                    ids.insert(warning_id(&rule.name, area, p));
                }
            }
        }
    }
    ids
}

#[test]
fn warnings_check_reads_rules_offline() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["warnings", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("eye_injuries") && text.contains("2 warning rules check"),
        "{text}"
    );
}

#[test]
fn the_cluster_is_warned_in_its_first_week_under_the_departments_grants() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    // The server's city without a citybrain.toml: Hangzhou's zone.
    let zone = TimeZone::parse("Asia/Shanghai").unwrap();
    let token = |d: &str| department_admin(&server, d);
    let (em, health, police, hr, market) = (
        token("emergency_management"),
        token("health"),
        token("public_security"),
        token("human_resources"),
        token("market"),
    );
    // The cluster starts this week: it must be warned now, while the week runs.
    let mut config = DemoConfig::standard(4, now(), zone.clone());
    config.cluster.as_mut().unwrap().start_week = config.weeks - 1;
    let district = generate(&config);
    publish(
        &server,
        &em,
        "safety.workplaces",
        &ndjson(&district.workplaces),
    );
    publish(
        &server,
        &police,
        "public_security.migrants",
        &ndjson(&district.migrants),
    );
    publish(
        &server,
        &health,
        "health.diagnoses",
        &ndjson(&district.diagnoses),
    );
    publish(&server, &hr, "hr.injury_claims", &ndjson(&district.claims));

    // No grants yet: each rule says what it lacks, and nothing is raised.
    let answer = run(&server, &em);
    assert_eq!(answer["raised"], json!([]), "{answer}");
    let error = rule_status(&answer, "eye_injuries")["last_run"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("grant"), "{error}");

    // Grants, every id pseudonymised.
    for (dataset, owner) in [
        ("health.diagnoses", &health),
        ("public_security.migrants", &police),
        ("hr.injury_claims", &hr),
    ] {
        let (status, grant) = post(
            &server,
            &em,
            "/api/v1/grants",
            &json!({"dataset": dataset, "purpose": "risk early warning", "fields": [], "raw": [], "days": 30}),
        );
        assert_eq!(status, 201, "{grant}");
        let (status, decided) = post(
            &server,
            owner,
            &format!("/api/v1/grants/{}/approve", grant["id"]),
            &json!({"reason": "counts per township"}),
        );
        assert_eq!(status, 200, "{decided}");
    }
    // Without the linkage the diagnoses' pseudonyms do not meet the registrations': the
    // eye-injury rule counts nothing, while the claims rule (one person column) works.
    let answer = run(&server, &em);
    assert!(
        rule_status(&answer, "eye_injuries")["last_run"]["error"].is_null(),
        "{answer}"
    );
    let raised: Vec<&str> = answer["raised"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rule"].as_str().unwrap())
        .collect();
    assert!(!raised.contains(&"eye_injuries"), "{answer}");
    let (status, text) = post(
        &server,
        &health,
        "/api/v1/linkages",
        &json!({"name": "eye_injury_watch", "purpose": "risk early warning",
                "members": [{"dataset": "health.diagnoses", "field": "patient_id"},
                            {"dataset": "public_security.migrants", "field": "person_id"}]}),
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = post(
        &server,
        &police,
        "/api/v1/linkages/eye_injury_watch/approve",
        &json!({}),
    );
    assert_eq!(status, 200, "{text}");
    let at = now();
    let answer = run(&server, &em);
    assert!(!answer["raised"].as_array().unwrap().is_empty(), "{answer}");

    // Stored: exactly what the statistics give over the generator's own counts.
    let (status, rows) = post(
        &server,
        &em,
        "/api/v1/sql",
        &json!({"sql": "SELECT warning_id, rule, area, value, department, evidence_sql FROM warnings.raised", "purpose": "test"}),
    );
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().unwrap().clone();
    let stored: BTreeSet<String> = rows
        .iter()
        .map(|r| r["warning_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored.len(), rows.len(), "a warning stored twice");
    // The run's instant may fall a period later than `at` only if a week turned between.
    assert_eq!(stored, expected(&district, at, &zone));
    // Against the truth: the first week found, nothing warned outside the cluster.
    let truth: BTreeSet<String> = district
        .truth
        .iter()
        .map(|p| format!("{}/{}/{}", p.rule, p.area, p.first_day))
        .collect();
    let first = district
        .truth
        .iter()
        .find(|p| p.rule == "eye_injuries" && p.start)
        .unwrap();
    assert!(stored.contains(&format!("eye_injuries/{}/{}", first.area, first.first_day)));
    let false_warnings: Vec<_> = stored.difference(&truth).collect();
    assert!(false_warnings.is_empty(), "{false_warnings:?}");
    assert!(
        rows.iter()
            .all(|r| r["department"] == "emergency_management")
    );

    // On the alert board, addressed to emergency management, while its week runs.
    let (status, board) = call(&server, &market, "GET", "/api/v1/alerts", None);
    assert_eq!(status, 200, "{board}");
    let in_force: Vec<&str> = board["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["warning_id"].as_str().unwrap())
        .collect();
    assert!(
        in_force.contains(&format!("eye_injuries/{}/{}", first.area, first.first_day).as_str()),
        "{board}"
    );
    // Again, and after a restart: nothing new.
    assert_eq!(run(&server, &em)["raised"], json!([]));
    server.stop();
    let server = start(dir.path(), &[]);
    assert_eq!(run(&server, &em)["raised"], json!([]));

    // The evidence, read as the reader.
    let id = format!("eye_injuries/{}/{}", first.area, first.first_day);
    let value = rows
        .iter()
        .find(|r| r["warning_id"] == id.as_str())
        .unwrap()["value"]
        .as_i64()
        .unwrap();
    let url = format!("/api/v1/warnings/evidence?id={}", id.replace('/', "%2F"));
    let (status, evidence) = call(&server, &em, "GET", &url, None);
    assert_eq!(status, 200, "{evidence}");
    let cases = evidence["evidence"].as_array().unwrap();
    let people: BTreeSet<&str> = cases
        .iter()
        .map(|c| c["patient_id"].as_str().unwrap())
        .collect();
    assert_eq!(people.len() as i64, value, "{evidence}");
    let raw: BTreeSet<&str> = district
        .diagnoses
        .iter()
        .map(|d| d.patient_id.as_str())
        .collect();
    assert!(
        people.iter().all(|p| !raw.contains(p)),
        "a raw id in the evidence"
    );
    let (status, refused) = call(&server, &market, "GET", &url, None);
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["code"], "grant_required", "{refused}");
    // The list is there for every department; an unknown id is a 404.
    let (status, list) = call(&server, &market, "GET", "/api/v1/warnings", None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["warnings"].as_array().unwrap().len(), rows.len());
    let (status, _) = call(
        &server,
        &em,
        "GET",
        "/api/v1/warnings/evidence?id=nope",
        None,
    );
    assert_eq!(status, 404);
}
