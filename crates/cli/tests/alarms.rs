//! Alarms to the nearest grid worker end to end (issue 26, item 3), on the demo city's
//! road network.

mod common;

use common::people::{call, now};
use common::start;
use serde_json::json;

/// An alarm goes to the worker nearest by road, who acknowledges and arrives; an alarm
/// with nobody on duty escalates at once; every step is stored once, also when the alarm is
/// sent twice.
#[test]
fn an_alarm_goes_to_the_nearest_worker_by_road() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--scale", "0.05"]);
    let grid_token = std::fs::read_to_string(dir.path().join("grid.token")).unwrap();
    let (status, rows) = call(
        &server,
        &server.admin,
        "POST",
        "/api/v1/sql",
        Some(
            &json!({"sql": "SELECT loc FROM transport.checkpoints ORDER BY checkpoint_id LIMIT 40", "purpose": "test"}),
        ),
    );
    assert_eq!(status, 200, "{rows}");
    let at = |i: usize| rows[i]["loc"].clone();
    let now = now();
    let positions = format!(
        "{}\n{}\n{}\n",
        json!({"worker_id": "W-near", "grid": "C0001-G1", "loc": at(1), "on_duty": true, "at": now.to_string()}),
        json!({"worker_id": "W-far", "grid": "C0001-G2", "loc": at(30), "on_duty": true, "at": now.to_string()}),
        json!({"worker_id": "W-home", "grid": "C0001-G3", "loc": at(0), "on_duty": false, "at": now.to_string()}),
    );
    let ingest = |dataset: &str, body: &str| server.ingest_as(&grid_token, dataset, body);
    let p = ingest(citybrain_services::POSITIONS, &positions);
    server.applied(
        "services",
        &[(citybrain_services::POSITIONS.to_string(), p)],
    );
    let alarm =
        json!({"alarm_id": "smoke-1", "kind": "smoke", "loc": at(0), "raised_at": now.to_string()});
    let a = ingest(citybrain_services::ALARMS, &format!("{alarm}\n{alarm}\n"));
    server.applied("services", &[(citybrain_services::ALARMS.to_string(), a)]);
    let steps = |alarm: &str| -> Vec<(String, Option<String>)> {
        let (status, rows) = call(
            &server,
            &grid_token,
            "POST",
            "/api/v1/sql",
            Some(
                &json!({"sql": format!("SELECT step, worker_id FROM services.alarm_steps WHERE alarm_id = '{alarm}' ORDER BY step_id"), "purpose": "test"}),
            ),
        );
        assert_eq!(status, 200, "{rows}");
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["step"].as_str().unwrap().to_string(),
                    r["worker_id"].as_str().map(str::to_string),
                )
            })
            .collect()
    };
    assert_eq!(
        steps("smoke-1"),
        vec![("assigned".to_string(), Some("W-near".to_string()))],
        "the worker off duty is not asked, and the alarm sent twice is dispatched once"
    );
    let path = "/api/v1/services/alarms/smoke-1";
    let (status, answer) = call(
        &server,
        &grid_token,
        "POST",
        path,
        Some(&json!({"worker_id": "W-far", "state": "acknowledged"})),
    );
    assert_eq!(status, 409, "only the worker asked reports: {answer}");
    for state in ["acknowledged", "on_site"] {
        let (status, answer) = call(
            &server,
            &grid_token,
            "POST",
            path,
            Some(&json!({"worker_id": "W-near", "state": state})),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let names: Vec<String> = steps("smoke-1").into_iter().map(|s| s.0).collect();
    assert_eq!(names, ["assigned", "acknowledged", "on_site"]);

    // Nobody left on duty: escalated at once, to the office.
    let off = format!(
        "{}\n{}\n",
        json!({"worker_id": "W-near", "grid": "C0001-G1", "loc": at(1), "on_duty": false, "at": now.to_string()}),
        json!({"worker_id": "W-far", "grid": "C0001-G2", "loc": at(30), "on_duty": false, "at": now.to_string()}),
    );
    ingest(citybrain_services::POSITIONS, &off);
    let alarm =
        json!({"alarm_id": "fall-2", "kind": "fall", "loc": at(5), "raised_at": now.to_string()});
    let a = ingest(citybrain_services::ALARMS, &format!("{alarm}\n"));
    server.applied("services", &[(citybrain_services::ALARMS.to_string(), a)]);
    assert_eq!(steps("fall-2"), vec![("escalated".to_string(), None)]);
}
