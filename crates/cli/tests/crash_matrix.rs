//! The crash matrix (issue 23, item 2): at every step where state is made durable, the real
//! binary is made to crash there, fail there with an I/O error, or tear its write there
//! (`CITYBRAIN_FAILPOINTS`, crates/core/src/failpoint.rs), in the middle of a workload that
//! ingests, reads, seals, feeds a scene, changes governance and creates datasets. Then it
//! is started again, unarmed, and must show: every acknowledged record present exactly once,
//! no batch in part, the scene caught up with nothing stored twice, no governance change
//! without its audit record, every acknowledged dataset there, and the audit trail intact
//! under the secret and under the public key. docs/reliability.md holds the table this
//! prints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use common::{Server, agent, launch, start};
use serde_json::Value;

/// The points and the faults tried at each, with the hit that fires (far enough in that
/// the workload has acknowledged something before).
const MATRIX: &[(&str, &[&str], u32)] = &[
    ("log.append", &["crash", "torn", "error"], 6),
    ("log.fsync", &["crash", "error"], 6),
    ("seal.segment", &["crash", "error"], 2),
    ("seal.manifest", &["crash", "error"], 2),
    ("feed.commit", &["crash", "error"], 4),
    ("audit.append", &["crash", "torn", "error"], 8),
    ("audit.head", &["crash", "error"], 8),
    ("gov.audit", &["crash", "error"], 2),
    ("gov.commit", &["crash", "error"], 2),
    ("catalog.commit", &["crash", "error"], 1),
];

const BATCHES: usize = 24;
/// Records in each batch (`common::passage_batch`).
const PER_BATCH: usize = 50;

fn post(server: &Server, token: &str, path: &str, kind: &str, body: &[u8]) -> (u16, String) {
    match agent()
        .post(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", kind)
        .send(body)
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.into_body().read_to_string().unwrap_or_default())
        }
        // The process died under the call: not acknowledged.
        Err(e) => (0, e.to_string()),
    }
}

/// What the armed run had acknowledged.
#[derive(Default)]
struct Acked {
    batches: BTreeSet<usize>,
    principals: BTreeSet<String>,
    datasets: BTreeSet<String>,
    /// Calls answered with an error (the injected I/O error, or what followed it).
    failed: usize,
    died: bool,
}

impl Acked {
    /// Counts a call's answer: whether `ok` (acknowledged), None when the process died
    /// under it (the workload stops there).
    fn answer(&mut self, status: u16, ok: u16) -> Option<bool> {
        match status {
            0 => {
                self.died = true;
                None
            }
            s if s == ok => Some(true),
            _ => {
                self.failed += 1;
                Some(false)
            }
        }
    }
}

