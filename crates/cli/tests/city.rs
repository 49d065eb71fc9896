//! Your own city: `citybrain init` writes a profile that `up`, the scenes and the offline
//! commands read; a checkpoint export arrives in its own shape through a feed mapping.

use std::process::Command;

mod common;
use common::*;

fn citybrain(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn init_writes_a_profile_that_up_serves_and_mistakes_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("zhengzhou");
    let data_arg = data.to_str().unwrap();
    let init = [
        "init",
        "--data",
        data_arg,
        "--name",
        "Zhengzhou",
        "--name-zh",
        "郑州",
        "--time-zone",
        "Asia/Shanghai",
        "--plate-prefix",
        "豫A",
        "--plate-prefix",
        "豫Z",
        "--centre",
        "113.62,34.75",
    ];
    let out = citybrain(&init);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Once only, unless forced; a zone that does not exist is named with its option.
    let again = citybrain(&init);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let bad = citybrain(&[
        "init",
        "--data",
        data_arg,
        "--name",
        "X",
        "--time-zone",
        "Asia/Zhengzhou",
        "--force",
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--time-zone") && stderr.contains("IANA"),
        "{stderr}"
    );

    let server = start(&data, &[]);
    let (status, text) = server.get("/api/v1/city", Some(&server.token));
    assert_eq!(status, 200, "{text}");
    let city: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(city["name"], "Zhengzhou");
    assert_eq!(city["name_zh"], "郑州");
    assert_eq!(city["time_zone"], "Asia/Shanghai");
    assert_eq!(city["plate_prefixes"], serde_json::json!(["豫A", "豫Z"]));
    assert_eq!(city["map"]["centre"], serde_json::json!([113.62, 34.75]));
    assert!(server.stop().success());
}

#[test]
fn a_checkpoint_export_arrives_through_its_mapping_over_http_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    server.create_passages();
    let records = "/api/v1/datasets/transport.anpr_passages/records";
    let csv = "HPHM,KKBH,JGSJ,CDBH,CLSD,TPURL\n\
               浙A·12345,17,20260302081530,2,41.5,http://x/1.jpg\n\
               浙Ａ１２３４６,18,20260302081600,1,,http://x/2.jpg\n";
    let (status, text) = server.post(
        &format!("{records}?mapping=kkbh_compact"),
        "text/csv",
        csv.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let rows = server.sql(
        "SELECT CAST(ts AS VARCHAR) AS ts, checkpoint_id, plate, lane FROM transport.anpr_passages ORDER BY ts",
    );
    assert_eq!(rows[0]["plate"], "浙A12345", "{rows}");
    assert_eq!(rows[1]["plate"], "浙A12346", "{rows}");
    assert_eq!(rows[0]["checkpoint_id"], 17);
    assert!(
        rows[0]["ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-02T00:15:30"),
        "{rows}"
    );

    // A refused record names the export's column; an unknown mapping says which exist.
    let bad = "HPHM,KKBH,JGSJ\n浙A1,K17,20260302081530\n";
    let (status, text) = server.post(
        &format!("{records}?mapping=kkbh_compact"),
        "text/csv",
        bad.as_bytes(),
    );
    assert_eq!(status, 422, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["details"]["problems"][0]["field"], "KKBH", "{text}");
    let (status, text) = server.post(
        &format!("{records}?mapping=nope"),
        "text/csv",
        bad.as_bytes(),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("unknown_mapping") && text.contains("kkbh_export"),
        "{text}"
    );

    // The same through `citybrain ingest --mapping`, as NDJSON with local times.
    let file = dir.path().join("export.ndjson");
    std::fs::write(
        &file,
        "{\"hphm\":\"浙A00001\",\"kkbh\":\"19\",\"jgsj\":\"2026-03-02 09:00:00\",\"fxbh\":\"01\"}\n",
    )
    .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, &server.token).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["ingest", "transport.anpr_passages"])
        .arg(&file)
        .args(["--mapping", "kkbh_export"])
        .env("CITYBRAIN_SERVER", &server.base)
        .env("CITYBRAIN_TOKEN_FILE", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = server.sql(
        "SELECT CAST(ts AS VARCHAR) AS ts FROM transport.anpr_passages WHERE checkpoint_id = 19",
    );
    assert!(
        rows[0]["ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-02T01:00:00"),
        "{rows}"
    );
    assert!(server.stop().success());
}

