//! A second demo city, so that nothing may assume Hangzhou: Nanchang's real road network
//! (KDD Cup 2021) with its own profile (赣A plates), generated and loaded by `up
//! --demo-network`, and every scene run on it.

use std::process::Command;

mod common;
use common::*;

#[test]
fn every_scene_runs_on_a_second_city_with_its_own_plates_and_network() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("{}/tests/data/nanchang", manifest_dir());
    std::fs::copy(
        format!("{data}/citybrain.toml"),
        dir.path().join("citybrain.toml"),
    )
    .unwrap();
    let network = format!("{data}/roadnet.txt");
    let mut server = start(dir.path(), &["--scale", "0.05", "--demo-network", &network]);
    let (_, text) = server.get("/api/v1/city", Some(&server.token));
    assert!(text.contains("\"Nanchang\""), "{text}");
    // Read the passages and gate reads as the owning department's admin (plates raw).
    let (status, text) = server.post(
        "/api/v1/principals/transport_admin/tokens",
        "application/json",
        b"{}",
    );
    assert_eq!(status, 201, "{text}");
    server.token = serde_json::from_str::<serde_json::Value>(&text).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("demo/truth.json")).unwrap())
            .unwrap();

    // Nanchang's network and plates, none of Hangzhou's.
    let links = server.count("transport.links");
    assert!(
        links > 5_000,
        "Nanchang has 3,041 two-way segments: {links} links"
    );
    let plates = server.sql(
        "SELECT sum(CASE WHEN plate LIKE '赣A%' THEN 1 ELSE 0 END) AS own, count(*) AS n FROM transport.anpr_passages",
    );
    assert!(
        plates[0]["own"].as_i64().unwrap() > plates[0]["n"].as_i64().unwrap() / 2,
        "{plates}"
    );

    // Passages two days on close the demo day in the indices and move the gates' clock.
    // Two, since the indices hold the newest records back for the allowed lateness.
    let late = "{\"ts\":\"2026-11-24T01:00:00+08:00\",\"checkpoint_id\":1,\"plate\":\"赣A00000\"}\n\
                {\"ts\":\"2026-11-24T01:05:00+08:00\",\"checkpoint_id\":1,\"plate\":\"赣A00001\"}\n";
    let at = server.ingest("transport.anpr_passages", late);
    server.applied("indices", &[("transport.anpr_passages".into(), at)]);
    let day = server.sql(
        "SELECT vehicles, local, non_local FROM indices.census_daily WHERE day = DATE '2026-11-22'",
    );
    let (vehicles, local) = (
        day[0]["vehicles"].as_f64().unwrap(),
        day[0]["local"].as_f64().unwrap(),
    );
    let want = truth["local_vehicles"].as_f64().unwrap() / truth["vehicles"].as_f64().unwrap();
    assert!(
        local > 0.0 && (local / vehicles - want).abs() < 0.05,
        "local share {} against the truth's {want}: {day}",
        local / vehicles
    );
    // The districts are the network's own zones.
    let districts = server.sql("SELECT DISTINCT district FROM indices.delay ORDER BY district");
    assert!(districts.to_string().contains("zone_"), "{districts}");

    // Parking: every clean stay billed once, on the city's own plates.
    let late = "{\"ts\":\"2026-11-24T01:00:00+08:00\",\"lot_id\":1,\"plate\":\"赣A00000\",\"direction\":\"in\"}\n";
    let at = server.ingest("parking.gate_events", late);
    server.applied("parking", &[("parking.gate_events".into(), at)]);
    let bills =
        server.sql("SELECT count(*) AS n, count(DISTINCT bill_id) AS ids FROM parking.bills");
    assert_eq!(
        bills[0]["n"], truth["parking"]["clean_stays_ended"],
        "{bills}"
    );
    assert_eq!(bills[0]["n"], bills[0]["ids"]);

    // Every scene is running, but signals, which needs a SUMO network.
    let (_, text) = server.get("/api/v1/scenes", Some(&server.token));
    let scenes: serde_json::Value = serde_json::from_str(&text).unwrap();
    for scene in scenes["scenes"].as_array().unwrap() {
        let expected = if scene["name"] == "signals" {
            "idle"
        } else {
            "running"
        };
        assert_eq!(scene["state"], expected, "{scene}");
    }
    assert!(server.stop().success());

    // The offline indices over the same day agree on the local share.
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["indices", "traffic", "--passages"])
        .arg(dir.path().join("demo/anpr_passages.ndjson"))
        .arg("--links")
        .arg(dir.path().join("demo/links.ndjson"))
        .arg("--out")
        .arg(dir.path().join("offline"))
        .arg("--profile")
        .arg(dir.path().join("citybrain.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["census"][0]["local"].as_f64().unwrap(),
        local,
        "{summary}"
    );
}
