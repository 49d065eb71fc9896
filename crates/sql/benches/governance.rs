//! What governance costs: the same SQL over N ANPR rows (default 10 million) run as
//! citybrain itself (no checks) and as another department's reader (grant lookup, plate
//! masking at the scan, audit record fsynced before the answer); and how many audit
//! appends per second the trail sustains with concurrent callers.
//!
//! Run: `cargo bench --workspace --bench governance` (CITYBRAIN_BENCH_ROWS=N to resize; with
//! `--workspace` it reuses the build the workspace shares instead of building DataFusion
//! again with one crate's features).
//! Prints a Markdown table for docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_core::{DatasetName, DepartmentId, PrincipalName, Timestamp};
use citybrain_gov::{
    AuditLog, Call, CallKind, Gov, GrantRequest, GrantState, Principal, Role, Touch,
};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, OnError};
use citybrain_sql::{DataCall, Reader, SqlEngine, SqlLimits};

const DEF: &str = include_str!("../../gen/definitions/transport.anpr_passages.toml");

fn principal(name: &str, department: &str, role: Role) -> Principal {
    Principal {
        name: PrincipalName::parse(name).unwrap(),
        department: DepartmentId::parse(department).unwrap(),
        role,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let rows: usize = std::env::var("CITYBRAIN_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    if std::env::var("CITYBRAIN_BENCH_MICRO").is_ok() {
        let m = citybrain_gov::Masker::new(&[1u8; 32]);
        let values: Vec<String> = (0..1_000_000).map(|i| format!("浙A{i:05}")).collect();
        let mut out = String::new();
        let t = Instant::now();
        for v in &values {
            out.clear();
            m.pseudonym_into(v, &mut out);
        }
        eprintln!(
            "pseudonym: {:.1} ns/value",
            t.elapsed().as_nanos() as f64 / 1e6
        );
        let array = arrow::array::StringArray::from_iter_values(values.iter());
        let t = Instant::now();
        let refs: Vec<&[u8]> = array.iter().flatten().map(str::as_bytes).collect();
        let mut buffer = Vec::with_capacity(19 * refs.len());
        let t2 = Instant::now();
        m.pseudonyms_into(&refs, &mut buffer);
        eprintln!(
            "pseudonyms_into alone: {:.1} ns/value",
            t2.elapsed().as_nanos() as f64 / 1e6
        );
        assert_eq!(buffer.len(), 19 * values.len());
        eprintln!(
            "pseudonym column: {:.1} ns/value",
            t.elapsed().as_nanos() as f64 / 1e6
        );
        return;
    }
    let dir = tempfile::tempdir_in(std::env::var("CITYBRAIN_BENCH_DIR").unwrap_or("/tmp".into()))
        .unwrap();
    let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
    let hub = Arc::new(Hub::open(dir.path(), HubConfig::default()).unwrap());
    let gov = Arc::new(Gov::open(dir.path(), now).unwrap());
    let admin = Gov::admin_principal();
    for d in ["transport", "city_office"] {
        gov.create_department(&admin, &DepartmentId::parse(d).unwrap(), d, now)
            .unwrap();
    }
    let def = DatasetDef::from_file_text("d.toml", DEF).unwrap();
    hub.create_dataset(def.clone(), now).unwrap();
    let name = DatasetName::parse("transport.anpr_passages").unwrap();
    // The same records with plates pseudonymised instead (keyed HMAC, distinct preserved).
    let ps_text = DEF
        .replace("transport.anpr_passages", "transport.anpr_pseudonymised")
        .replace("mask = \"plate\"", "mask = \"pseudonym\"");
    let ps_def = DatasetDef::from_file_text("d.toml", &ps_text).unwrap();
    hub.create_dataset(ps_def.clone(), now).unwrap();
    let ps_name = ps_def.name.clone();

    eprintln!("loading {rows} rows…");
    let started = Instant::now();
    let vehicles = (rows / 20).max(1);
    let chunk = 500_000;
    let mut i = 0;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while i < rows {
        let n = chunk.min(rows - i);
        let mut body = String::with_capacity(n * 110);
        for k in i..i + n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let vehicle = state as usize % vehicles;
            let second = k * 86_400 / rows;
            body.push_str(&format!(
                "{{\"ts\":\"2026-11-22T{:02}:{:02}:{:02}Z\",\"checkpoint_id\":{},\"plate\":\"浙A{:05}\",\"lane\":{},\"speed_kmh\":{}.5}}\n",
                second / 3600,
                second / 60 % 60,
                second % 60,
                (state >> 20) % 269,
                vehicle,
                (state >> 40) % 4 + 1,
                (state >> 44) % 80
            ));
        }
        for dataset in [&name, &ps_name] {
            hub.ingest(
                dataset,
                Format::Ndjson,
                body.as_bytes(),
                OnError::Reject,
                now,
            )
            .unwrap();
        }
        i += n;
    }
    hub.seal_all().unwrap();
    eprintln!("loaded in {:.1} s", started.elapsed().as_secs_f64());

    // A reader in another department, with an approved grant: plates stay masked.
    let office_admin = principal("office_admin", "city_office", Role::Admin);
    let transport_admin = principal("transport_admin", "transport", Role::Admin);
    let reader = principal("cockpit", "city_office", Role::Reader);
    for p in [&office_admin, &transport_admin, &reader] {
        gov.create_principal(&admin, p, now).unwrap();
    }
    let request = GrantRequest {
        dataset: name.clone(),
        purpose: "benchmark".into(),
        fields: Vec::new(),
        raw: Vec::new(),
        days: 30,
    };
    for d in [&def, &ps_def] {
        let request = GrantRequest {
            dataset: d.name.clone(),
            ..request.clone()
        };
        let grant = gov.request_grant(&office_admin, d, &request, now).unwrap();
        gov.decide_grant(
            &transport_admin,
            grant.id,
            &d.owner,
            GrantState::Approved,
            "",
            now,
        )
        .unwrap();
    }

    let engine = SqlEngine::new(hub.clone(), SqlLimits::default()).with_gov(gov.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = DataCall {
        reader: Reader::Principal(reader),
        purpose: "benchmark".into(),
        kind: CallKind::Sql,
        now,
    };
    let queries = [
        (
            "COUNT(*) GROUP BY checkpoint (no personal field)",
            "SELECT checkpoint_id, count(*) FROM transport.anpr_passages GROUP BY checkpoint_id",
        ),
        (
            "COUNT(DISTINCT plate) (plate masked)",
            "SELECT count(DISTINCT plate) FROM transport.anpr_passages",
        ),
        (
            "top 10 plates by passages (plate masked)",
            "SELECT plate, count(*) AS n FROM transport.anpr_passages GROUP BY plate ORDER BY n DESC LIMIT 10",
        ),
        (
            "COUNT(DISTINCT plate) (plate pseudonymised)",
            "SELECT count(DISTINCT plate) FROM transport.anpr_pseudonymised",
        ),
        (
            "top 10 plates by passages (plate pseudonymised)",
            "SELECT plate, count(*) AS n FROM transport.anpr_pseudonymised GROUP BY plate ORDER BY n DESC LIMIT 10",
        ),
    ];
    println!("\n{rows} rows; median of 15 runs, alternating; 2 cores\n");
    println!("| query | checks off (s) | grant + mask + audit (s) | overhead |");
    println!("|---|---:|---:|---:|");
    for (label, sql) in queries {
        // Warm the page cache and the plan once each way.
        rt.block_on(engine.query(sql)).unwrap();
        rt.block_on(engine.query_as(sql, &call)).unwrap();
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            let t = Instant::now();
            rt.block_on(engine.query(sql)).unwrap();
            off.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            rt.block_on(engine.query_as(sql, &call)).unwrap();
            on.push(t.elapsed().as_secs_f64());
        }
        let (off, on) = (median(off), median(on));
        println!(
            "| {label} | {off:.3} | {on:.3} | {:+.1}% |",
            (on / off - 1.0) * 100.0
        );
    }

    // Audit appends: each caller waits for its record to be fsynced, as a data call does.
    println!("\n| concurrent callers | audit appends/s (each durable before return) |");
    println!("|---:|---:|");
    for callers in [1usize, 16, 64, 256] {
        let adir = tempfile::tempdir_in(dir.path()).unwrap();
        let log = Arc::new(AuditLog::open(adir.path(), b"bench key").unwrap());
        let run_for = Duration::from_secs(3);
        let started = Instant::now();
        let threads: Vec<_> = (0..callers)
            .map(|t| {
                let log = log.clone();
                let name = name.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while started.elapsed() < run_for {
                        let mut c = Call::new(now, "cockpit", "city_office", CallKind::Sql);
                        c.datasets.push(Touch {
                            dataset: name.clone(),
                            fields: vec!["checkpoint_id".into(), "plate".into()],
                        });
                        c.purpose = "benchmark".into();
                        c.rows = t as u64;
                        c.detail = "SELECT checkpoint_id, count(*) FROM transport.anpr_passages GROUP BY checkpoint_id".into();
                        log.append(c).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let rate = total as f64 / started.elapsed().as_secs_f64();
        println!("| {callers} | {rate:.0} |");
        let report = citybrain_gov::audit::verify(adir.path(), b"bench key").unwrap();
        assert!(report.is_intact() && report.records == total);
    }
}