#[test]
fn indices_traffic_counts_local_plates_and_days_by_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    // Two reads each for three vehicles late on 2 March UTC: 豫A and 豫Z are local in
    // Zhengzhou, 浙A is not; in Asia/Shanghai the reads fall on 3 March.
    let mut passages = String::new();
    for (i, plate) in ["豫A00001", "豫Z00002", "浙A00003"].iter().enumerate() {
        for (k, checkpoint) in [1, 2].iter().enumerate() {
            passages.push_str(&format!(
                "{{\"ts\":\"2026-03-02T20:{:02}:00Z\",\"checkpoint_id\":{checkpoint},\"plate\":\"{plate}\"}}\n",
                i * 5 + k
            ));
        }
    }
    std::fs::write(dir.path().join("passages.ndjson"), passages).unwrap();
    // A link table with neither lanes nor district.
    std::fs::write(
        dir.path().join("links.csv"),
        "link_id,from_checkpoint,to_checkpoint,length_m,freeflow_s\n1,1,2,500,40\n",
    )
    .unwrap();
    let profile = dir.path().join("citybrain.toml");
    std::fs::write(
        &profile,
        "name = \"Zhengzhou\"\ntime_zone = \"Asia/Shanghai\"\nplate_prefixes = [\"豫A\", \"豫Z\"]\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
            .args(["indices", "traffic", "--passages"])
            .arg(dir.path().join("passages.ndjson"))
            .arg("--links")
            .arg(dir.path().join("links.csv"))
            .arg("--out")
            .arg(dir.path().join("out"))
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        summary["census"][0].clone()
    };
    let census = run(&["--profile", profile.to_str().unwrap()]);
    assert_eq!(census["day"], "2026-03-03", "{census}");
    assert_eq!(
        (census["vehicles"].as_u64(), census["local"].as_u64()),
        (Some(3), Some(2)),
        "{census}"
    );
    // Options override the profile: a zone behind UTC puts the reads on 2 March.
    let census = run(&[
        "--profile",
        profile.to_str().unwrap(),
        "--time-zone",
        "America/New_York",
        "--plate-prefix",
        "浙A",
    ]);
    assert_eq!(census["day"], "2026-03-02", "{census}");
    assert_eq!(census["local"].as_u64(), Some(1), "{census}");
}

#[test]
fn camera_events_over_mqtt_arrive_through_their_mapping_and_bad_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    server.create_passages();
    assert!(server.stop().success());
    // The passages definition's camera_push mapping names an MQTT topic.
    let server = start(dir.path(), &["--mqtt"]);
    let port = server.mqtt_port("MQTT feed:");
    let printed = server.printed.lock().unwrap().clone();
    assert!(
        printed.contains(
            "citybrain/feeds/camera_push -> transport.anpr_passages through mapping camera_push"
        ),
        "{printed}"
    );
    let messages = [
        r#"{"plateNo":"豫A·12345","deviceId":"41","passTime":1772410530250,"laneNo":2,"speed":48.5,"picUrl":"x"}"#,
        r#"{"plateNo":"豫A54321","deviceId":"41","passTime":1772410590000}"#,
        r#"{"deviceId":"41","passTime":1772410600000}"#,
    ];
    mosquitto_pub(&port, "citybrain/feeds/camera_push", &messages);
    let started = std::time::Instant::now();
    while server.count("transport.anpr_passages__rejected") < 1
        || server.count("transport.anpr_passages") < 2
    {
        assert!(
            started.elapsed().as_secs() < 30,
            "the MQTT messages never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let rows = server.sql("SELECT plate, checkpoint_id, CAST(ts AS VARCHAR) AS ts FROM transport.anpr_passages ORDER BY ts");
    assert_eq!(rows[0]["plate"], "豫A12345", "{rows}");
    assert_eq!(rows[0]["checkpoint_id"], 41);
    assert!(
        rows[0]["ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-02T00:15:30.250"),
        "{rows}"
    );
    // The event without a plate is kept with its reason, naming the feed's column.
    let dead = server.sql("SELECT field, reason FROM transport.anpr_passages__rejected");
    assert_eq!(dead[0]["field"], "plateNo", "{dead}");
    assert!(server.stop().success());
    let _ = Command::new("pkill")
        .args(["-f", &dir.path().join("mqtt").display().to_string()])
        .status();
}

#[test]
fn an_openstreetmap_extract_gives_the_same_network_as_its_geojson() {
    let dir = tempfile::tempdir().unwrap();
    let example = format!("{}/../../examples/your-city", manifest_dir());
    let import = |roads: &str| {
        let out = dir.path().join(roads);
        let result = citybrain(&[
            "network",
            "import",
            "--roads",
            &format!("{example}/{roads}"),
            "--checkpoints",
            &format!("{example}/cameras.csv"),
            "--districts",
            &format!("{example}/districts.geojson"),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let mut links: Vec<String> = std::fs::read_to_string(out.join("links.ndjson"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        links.sort();
        (links, String::from_utf8_lossy(&result.stdout).into_owned())
    };
    let (geojson, _) = import("roads.geojson");
    let (osm, said) = import("roads.osm.pbf");
    assert_eq!(geojson.len(), 45, "a 4 x 4 grid, one street one way");
    assert_eq!(osm, geojson);
    // The extract's footway is not a road for cars.
    assert!(said.contains("1 not roads for cars"), "{said}");
    // A file that is not an extract says so.
    let bad = dir.path().join("bad.osm.pbf");
    std::fs::write(&bad, b"not a pbf").unwrap();
    let out = citybrain(&[
        "network",
        "import",
        "--roads",
        bad.to_str().unwrap(),
        "--checkpoints",
        &format!("{example}/cameras.csv"),
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OpenStreetMap PBF"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