fn workload(server: &mut Server, admin: &str, token: &str) -> Acked {
    let mut acked = Acked::default();
    let path = "/api/v1/datasets/transport.anpr_passages/records";
    for b in 0..BATCHES {
        if let Ok(Some(_)) = server.child.try_wait() {
            acked.died = true;
            break;
        }
        let (status, _) = post(
            server,
            token,
            path,
            "application/x-ndjson",
            common::passage_batch(b).as_bytes(),
        );
        let Some(ok) = acked.answer(status, 200) else {
            break;
        };
        if ok {
            acked.batches.insert(b);
        }
        // A read (an audit record) after every batch.
        let sql = serde_json::json!({"sql": "SELECT count(*) AS n FROM transport.anpr_passages", "purpose": "crash matrix"});
        let (status, _) = post(
            server,
            token,
            "/api/v1/sql",
            "application/json",
            sql.to_string().as_bytes(),
        );
        if acked.answer(status, 200).is_none() {
            break;
        }
        // Every fourth batch a governance change and a new dataset.
        if b % 4 == 3 {
            let name = format!("crash_p{b}");
            let body =
                format!(r#"{{"name": "{name}", "department": "transport", "role": "reader"}}"#);
            let status = post(
                server,
                admin,
                "/api/v1/principals",
                "application/json",
                body.as_bytes(),
            )
            .0;
            let Some(ok) = acked.answer(status, 201) else {
                break;
            };
            if ok {
                acked.principals.insert(name);
            }
            let dataset = format!("transport.crash_d{b}");
            let def = format!(
                "name = \"{dataset}\"\nowner = \"transport\"\nsharing = \"unconditional\"\n[[fields]]\nname = \"n\"\ntype = \"int\"\nclass = \"public\"\n"
            );
            let status = post(
                server,
                admin,
                "/api/v1/datasets",
                "application/toml",
                def.as_bytes(),
            )
            .0;
            let Some(ok) = acked.answer(status, 201) else {
                break;
            };
            if ok {
                acked.datasets.insert(dataset);
            }
        }
    }
    // A seal or a scene's commit may still be under way in the background.
    std::thread::sleep(std::time::Duration::from_millis(300));
    if let Ok(Some(_)) = server.child.try_wait() {
        acked.died = true;
    }
    acked
}

/// Checks the restarted hub against what the armed run acknowledged; returns a summary.
fn check(server: &Server, acked: &Acked, case: &str) -> String {
    // Every acknowledged batch whole and once; any other batch whole or absent.
    let rows = server.sql(
        "SELECT plate, count(*) AS n FROM transport.anpr_passages WHERE plate LIKE '浙C%' GROUP BY plate",
    );
    let mut per_batch: BTreeMap<usize, usize> = BTreeMap::new();
    for r in rows.as_array().unwrap() {
        let plate = r["plate"].as_str().unwrap();
        assert_eq!(r["n"], 1, "{case}: {plate} stored {} times", r["n"]);
        let b: usize = plate
            .chars()
            .skip(2)
            .take(3)
            .collect::<String>()
            .parse()
            .unwrap();
        *per_batch.entry(b).or_default() += 1;
    }
    for b in &acked.batches {
        assert_eq!(
            per_batch.get(b),
            Some(&PER_BATCH),
            "{case}: acknowledged batch {b} lost in part or whole"
        );
    }
    for (b, n) in &per_batch {
        assert_eq!(*n, PER_BATCH, "{case}: batch {b} stored in part ({n})");
    }
    // The scene catches up and stores nothing twice.
    server.caught_up("indices");
    let dup = server.sql(
        "SELECT count(*) AS n FROM (SELECT at, district FROM indices.on_road GROUP BY at, district HAVING count(*) > 1)",
    );
    assert_eq!(dup[0]["n"], 0, "{case}: indices stored twice: {dup}");
    // No governance change without its record; every acknowledged one there.
    let (status, text) = server.get("/api/v1/principals", Some(&server.admin));
    assert_eq!(status, 200, "{text}");
    let principals: Value = serde_json::from_str(&text).unwrap();
    let present: BTreeSet<String> = principals["principals"]
        .as_array()
        .or(principals.as_array())
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| n.starts_with("crash_p"))
        .map(str::to_string)
        .collect();
    for p in &acked.principals {
        assert!(
            present.contains(p),
            "{case}: acknowledged principal {p} lost"
        );
    }
    let trail = std::fs::read_to_string(server.data.join("audit/calls.ndjson")).unwrap();
    for p in &present {
        let recorded = trail.lines().any(|l| {
            l.contains(&format!("create principal {p} ")) && l.contains("\"outcome\":\"ok\"")
        });
        assert!(
            recorded,
            "{case}: principal {p} exists without its audit record"
        );
    }
    for d in &acked.datasets {
        let (status, text) = server.get(&format!("/api/v1/datasets/{d}"), Some(&server.admin));
        assert_eq!(status, 200, "{case}: acknowledged dataset {d} lost: {text}");
    }
    // The trail, with the secret and without it.
    let bin = env!("CARGO_BIN_EXE_citybrain");
    let out = std::process::Command::new(bin)
        .args(["audit", "verify", "--data"])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::read_to_string(server.data.join("audit/public.key")).unwrap();
    let out = std::process::Command::new(bin)
        .args(["audit", "verify", "--public-key", key.trim(), "--data"])
        .arg(server.data.join("audit"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{} batches acknowledged, {} stored; {} principals, {} datasets acknowledged",
        acked.batches.len(),
        per_batch.len(),
        acked.principals.len(),
        acked.datasets.len()
    )
}

#[test]
fn every_durable_step_survives_a_crash_an_io_error_and_a_torn_write() {
    let mut table = Vec::new();
    for (point, faults, nth) in MATRIX {
        for fault in *faults {
            let case = format!("{point}={fault}@{nth}");
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            // Set up unarmed: the dataset, its owner's token.
            let server = start(&data, &["--seal-rows", "200"]);
            server.create_passages();
            let (token, admin) = (server.token.clone(), server.admin.trim().to_string());
            assert!(server.stop().success());
            // The armed run.
            let stderr = dir.path().join("stderr.log");
            let mut armed = launch(
                &data,
                &["--no-demo", "--seal-rows", "200"],
                &[("CITYBRAIN_FAILPOINTS", &case), ("CITYBRAIN_LOG", "warn")],
                Stdio::from(std::fs::File::create(&stderr).unwrap()),
            );
            let acked = workload(&mut armed, &admin, &token);
            armed.kill9();
            let log = std::fs::read_to_string(&stderr).unwrap();
            assert!(
                log.contains(&format!("failpoint {point}")) || acked.failed > 0,
                "{case}: the failpoint never fired: {log}"
            );
            if *fault != "error" {
                assert!(acked.died, "{case}: the process did not crash: {log}");
            }
            let mut server = launch(
                &data,
                &["--no-demo", "--seal-rows", "200"],
                &[],
                Stdio::inherit(),
            );
            server.token = token.clone();
            let summary = check(&server, &acked, &case);
            // The hub takes writes again.
            let (status, text) = post(
                &server,
                &token,
                "/api/v1/datasets/transport.anpr_passages/records",
                "application/x-ndjson",
                common::passage_batch(900).as_bytes(),
            );
            assert_eq!(status, 200, "{case}: after the restart: {text}");
            assert!(server.stop().success());
            let outcome = if acked.died {
                "crashed"
            } else {
                "failed calls"
            };
            println!(
                "| {point} | {fault} (hit {nth}) | {outcome}: {} calls refused | {summary} | ok |",
                acked.failed
            );
            table.push(case);
        }
    }
    assert_eq!(
        table.len(),
        MATRIX.iter().map(|(_, f, _)| f.len()).sum::<usize>()
    );
}
