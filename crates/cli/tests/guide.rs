//! README's "Your own city in an afternoon", run as written: its shell blocks, in order, in
//! bash, from an empty directory, with the example city's files. The server the guide starts
//! "in another terminal" runs in the background on a free port; its restart is a restart.
//! Then the outcome is checked on the data directory the guide made.

use std::process::Command;

mod common;
use common::*;

/// The guide's shell blocks, continuation lines joined.
fn guide_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(format!("{}/../../README.md", manifest_dir())).unwrap();
    let start = readme
        .find("## Your own city in an afternoon")
        .expect("README has the guide");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block || line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

#[test]
fn the_readme_guide_takes_an_empty_directory_to_its_own_city() {
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/../..", manifest_dir());
    for part in ["examples", "crates"] {
        std::os::unix::fs::symlink(format!("{repo}/{part}"), dir.path().join(part)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lines = guide_lines();
    assert!(lines.len() >= 10, "{lines:?}");
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("citybrain up "))
            .count()
            == 2
    );
    // `citybrain up` runs in the background until it says it is up; a second one replaces
    // the first (the guide's restart). Clients find it through CITYBRAIN_SERVER.
    let mut script = format!(
        r#"set -euo pipefail
export CITYBRAIN_SERVER=http://127.0.0.1:{port}
SERVER=
citybrain_up() {{
  if [ -n "$SERVER" ]; then kill -TERM "$SERVER"; wait "$SERVER" || true; fi
  citybrain up --listen 127.0.0.1:{port} "$@" > up.log 2>&1 &
  SERVER=$!
  for _ in $(seq 1 600); do
    grep -q "citybrain is up on" up.log && return 0
    kill -0 "$SERVER" 2>/dev/null || {{ cat up.log; return 1; }}
    sleep 0.1
  done
  cat up.log; return 1
}}
trap '[ -n "$SERVER" ] && kill -TERM "$SERVER" && wait "$SERVER"' EXIT
"#
    );
    for line in &lines {
        match line.strip_prefix("citybrain up ") {
            Some(args) => script.push_str(&format!("citybrain_up {args}\n")),
            None => script.push_str(&format!(
                "{}\n",
                line.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
            )),
        }
    }
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_citybrain"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("CITYBRAIN_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the guide failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The census line the guide prints, and the cockpit address with the reader's token.
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{port}/#token=cbt_")),
        "{stdout}"
    );

    // What the guide made: the city, its network, its feed, its indices and a reader.
    let data = dir.path().join("zhengzhou");
    let server = start(&data, &[]);
    let (_, text) = server.get("/api/v1/city", Some(&server.token));
    assert!(
        text.contains("\"Zhengzhou\"") && text.contains("豫A"),
        "{text}"
    );
    assert_eq!(server.count("transport.checkpoints"), 16);
    assert_eq!(server.count("transport.links"), 45);
    let export = std::fs::read_to_string(format!("{repo}/examples/your-city/export.csv")).unwrap();
    assert_eq!(
        server.count("transport.anpr_passages"),
        export.lines().count() as i64 - 1
    );
    // Plates arrive normalised: no separator left.
    let dots =
        server.sql("SELECT count(*) AS n FROM transport.anpr_passages WHERE plate LIKE '%·%'");
    assert_eq!(dots[0]["n"], 0);
    let so_far =
        server.sql("SELECT vehicles, local FROM indices.census_so_far ORDER BY at DESC LIMIT 1");
    let (vehicles, local) = (
        so_far[0]["vehicles"].as_i64().unwrap(),
        so_far[0]["local"].as_i64().unwrap(),
    );
    assert!(
        vehicles > 200 && local > vehicles / 2 && local < vehicles,
        "{so_far}"
    );
    let travel = server.sql("SELECT count(DISTINCT link_id) AS n FROM indices.link_travel");
    assert!(
        travel[0]["n"].as_i64().unwrap() >= 10,
        "the feed's vehicles travel the imported links: {travel}"
    );
    let desk = std::fs::read_to_string(data.join("desk.token")).unwrap();
    let (status, text) = server.get("/api/v1/whoami", Some(desk.trim()));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("traffic_desk"), "{text}");
    assert!(server.stop().success());
}
