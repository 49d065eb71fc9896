//! Colour codes and the one call at the desk end to end (issue 26, items 4 and 5): codes
//! issued by the departments whose facts decide them, verified online and offline, refused
//! when forged or revoked; a hotel desk checking identity, code and booking in one call.

mod common;

use citybrain_core::{Date, TimeZone, Timestamp};
use citybrain_services::demo;
use common::people::{Tokens, call, config, now, publish};
use common::{agent, department_admin, start};
use serde_json::json;

/// Codes: health issues a red code for a resident with a positive result and a green one
/// for another; human resources a talent code; each verifies with the public key, offline
/// too; an altered code is refused as forged, a revoked one as revoked.
#[test]
fn codes_verify_offline_and_forged_or_revoked_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let tokens = Tokens::new(&server);
    let health = department_admin(&server, "health");
    let people = demo::generate(&config(200));
    let positions = publish(&server.base, &tokens, &people.first_load).unwrap();
    server.applied("services", &positions);
    let residents: Vec<String> = people
        .first_load
        .iter()
        .filter_map(|u| match u {
            citybrain_services::Update::Resident(r) => Some(r.resident_id.clone()),
            _ => None,
        })
        .collect();
    let (sick, well) = (&residents[0], &residents[1]);
    let now = now();
    let day_ago = Timestamp(now.0 - 86_400_000_000);
    let ingest = |token: &str, dataset: &str, body: String| {
        server.ingest_as(token, dataset, &body);
    };
    ingest(
        &health,
        citybrain_services::SCREENING,
        format!(
            "{}\n{}\n",
            json!({"resident_id": sick, "positive": true, "tested_at": day_ago.to_string()}),
            json!({"resident_id": well, "positive": false, "tested_at": day_ago.to_string()})
        ),
    );
    ingest(
        &tokens.0["human_resources"],
        citybrain_services::TALENT,
        format!(
            "{}\n",
            json!({"resident_id": well, "education": "phd", "title": "none", "annual_salary": 30_000_000, "updated_at": day_ago.to_string()})
        ),
    );
    let issue = |token: &str, kind: &str, who: &str| {
        call(
            &server,
            token,
            "POST",
            "/api/v1/services/codes/issue",
            Some(&json!({"kind": kind, "resident_id": who})),
        )
    };
    let (status, red) = issue(&health, "health", sick);
    assert_eq!(status, 200, "{red}");
    assert_eq!(red["payload"]["value"], "red", "{red}");
    assert!(red["qr_svg"].as_str().unwrap().contains("<svg"));
    let (_, green) = issue(&health, "health", well);
    assert_eq!(green["payload"]["value"], "green", "{green}");
    let (status, talent) = issue(&tokens.0["human_resources"], "talent", well);
    assert_eq!(status, 200, "{talent}");
    assert_eq!(talent["payload"]["value"], "B", "{talent}");
    let (status, answer) = issue(&tokens.0["civil_affairs"], "health", sick);
    assert_eq!(status, 403, "only health issues health codes: {answer}");

    let (_, key) = call(&server, &health, "GET", "/api/v1/services/codes/key", None);
    let key = key["public_key"].as_str().unwrap().to_string();
    let verify = |code: &str| {
        call(
            &server,
            &tokens.0["community"],
            "POST",
            "/api/v1/services/codes/verify",
            Some(&json!({"code": code})),
        )
        .1
    };
    let code = green["code"].as_str().unwrap();
    assert_eq!(verify(code)["valid"], true);
    // Offline, with the public key alone.
    let offline = |code: &str, revoked: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_citybrain"));
        cmd.args(["codes", "verify", code, "--key", &key]);
        if let Some(r) = revoked {
            cmd.arg("--revoked").arg(r);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = offline(code, None);
    assert!(ok && said.contains("valid: health code green"), "{said}");
    // The red code with its payload swapped for the green one's: forged.
    let red_code = red["code"].as_str().unwrap();
    let forged = format!(
        "{}.{}.{}",
        "CB1",
        code.split('.').nth(1).unwrap(),
        red_code.split('.').nth(2).unwrap()
    );
    assert_eq!(verify(&forged)["refused"], "forged");
    let (ok, said) = offline(&forged, None);
    assert!(!ok && said.contains("forged"), "{said}");
    // Why: told to the holder only (the id number the code was issued to), no one else.
    let explain = |code: &str, id: &str| {
        call(
            &server,
            &tokens.0["community"],
            "POST",
            "/api/v1/services/codes/explain",
            Some(&json!({"code": code, "id_number": id})),
        )
    };
    let (status, why) = explain(red_code, sick);
    assert_eq!(status, 200, "{why}");
    assert_eq!(why["value"], "red", "{why}");
    assert!(why["why"].as_str().unwrap().contains("positive"), "{why}");
    let (status, refused) = explain(red_code, well);
    assert_eq!(status, 403, "{refused}");
    assert!(!refused.to_string().contains("positive"), "{refused}");
    let (status, _) = explain(&forged, well);
    assert_eq!(status, 400);
    // Revoked: refused here at once, and offline with the list.
    let (status, answer) = call(
        &server,
        &health,
        "POST",
        "/api/v1/services/codes/revoke",
        Some(&json!({"code_id": green["payload"]["id"], "reason": "issued to the wrong person"})),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(verify(code)["refused"], "revoked");
    assert_eq!(
        explain(code, well).0,
        400,
        "a revoked code is not explained"
    );
    let (_, list) = call(
        &server,
        &health,
        "GET",
        "/api/v1/services/codes/revoked",
        None,
    );
    let file = dir.path().join("revoked.json");
    std::fs::write(&file, list.to_string()).unwrap();
    let (ok, said) = offline(code, Some(&file));
    assert!(!ok && said.contains("revoked"), "{said}");
    let (ok, _) = offline(red_code, Some(&file));
    assert!(ok, "another code is not revoked with it");
    // The symbol as PNG, for a printer.
    let response = agent()
        .get(&format!(
            "{}/api/v1/services/codes/qr?format=png&code={}",
            server.base, red_code
        ))
        .header("Authorization", &format!("Bearer {health}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let png = response.into_body().read_to_vec().unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
}

/// One call at the desk: a guest with their card, their health code and a booking is
/// admitted; the name shows only where the hotel's grant has it raw; another person's code,
/// a red one, or no booking is not admitted; without the grants the desk is told which to ask.
#[test]
fn one_call_at_the_desk_checks_identity_code_and_booking() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let tokens = Tokens::new(&server);
    let health = department_admin(&server, "health");
    let tourism = department_admin(&server, "culture_tourism");
    let hotel = department_admin(&server, "hotel_lake");
    let people = demo::generate(&config(200));
    let mut last = publish(&server.base, &tokens, &people.first_load).unwrap();
    let ids: Vec<String> = people
        .first_load
        .iter()
        .filter_map(|u| match u {
            citybrain_services::Update::Resident(r) => Some(r.resident_id.clone()),
            _ => None,
        })
        .collect();
    let (guest, other, sick) = (&ids[3], &ids[4], &ids[5]);
    let today = TimeZone::parse("Asia/Shanghai").unwrap().local_day(now());
    let booking = |id: &str, n: u32| {
        json!({"booking_id": format!("B{n}"), "resident_id": id, "hotel": "hotel_lake", "room": "301",
               "check_in": today.to_string(), "nights": 2, "booked_at": "2026-11-01T00:00:00Z"})
    };
    let body = format!("{}\n{}\n", booking(guest, 1), booking(sick, 2));
    last.push((
        citybrain_services::BOOKINGS.to_string(),
        server.ingest_as(&tourism, citybrain_services::BOOKINGS, &body),
    ));
    let screening = format!(
        "{}\n",
        json!({"resident_id": sick, "positive": true, "tested_at": format!("{}T02:00:00Z", Date(today.0 - 1))})
    );
    server.ingest_as(&health, citybrain_services::SCREENING, &screening);
    server.applied("services", &last);
    let code_of = |who: &str| {
        let (status, issued) = call(
            &server,
            &health,
            "POST",
            "/api/v1/services/codes/issue",
            Some(&json!({"kind": "health", "resident_id": who})),
        );
        assert_eq!(status, 200, "{issued}");
        issued["code"].as_str().unwrap().to_string()
    };
    let (guest_code, sick_code) = (code_of(guest), code_of(sick));
    let desk = |id: &str, code: &str| {
        call(
            &server,
            &hotel,
            "POST",
            "/api/v1/verify/checkin",
            Some(&json!({"id_number": id, "code": code})),
        )
    };
    let (status, answer) = desk(guest, &guest_code);
    assert_eq!(status, 403, "no grants yet: {answer}");
    assert_eq!(answer["code"], "grant_required", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("--raw resident_id"),
        "{answer}"
    );
    for (dataset, raw, owner) in [
        (
            citybrain_services::RESIDENTS,
            vec!["resident_id"],
            &tokens.0["public_security"],
        ),
        (citybrain_services::BOOKINGS, vec!["resident_id"], &tourism),
    ] {
        let (status, grant) = call(
            &server,
            &hotel,
            "POST",
            "/api/v1/grants",
            Some(
                &json!({"dataset": dataset, "purpose": "check-in at the desk", "fields": [], "raw": raw, "days": 30}),
            ),
        );
        assert_eq!(status, 201, "{grant}");
        let (status, decided) = call(
            &server,
            owner,
            "POST",
            &format!("/api/v1/grants/{}/approve", grant["id"]),
            Some(&json!({"reason": "to match the card"})),
        );
        assert_eq!(status, 200, "{decided}");
    }
    let (status, answer) = desk(guest, &guest_code);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["admit"], true, "{answer}");
    assert_eq!(answer["booking"]["room"], "301", "{answer}");
    assert!(
        answer["identity"]["name"].is_null(),
        "the name is not raw in the grant: {answer}"
    );
    // Someone else's code, a red code, no booking: not admitted, and why.
    let (_, answer) = desk(other, &guest_code);
    assert_eq!(answer["code"]["refused"], "not_the_holders", "{answer}");
    assert_eq!(answer["admit"], false);
    let (_, answer) = desk(sick, &sick_code);
    assert_eq!(answer["code"]["value"], "red", "{answer}");
    assert_eq!(answer["admit"], false);
    let (_, answer) = desk(other, &code_of(other));
    assert!(
        answer["booking"].is_null() && answer["admit"] == false,
        "{answer}"
    );
}
