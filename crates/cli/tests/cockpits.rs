//! Cockpits as files, end to end over the real binary: the demo's six cockpits, who sees
//! which, a panel run under the viewer's grants (and one it may not read), values equal
//! to an independent query, and a new cockpit made from a file with the CLI alone.

mod common;

use common::{agent, department_admin, start};
use serde_json::Value;

fn get(server: &common::Server, path: &str, token: &str) -> (u16, Value) {
    let (status, text) = server.get(path, Some(token));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn ids(list: &Value) -> Vec<String> {
    list["cockpits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn sql_as(server: &common::Server, token: &str, sql: &str) -> Value {
    let response = agent()
        .post(&format!("{}/api/v1/sql", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(
            serde_json::json!({ "sql": sql, "purpose": "test: the expected figure" })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_str(&response.into_body().read_to_string().unwrap()).unwrap()
}

fn cli(server: &common::Server, token: &str, args: &[&str]) -> std::process::Output {
    let token_file = server.data.join(format!("test-{}.token", &token[..12]));
    std::fs::write(&token_file, token).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .arg("cockpits")
        .args(args)
        .args(["--server", &server.base, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap()
}

#[test]
fn every_role_sees_its_cockpits_and_each_panel_runs_under_the_viewers_grants() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--scale", "0.05"]);
    // The live time is the newest passage the indices applied: wait on their watermark.
    for scene in ["indices", "parking", "alerts", "medical"] {
        server.caught_up(scene);
    }
    let office = std::fs::read_to_string(dir.path().join("cockpit.token")).unwrap();
    let market = std::fs::read_to_string(dir.path().join("market.token")).unwrap();
    // The community sees its alarms of the last day on the map, each on its SLA clock.
    server.caught_up("services");
    let grid = std::fs::read_to_string(dir.path().join("grid.token")).unwrap();
    let (status, alarms) = get(
        &server,
        "/api/v1/cockpits/community/panels/alarms_map",
        &grid,
    );
    assert_eq!(status, 200, "{alarms}");
    let rows = alarms["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{alarms}");
    for row in rows {
        assert!(
            row["label"].as_str().unwrap().contains("min since raised"),
            "{row}"
        );
        assert!((0..=3).contains(&row["value"].as_i64().unwrap()), "{row}");
        assert!(row["loc"]["lon"].is_number(), "{row}");
    }

    // The city office opens all eight (each is shared with it); the transport admin only its own.
    let (status, list) = get(&server, "/api/v1/cockpits", &office);
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        ids(&list),
        [
            "city_leader",
            "transport",
            "district_nw",
            "market",
            "health",
            "community",
            "warnings",
            "village"
        ]
    );
    // The village map: the day's planted events opened threshold alerts, and the one the
    // evening collection missed is still open at the day's end; a table downloads whole.
    server.caught_up("thresholds");
    let (status, panel) = get(
        &server,
        "/api/v1/cockpits/village/panels/over_limit_now",
        &office,
    );
    assert_eq!(status, 200, "{panel}");
    assert!(panel["rows"][0]["value"].as_i64() >= Some(1), "{panel}");
    let response = common::agent()
        .get(&format!(
            "{}/api/v1/cockpits/village/panels/containers?format=excel",
            server.base
        ))
        .header("Authorization", &format!("Bearer {office}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let disposition = response
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"village-containers-"),
        "{disposition}"
    );
    let csv = response.into_body().read_to_string().unwrap();
    assert!(
        csv.starts_with("\u{feff}container,value,day,level"),
        "{csv}"
    );
    // Eighteen containers in six villages, every one in the file (the panel shows eight).
    assert_eq!(csv.trim().lines().count(), 1 + 18, "{csv}");
    let (status, body) = get(
        &server,
        "/api/v1/cockpits/village/panels/containers?format=pdf",
        &office,
    );
    assert_eq!(status, 400, "{body}");
    let (_, list) = get(&server, "/api/v1/cockpits", &server.token);
    assert_eq!(ids(&list), ["transport"]);
    // Another department's cockpit is "not found", as one that does not exist.
    let (status, body) = get(&server, "/api/v1/cockpits/market", &server.token);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "cockpit_not_found");
    let (status, _) = get(
        &server,
        "/api/v1/cockpits/market/panels/paid",
        &server.token,
    );
    assert_eq!(status, 404);

    // A KPI equals the same figure asked independently.
    let (status, panel) = get(
        &server,
        "/api/v1/cockpits/city_leader/panels/vehicles_today",
        &office,
    );
    assert_eq!(status, 200, "{panel}");
    let expected = sql_as(
        &server,
        &office,
        "SELECT vehicles FROM indices.census_so_far ORDER BY at DESC LIMIT 1",
    );
    assert!(expected[0]["vehicles"].as_i64().unwrap() > 0, "{expected}");
    assert_eq!(
        panel["rows"][0]["value"], expected[0]["vehicles"],
        "{panel}"
    );
    let paid = sql_as(
        &server,
        &market,
        "SELECT sum(paid) AS s FROM policy.payouts",
    );
    let (_, panel) = get(&server, "/api/v1/cockpits/market/panels/paid", &office);
    assert_eq!(panel["rows"][0]["value"], paid[0]["s"], "{panel}");

    // The city office has no grant on market.enterprises: that panel says so and shows
    // nothing; the market department's own admin sees it.
    let (status, panel) = get(
        &server,
        "/api/v1/cockpits/market/panels/enterprises_by_district",
        &office,
    );
    assert_eq!(status, 200, "{panel}");
    assert!(panel["rows"].is_null(), "{panel}");
    let why = panel["denied"].as_str().unwrap();
    assert!(why.contains("market.enterprises"), "{why}");
    let (_, panel) = get(
        &server,
        "/api/v1/cockpits/market/panels/enterprises_by_district",
        &market,
    );
    assert!(panel["rows"].as_array().unwrap().len() > 1, "{panel}");

    // Every panel of every cockpit runs for the office: rows, or a refusal naming a grant.
    for id in ids(&list_of(&server, &office)) {
        let (_, cockpit) = get(&server, &format!("/api/v1/cockpits/{id}"), &office);
        for p in cockpit["panel"].as_array().unwrap() {
            let pid = p["id"].as_str().unwrap();
            let (status, answer) = get(
                &server,
                &format!("/api/v1/cockpits/{id}/panels/{pid}"),
                &office,
            );
            assert_eq!(status, 200, "{id}/{pid}: {answer}");
            assert!(
                answer["rows"].is_array() || answer["denied"].is_string(),
                "{id}/{pid}: {answer}"
            );
        }
    }

    // Sharing a cockpit shares its layout, never data: a panel over a personal field shows
    // the office pseudonyms (its grant's mask) and the owning department the raw ids.
    let patients = r#"id = "patients"
department = "health"
shared_with = ["city_office"]
title = { en = "Patients asked about", zh = "被查询患者" }
[[panel]]
id = "by_patient"
kind = "ranking"
title = { en = "Orders by patient", zh = "各患者申请" }
limit = 1000
sql = "SELECT patient_id, count(*) AS value FROM medical.recognitions GROUP BY patient_id ORDER BY value DESC, patient_id"
"#;
    let response = agent()
        .put(&format!("{}/api/v1/cockpits/patients", server.base))
        .header("Authorization", &format!("Bearer {}", server.admin))
        .header("Content-Type", "text/plain")
        .send(patients.as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let health = department_admin(&server, "health");
    let ids = |token: &str| -> Vec<String> {
        let (status, answer) = get(
            &server,
            "/api/v1/cockpits/patients/panels/by_patient",
            token,
        );
        assert_eq!(status, 200, "{answer}");
        answer["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|r| r["patient_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (masked, raw) = (ids(&office), ids(&health));
    assert!(!masked.is_empty() && masked.len() == raw.len());
    assert!(masked.iter().all(|p| p.starts_with("ps_")), "{masked:?}");
    assert!(raw.iter().all(|p| !p.starts_with("ps_")), "{raw:?}");
    let direct = sql_as(
        &server,
        &health,
        "SELECT DISTINCT patient_id FROM medical.recognitions",
    );
    assert_eq!(direct.as_array().unwrap().len(), raw.len());
    assert!(raw.iter().all(|p| !masked.contains(p)));

    // Looking back: `at` moves the period.
    let (status, answer) = get(
        &server,
        "/api/v1/cockpits/city_leader/panels/on_road?at=2026-11-22T00:30:00Z",
        &office,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["day_start"], "2026-11-21T16:00:00Z", "{answer}");
    let (status, answer) = get(
        &server,
        "/api/v1/cockpits/city_leader/panels/on_road?at=yesterday",
        &office,
    );
    assert_eq!(status, 400, "{answer}");
}

#[test]
fn the_daily_briefing_holds_the_days_figures_as_png_pdf_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--scale", "0.05"]);
    for scene in ["indices", "alerts", "medical"] {
        server.caught_up(scene);
    }
    let office = std::fs::read_to_string(dir.path().join("cockpit.token")).unwrap();
    let base = "/api/v1/cockpits/city_leader/briefing?day=2026-11-22";
    let (status, text) = server.get(&format!("{base}&format=json"), Some(&office));
    assert_eq!(status, 200, "{text}");
    let briefing: Value = serde_json::from_str(&text).unwrap();
    let kpi = |id: &str| {
        briefing["kpis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["panel"] == id)
            .unwrap_or_else(|| panic!("no {id} in {briefing}"))
            .clone()
    };
    // Independent queries over the whole local day (Asia/Shanghai: 16:00Z to 16:00Z).
    let vehicles = sql_as(
        &server,
        &office,
        "SELECT vehicles FROM indices.census_so_far WHERE day = DATE '2026-11-22' ORDER BY at DESC LIMIT 1",
    )[0]["vehicles"]
        .as_i64()
        .unwrap();
    assert_eq!(
        kpi("vehicles_today")["value"].as_f64(),
        Some(vehicles as f64),
        "{briefing}"
    );
    let opened = sql_as(
        &server,
        &office,
        "SELECT count(*) AS n FROM alerts.events WHERE state = 'open' \
           AND at >= TIMESTAMP '2026-11-21T16:00:00Z' AND at < TIMESTAMP '2026-11-22T16:00:00Z'",
    )[0]["n"]
        .as_i64()
        .unwrap();
    assert_eq!(
        kpi("alerts_opened")["value"].as_f64(),
        Some(opened as f64),
        "{briefing}"
    );
    // The demo holds one day: a week before there is nothing to compare with.
    assert!(kpi("vehicles_today")["week_before"].is_null(), "{briefing}");
    assert!(
        briefing["series"]["lines"].as_array().unwrap().len() >= 2,
        "{briefing}"
    );
    assert!(
        !briefing["ranking"]["rows"].as_array().unwrap().is_empty(),
        "{briefing}"
    );

    // The page writes the same figures.
    let (_, svg) = server.get(&format!("{base}&format=svg"), Some(&office));
    assert!(
        svg.contains(&format!(
            ">{} vehicles<",
            citybrain_cockpits::Format::Int.write(vehicles as f64)
        )),
        "{svg}"
    );
    // PNG (A4 at 150 dpi) and PDF, in both languages.
    for lang in ["en", "zh"] {
        let response = agent()
            .get(&format!("{}{base}&format=png&lang={lang}", server.base))
            .header("Authorization", &format!("Bearer {office}"))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let png = response.into_body().read_to_vec().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1240);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 1754);
    }
    let response = agent()
        .get(&format!("{}{base}&format=pdf", server.base))
        .header("Authorization", &format!("Bearer {office}"))
        .call()
        .unwrap();
    let pdf = response.into_body().read_to_vec().unwrap();
    assert!(pdf.starts_with(b"%PDF-1.4") && pdf.ends_with(b"%%EOF\n"));
    // A day that has ended is kept for the department that read it.
    let (status, _) = server.get(
        "/api/v1/cockpits/city_leader/briefing?day=2026-11-21&format=pdf",
        Some(&office),
    );
    assert_eq!(status, 200);
    let kept = dir.path().join("briefings/city_office/city_leader");
    assert!(kept.join("2026-11-21.en.pdf").exists() && kept.join("2026-11-21.en.png").exists());
    let (status, text) = server.get(&format!("{base}&format=docx"), Some(&office));
    assert_eq!(status, 400, "{text}");
}

fn list_of(server: &common::Server, token: &str) -> Value {
    get(server, "/api/v1/cockpits", token).1
}

const MINE: &str = r#"# Kept as written: this comment survives apply.
id = "parking_desk"
department = "transport"
title = { en = "Parking desk", zh = "停车服务台" }

[[panel]]
id = "lots"
kind = "kpi"
title = { en = "Car parks", zh = "停车场数" }
sql = "SELECT count(*) AS value FROM parking.lots"
"#;

#[test]
fn a_new_cockpit_is_a_file_and_one_command_and_mistakes_name_their_panel() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--scale", "0.02"]);
    let file = dir.path().join("parking_desk.toml");

    // Checked before anything is sent: every problem named with its panel.
    std::fs::write(&file, MINE.replace("kind = \"kpi\"", "kind = \"gauge\"")).unwrap();
    let out = cli(&server, &server.token, &["apply", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gauge") && err.contains("docs/cockpits.md"),
        "{err}"
    );

    // Planned on the server: a KPI without a `value` column is refused, naming both.
    std::fs::write(&file, MINE.replace("AS value", "AS n")).unwrap();
    let out = cli(&server, &server.token, &["apply", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("panel \"lots\"") && err.contains("value") && err.contains("returns n"),
        "{err}"
    );

    // Another department's admin may not make cockpits for transport.
    std::fs::write(&file, MINE).unwrap();
    let health = department_admin(&server, "health");
    let out = cli(&server, &health, &["apply", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not change the cockpits of transport")
    );

    // The transport admin: created, listed, run, the file kept as written.
    let out = cli(&server, &server.token, &["apply", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created cockpit parking_desk"));
    let stored = std::fs::read_to_string(dir.path().join("cockpits/parking_desk.toml")).unwrap();
    assert_eq!(stored, MINE);
    let out = cli(&server, &server.token, &["show", "parking_desk", "--run"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    let lots = server.sql("SELECT count(*) AS n FROM parking.lots")[0]["n"].clone();
    assert!(shown.contains(&format!("{{\"value\":{lots}}}")), "{shown}");
    let out = cli(&server, &server.token, &["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("parking_desk"));
    let out = cli(&server, &server.token, &["apply", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("replaced cockpit parking_desk"));

    // A hand edit that breaks a briefing panel's query costs that panel, not the page.
    let edited = MINE.replace(
        "sql = \"SELECT count(*) AS value FROM parking.lots\"",
        "briefing = true\nsql = \"SELECT count(*) AS value FROM parking.no_such_table\"",
    );
    assert_ne!(edited, MINE);
    std::fs::write(dir.path().join("cockpits/parking_desk.toml"), &edited).unwrap();
    let (status, text) = server.get(
        "/api/v1/cockpits/parking_desk/briefing?day=2026-11-22&format=json",
        Some(&server.token),
    );
    assert_eq!(status, 200, "{text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    let hidden = page["hidden"][0][1].as_str().unwrap_or_default();
    assert!(
        hidden.contains("could not be read") && hidden.contains("no_such_table"),
        "{page}"
    );
    std::fs::write(dir.path().join("cockpits/parking_desk.toml"), MINE).unwrap();

    // A file broken by hand is listed for admins with why, not silently dropped.
    std::fs::write(dir.path().join("cockpits/broken.toml"), "id = ").unwrap();
    let list = list_of(&server, &server.token);
    assert!(list["unreadable"][0]["file"] == "broken.toml", "{list}");

    let out = cli(&server, &server.token, &["delete", "parking_desk"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("cockpits/parking_desk.toml").exists());
    let (status, _) = get(&server, "/api/v1/cockpits/parking_desk", &server.token);
    assert_eq!(status, 404);
}
