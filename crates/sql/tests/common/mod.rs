//! The city the governance and streaming tests read: three departments, people datasets
//! of each sharing class (half sealed, half in the unsealed tail), health visits, and
//! a linkage between them.
#![allow(dead_code)] // each test file uses part of it

use std::sync::Arc;

use citybrain_core::{DatasetName, DepartmentId, PrincipalName, Timestamp};
use citybrain_gov::{
    CallKind, Gov, GrantId, GrantRequest, GrantState, LinkMember, Principal, Role,
};
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig, OnError, SharingClass};
use citybrain_sql::{DataCall, Reader, SqlEngine, SqlError, SqlLimits};

pub const PEOPLE: usize = 12;

pub fn plate(i: usize) -> String {
    format!("浙A{}K{}{}", 10 + i, i % 10, (i * 7) % 10)
}
pub fn id_number(i: usize) -> String {
    format!("33010219{:02}0101{:04}", 60 + i, 1000 + i * 37)
}
pub fn phone(i: usize) -> String {
    format!("1380571{:04}", 2000 + i * 13)
}

pub fn people_def(name: &str, sharing: SharingClass) -> DatasetDef {
    let mut def = DatasetDef::from_file_text(
        "people.toml",
        &format!(
            r#"
name = "{name}"
owner = "transport"
event_time = "ts"
[[fields]]
name = "ts"
type = "timestamp"
[[fields]]
name = "plate"
type = "string"
class = "personal"
mask = "plate"
[[fields]]
name = "id_number"
type = "string"
class = "personal"
[[fields]]
name = "phone"
type = "string"
class = "personal"
nullable = true
[[fields]]
name = "age"
type = "int"
class = "personal"
[[fields]]
name = "district"
type = "string"
class = "public"
"#
        ),
    )
    .unwrap();
    def.sharing = sharing;
    def
}

pub const VISITS: &str = r#"
name = "health.visits"
owner = "health"
sharing = "unconditional"
[[fields]]
name = "id_number"
type = "string"
class = "personal"
[[fields]]
name = "clinic"
type = "string"
class = "public"
"#;

pub struct City {
    pub hub: Arc<Hub>,
    pub gov: Arc<Gov>,
    pub engine: SqlEngine,
    pub now: Timestamp,
    pub rt: tokio::runtime::Runtime,
    pub _dir: tempfile::TempDir,
}

pub fn principal(name: &str, department: &str, role: Role) -> Principal {
    Principal {
        name: PrincipalName::parse(name).unwrap(),
        department: DepartmentId::parse(department).unwrap(),
        role,
    }
}

