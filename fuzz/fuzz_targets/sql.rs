//! SQL text as a reader sends it (HTTP or the Postgres wire), through governed planning
//! (`describe_as`: grants, masks, the size and depth bounds, pg_catalog rewrites) and
//! governed execution (`query_as`: masked, audited), over a hub with a personal field and
//! both sealed and unsealed rows. Every statement gets a result or an error, never a panic
//! (a panic inside a statement's task counts: libFuzzer's hook sees it) and never a hang
//! (the engine's own timeout is 2 s; libFuzzer's is 10).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use citybrain_core::{DepartmentId, PrincipalName, Timestamp};
use citybrain_gov::{CallKind, Gov, Principal, Role};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, OnError};
use citybrain_sql::{DataCall, Reader, SqlEngine, SqlLimits};
use libfuzzer_sys::fuzz_target;

const DEF: &str = include_str!("../../crates/gen/definitions/transport.anpr_passages.toml");

struct City {
    rt: tokio::runtime::Runtime,
    engine: SqlEngine,
    call: DataCall,
    _dir: tempfile::TempDir,
}

fn city() -> &'static City {
    static CITY: OnceLock<City> = OnceLock::new();
    CITY.get_or_init(|| {
        // On tmpfs where there is one: every governed statement fsyncs its audit record.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm"),
            false => tempfile::tempdir(),
        }
        .expect("a scratch directory");
        let now = Timestamp::parse("2026-11-22T12:00:00Z").expect("a time");
        let hub = Arc::new(
            Hub::open(
                dir.path(),
                HubConfig {
                    seal_rows: usize::MAX,
                    ..HubConfig::default()
                },
            )
            .expect("a hub"),
        );
        let def = DatasetDef::from_file_text("d.toml", DEF).expect("the shipped definition");
        let name = def.name.clone();
        hub.create_dataset(def, now).expect("the dataset");
        for half in 0..2 {
            let body: String = (0..100)
                .map(|i| {
                    format!(
                        "{{\"ts\":\"2026-11-22T0{}:{:02}:00Z\",\"checkpoint_id\":{},\"plate\":\"浙A{:05}\",\"lane\":{},\"speed_kmh\":{}}}\n",
                        half + 7,
                        i % 60,
                        i % 7,
                        i * 13,
                        i % 3,
                        40.5 + i as f64
                    )
                })
                .collect();
            hub.ingest(&name, Format::Ndjson, body.as_bytes(), OnError::Reject, now)
                .expect("rows");
            if half == 0 {
                hub.seal_all().expect("a seal");
            }
        }
        let gov = Arc::new(Gov::open(dir.path(), now).expect("governance"));
        let admin = Gov::admin_principal();
        let reader = Principal {
            name: PrincipalName::parse("analyst").expect("a name"),
            department: DepartmentId::parse("market").expect("a department"),
            role: Role::Reader,
        };
        for d in ["transport", "market"] {
            gov.create_department(&admin, &DepartmentId::parse(d).expect("id"), d, now)
                .expect("a department");
        }
        gov.create_principal(&admin, &reader, now)
            .expect("a principal");
        let limits = SqlLimits {
            timeout: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            max_result_rows: 100_000,
            max_result_bytes: 64 << 20,
            max_value_bytes: 16 << 20,
            ..SqlLimits::default()
        };
        City {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            engine: SqlEngine::new(hub, limits).with_gov(gov),
            call: DataCall {
                reader: Reader::Principal(reader),
                purpose: "fuzzing".into(),
                kind: CallKind::Sql,
                now,
            },
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let city = city();
    let _ = city.rt.block_on(city.engine.describe_as(sql, &city.call));
    let _ = city.rt.block_on(city.engine.query_as(sql, &city.call));
});