pub fn city() -> City {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
    let hub = Arc::new(
        Hub::open(
            dir.path(),
            HubConfig {
                seal_rows: usize::MAX,
                ..HubConfig::default()
            },
        )
        .unwrap(),
    );
    let gov = Arc::new(Gov::open(dir.path(), now).unwrap());
    let admin = Gov::admin_principal();
    for d in ["transport", "market", "health"] {
        gov.create_department(&admin, &DepartmentId::parse(d).unwrap(), d, now)
            .unwrap();
        gov.create_principal(
            &admin,
            &principal(&format!("{d}_admin"), d, Role::Admin),
            now,
        )
        .unwrap();
    }
    for (name, sharing) in [
        ("transport.people_u", SharingClass::Unconditional),
        ("transport.people_c", SharingClass::Conditional),
        ("transport.people_n", SharingClass::None),
    ] {
        hub.create_dataset(people_def(name, sharing), now).unwrap();
        let dataset = DatasetName::parse(name).unwrap();
        // Half sealed into Parquet (statistics, pushdown), half in the unsealed tail.
        for half in 0..2 {
            let body: String = (0..PEOPLE)
                .filter(|i| i % 2 == half)
                .map(|i| {
                    format!(
                        "{{\"ts\":\"2026-11-22T0{}:00:00Z\",\"plate\":\"{}\",\"id_number\":\"{}\",\"phone\":\"{}\",\"age\":{},\"district\":\"d{}\"}}\n",
                        i % 9,
                        plate(i),
                        id_number(i),
                        phone(i),
                        20 + i * 3,
                        i % 3
                    )
                })
                .collect();
            hub.ingest(
                &dataset,
                Format::Ndjson,
                body.as_bytes(),
                OnError::Reject,
                now,
            )
            .unwrap();
            if half == 0 {
                hub.seal_all().unwrap();
            }
        }
    }
    hub.create_dataset(DatasetDef::from_file_text("v.toml", VISITS).unwrap(), now)
        .unwrap();
    let visits: String = (0..PEOPLE)
        .step_by(2)
        .map(|i| {
            format!(
                "{{\"id_number\":\"{}\",\"clinic\":\"c{i}\"}}\n",
                id_number(i)
            )
        })
        .collect();
    hub.ingest(
        &DatasetName::parse("health.visits").unwrap(),
        Format::Ndjson,
        visits.as_bytes(),
        OnError::Reject,
        now,
    )
    .unwrap();
    // Transport's people and health's visits share pseudonyms of id_number: both owners
    // approved the linkage (without it, joins across departments match nothing).
    let member = |d: &str| LinkMember {
        dataset: DatasetName::parse(d).unwrap(),
        field: "id_number".into(),
    };
    gov.propose_linkage(
        &principal("transport_admin", "transport", Role::Admin),
        "people-visits",
        "matrix test",
        [
            "transport.people_u",
            "transport.people_c",
            "transport.people_n",
            "health.visits",
        ]
        .map(member)
        .to_vec(),
        |d| hub.definition(d).ok().map(|def| def.owner),
        now,
    )
    .unwrap();
    gov.approve_linkage(
        &principal("health_admin", "health", Role::Admin),
        "people-visits",
        now,
    )
    .unwrap();
    let engine = SqlEngine::new(hub.clone(), SqlLimits::default()).with_gov(gov.clone());
    City {
        hub,
        gov,
        engine,
        now,
        rt: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl City {
    pub fn sql(&self, who: &Principal, sql: &str) -> Result<String, SqlError> {
        self.sql_at(who, sql, self.now)
    }

    pub fn sql_at(&self, who: &Principal, sql: &str, now: Timestamp) -> Result<String, SqlError> {
        let call = DataCall {
            reader: Reader::Principal(who.clone()),
            purpose: "matrix test".into(),
            kind: CallKind::Sql,
            now,
        };
        let result = self.rt.block_on(self.engine.query_as(sql, &call))?;
        // A table as people see it (handles lists, keeps every character as is).
        Ok(arrow::util::pretty::pretty_format_batches(&result.batches)
            .unwrap()
            .to_string())
    }

    pub fn def(&self, name: &str) -> DatasetDef {
        self.hub
            .definition(&DatasetName::parse(name).unwrap())
            .unwrap()
    }

    /// Requests a grant for market and drives it to `state`.
    pub fn grant(&self, dataset: &str, fields: &[&str], raw: &[&str], state: &str) -> GrantId {
        let market = principal("market_admin", "market", Role::Admin);
        let owner = principal("transport_admin", "transport", Role::Admin);
        let request = GrantRequest {
            dataset: DatasetName::parse(dataset).unwrap(),
            purpose: "enterprise parking study".into(),
            fields: fields.iter().map(|s| s.to_string()).collect(),
            raw: raw.iter().map(|s| s.to_string()).collect(),
            days: 1,
        };
        // An expired grant was approved two days ago for one day.
        let at = if state == "expired" {
            Timestamp(self.now.0 - 2 * 86_400_000_000)
        } else {
            self.now
        };
        let g = self
            .gov
            .request_grant(&market, &self.def(dataset), &request, at)
            .unwrap();
        let transport = DepartmentId::parse("transport").unwrap();
        let decide = |s, reason| {
            self.gov
                .decide_grant(&owner, g.id, &transport, s, reason, at)
                .unwrap()
        };
        match state {
            "requested" => {}
            "approved" | "expired" => {
                decide(GrantState::Approved, "");
            }
            "refused" => {
                decide(GrantState::Refused, "purpose too broad");
            }
            "revoked" => {
                decide(GrantState::Approved, "");
                decide(GrantState::Revoked, "study over");
            }
            other => panic!("unknown state {other}"),
        }
        g.id
    }
}

/// The counters hold exactly one denied SQL call by market on `transport.people_c`.
pub fn assert_market_denied_people_c_once(city: &City) {
    let denied = city.gov.metrics_text(&Gov::admin_principal(), |_| None);
    assert!(
        denied.contains(
            "department=\"market\",dataset=\"transport.people_c\",kind=\"sql\",outcome=\"denied\"} 1"
        ),
        "{denied}"
    );
}
