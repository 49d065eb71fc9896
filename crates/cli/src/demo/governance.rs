//! The demo city's governance: its departments, the principals of each role the cockpits
//! and walkthroughs use, the grants between departments (each requested by the reader's
//! admin and approved by the owner's), and the token files `up` writes. Done once: what
//! exists is left as it is.

use std::path::Path;

use anyhow::Result;
use citybrain_core::{DatasetName, DepartmentId, PrincipalName};
use citybrain_gov::{Gov, GrantRequest, GrantState, Principal, Role};
use citybrain_hub::Hub;

use super::{HOSPITAL, HOSPITAL_PRINCIPAL, HOTEL_DESK, market_admin};
use crate::client;

/// The demo city's departments, its principals, and the grant the cockpit reads through.
pub(super) fn governance(gov: &Gov, hub: &Hub, data: &Path) -> Result<()> {
    let admin = Gov::admin_principal();
    let now = citybrain_server::now();
    for (id, name) in [
        ("transport", "Transport Bureau 交通运输局"),
        ("market", "Market Supervision Bureau 市场监管局"),
        ("health", "Health Commission 卫生健康委"),
        ("medical_insurance", "Healthcare Security Bureau 医疗保障局"),
        (
            "emergency_management",
            "Emergency Management Bureau 应急管理局",
        ),
        ("credit_office", "Social Credit Office 社会信用办"),
        ("civil_affairs", "Civil Affairs Bureau 民政局"),
        ("community", "Community grid workers 社区网格"),
        ("public_security", "Public Security Bureau 公安局"),
        (
            "human_resources",
            "Human Resources and Social Security Bureau 人社局",
        ),
        (
            "culture_tourism",
            "Culture, Radio, TV and Tourism Bureau 文化广电旅游局",
        ),
        (HOTEL_DESK.0, "West Lake Hotel 西湖宾馆"),
        ("city_office", "City Operations Office 城市运行管理中心"),
        ("environment", "Ecology and Environment Bureau 生态环境局"),
        ("meteorology", "Meteorological Bureau 气象局"),
        ("urban_management", "Urban Management Bureau 城市管理局"),
        (
            "agriculture_rural",
            "Agriculture and Rural Affairs Bureau 农业农村局",
        ),
        ("district_nw", "North-west District Office 西北区政府"),
        (
            HOSPITAL,
            "Hangzhou First People's Hospital 杭州市第一人民医院",
        ),
    ] {
        let id = DepartmentId::parse(id)?;
        if !gov.department_exists(&id)? {
            gov.create_department(&admin, &id, name, now)?;
        }
    }
    let existing: Vec<PrincipalName> = gov
        .principals(&admin)?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let person = |name: &str, department: &str, role| -> Result<Principal> {
        let p = Principal {
            name: PrincipalName::parse(name)?,
            department: DepartmentId::parse(department)?,
            role,
        };
        if !existing.contains(&p.name) {
            gov.create_principal(&admin, &p, now)?;
        }
        Ok(p)
    };
    let transport_admin = person("transport_admin", "transport", Role::Admin)?;
    let office_admin = person("city_office_admin", "city_office", Role::Admin)?;
    let cockpit = person("cockpit", "city_office", Role::Reader)?;
    // The village map's reader (its datasets are open to every department).
    person("village_officer", "agriculture_rural", Role::Reader)?;
    // A department's grant, requested by its admin and approved by the owner's, once.
    let grant_to = |requester: &Principal,
                    dataset: &str,
                    raw: &[&str],
                    owner: &Principal,
                    purpose: &str,
                    why: &str|
     -> Result<()> {
        let dataset = DatasetName::parse(dataset)?;
        let def = hub.definition(&dataset)?;
        let has_grant = gov.grants_for(requester, |_| None)?.iter().any(|g| {
            g.dataset == dataset && g.department == requester.department && g.is_active(now)
        });
        if !has_grant {
            let request = GrantRequest {
                dataset: dataset.clone(),
                purpose: purpose.into(),
                fields: Vec::new(),
                raw: raw.iter().map(|f| f.to_string()).collect(),
                days: 365,
            };
            let grant = gov.request_grant(requester, &def, &request, now)?;
            gov.decide_grant(owner, grant.id, &def.owner, GrantState::Approved, why, now)?;
        }
        Ok(())
    };
    // The cockpit reads through the operations office's grants, each approved by the owner.
    let grant = |dataset: &str, owner: &Principal, purpose: &str, why: &str| -> Result<()> {
        grant_to(&office_admin, dataset, &[], owner, purpose, why)
    };
    grant(
        "transport.anpr_passages",
        &transport_admin,
        "city cockpit: live traffic indices for the operations centre",
        "plates stay masked",
    )?;
    // Policy delivery runs in the market department, which owns the enterprises and the
    // payouts.
    let market_admin = person(market_admin()?.name.as_str(), "market", Role::Admin)?;
    if hub.names().contains(&DatasetName::parse("policy.payouts")?) {
        grant(
            "policy.payouts",
            &market_admin,
            "city cockpit: what policy delivery has paid, per policy",
            "enterprise ids only; no personal fields",
        )?;
    }
    // Medical recognition: a hospital reads other hospitals' results of its own patients
    // (their ids raw, which it holds anyway); the cockpit sees the ledger, patients masked.
    let health_admin = person("health_admin", "health", Role::Admin)?;
    let doctor = person(HOSPITAL_PRINCIPAL, HOSPITAL, Role::Publisher)?;
    let hospital_admin = person("hz_first_people_admin", HOSPITAL, Role::Admin)?;
    if hub
        .names()
        .contains(&DatasetName::parse(citybrain_medical::RESULTS)?)
    {
        grant_to(
            &hospital_admin,
            citybrain_medical::RESULTS,
            &["patient_id"],
            &health_admin,
            "recognising other hospitals' results of our patients (浙医互认)",
            "ids of the hospital's own patients; findings stay masked",
        )?;
        grant(
            citybrain_medical::RECOGNITIONS,
            &health_admin,
            "city cockpit: tests avoided and money saved by recognition",
            "patients stay pseudonymised",
        )?;
    }
    // Risk early warning: emergency management runs the 铁屑伤眼 rules over diagnoses,
    // migrant registrations and injury claims, every id pseudonymised; diagnoses and
    // registrations join on the person through a linkage health and public security approved.
    let em_admin = person(
        "emergency_management_admin",
        "emergency_management",
        Role::Admin,
    )?;
    let police_admin = person("public_security_admin", "public_security", Role::Admin)?;
    let hr_admin = person("human_resources_admin", "human_resources", Role::Admin)?;
    if hub
        .names()
        .contains(&DatasetName::parse("health.diagnoses")?)
    {
        for (dataset, owner) in [
            ("health.diagnoses", &health_admin),
            ("public_security.migrants", &police_admin),
            ("hr.injury_claims", &hr_admin),
        ] {
            grant_to(
                &em_admin,
                dataset,
                &[],
                owner,
                "risk early warning: eye injuries at metal workshops (数据碰撞预警)",
                "counts per township; every personal id stays pseudonymised",
            )?;
        }
        let linkage = "eye_injury_watch";
        let existing = gov.linkages(&admin)?;
        if !existing
            .iter()
            .any(|l| l.name == linkage && l.withdrawn_at.is_none())
        {
            let members = vec![
                citybrain_gov::LinkMember {
                    dataset: DatasetName::parse("health.diagnoses")?,
                    field: "patient_id".into(),
                },
                citybrain_gov::LinkMember {
                    dataset: DatasetName::parse("public_security.migrants")?,
                    field: "person_id".into(),
                },
            ];
            gov.propose_linkage(
                &health_admin,
                linkage,
                "risk early warning: eye injuries among registered migrant workers (铁屑伤眼)",
                members,
                |d| hub.definition(d).ok().map(|def| def.owner),
                now,
            )?;
            gov.approve_linkage(&police_admin, linkage, now)?;
        }
    }
    // Treat first, pay later: the hospital's desk looks up its patient's line (their id raw,
    // which it holds anyway); the cockpit sees bills by state, patients masked.
    if hub
        .names()
        .contains(&DatasetName::parse(citybrain_medical::paylater::CHARGES)?)
    {
        grant_to(
            &hospital_admin,
            citybrain_medical::paylater::CHARGES,
            &["patient_id"],
            &health_admin,
            "treat first, pay later: a patient's credit line at the desk (先看病后付费)",
            "ids of the hospital's own patients",
        )?;
        for dataset in [
            citybrain_medical::paylater::CHARGES,
            citybrain_medical::paylater::BILL_STEPS,
        ] {
            grant(
                dataset,
                &health_admin,
                "city cockpit: pay-later visits and bills by state",
                "patients stay pseudonymised",
            )?;
        }
    }
    // Services: the grid workers see whom to visit and why (the resident's id stays
    // pseudonymised); the cockpit sees the tasks with every personal field masked.
    let civil_admin = person("civil_affairs_admin", "civil_affairs", Role::Admin)?;
    let community_admin = person("community_admin", "community", Role::Admin)?;
    let grid_worker = person("grid_worker", "community", Role::Publisher)?;
    if hub
        .names()
        .contains(&DatasetName::parse(citybrain_services::TASKS)?)
    {
        grant_to(
            &community_admin,
            citybrain_services::TASKS,
            &["resident_name", "home", "why"],
            &civil_admin,
            "grid workers visit residents a service found (主动服务)",
            "name, address point and why; the resident's id stays pseudonymised",
        )?;
        grant_to(
            &community_admin,
            citybrain_services::TASK_EVENTS,
            &[],
            &civil_admin,
            "grid workers follow their tasks' states",
            "no personal fields",
        )?;
        for dataset in [citybrain_services::TASKS, citybrain_services::TASK_EVENTS] {
            grant(
                dataset,
                &civil_admin,
                "city cockpit: services that found residents, by grid and state",
                "personal fields stay masked",
            )?;
        }
    }
    // One form (一表通): the community fills the departments' monthly reports from the
    // residents' records, ids pseudonymised (birth dates raw, to count by age), joined on
    // the person through a linkage the four owners approved.
    if hub
        .names()
        .contains(&DatasetName::parse(citybrain_services::RESIDENTS)?)
    {
        let purpose = "one form (一表通): the monthly reports a community owes its departments";
        grant_to(
            &community_admin,
            citybrain_services::RESIDENTS,
            &["birth_date"],
            &police_admin,
            purpose,
            "birth dates to count by age; ids stay pseudonymised",
        )?;
        // A masked personal column reads as null: the pension amount is raw so the
        // employment report can count who draws one.
        for (dataset, raw, owner) in [
            ("civil.disability_certificates", &[][..], &civil_admin),
            ("civil.enrolments", &[], &civil_admin),
            ("hr.social_insurance", &["pension"], &hr_admin),
            ("health.screening_results", &[], &health_admin),
        ] {
            grant_to(
                &community_admin,
                dataset,
                raw,
                owner,
                purpose,
                "counts for the community's reports; ids stay pseudonymised",
            )?;
        }
        let linkage = "resident_records";
        let existing = gov.linkages(&admin)?;
        if !existing
            .iter()
            .any(|l| l.name == linkage && l.withdrawn_at.is_none())
        {
            let members = [
                citybrain_services::RESIDENTS,
                "civil.disability_certificates",
                "civil.enrolments",
                "hr.social_insurance",
                "health.screening_results",
            ]
            .into_iter()
            .map(|d| {
                Ok(citybrain_gov::LinkMember {
                    dataset: DatasetName::parse(d)?,
                    field: "resident_id".into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
            gov.propose_linkage(
                &police_admin,
                linkage,
                "one form (一表通): a community's reports count residents across departments' records",
                members,
                |d| hub.definition(d).ok().map(|def| def.owner),
                now,
            )?;
            for owner in [&civil_admin, &hr_admin, &health_admin] {
                gov.approve_linkage(owner, linkage, now)?;
            }
        }
    }
    // The one-call check-in: the hotel matches a guest's card against the registry (ids and
    // names raw) and its own bookings (ids raw); nothing else of theirs.
    let desk = person(HOTEL_DESK.1, HOTEL_DESK.0, Role::Publisher)?;
    let hotel_admin = person("hotel_west_lake_admin", HOTEL_DESK.0, Role::Admin)?;
    let tourism_admin = person("culture_tourism_admin", "culture_tourism", Role::Admin)?;
    if hub
        .names()
        .contains(&DatasetName::parse(citybrain_services::BOOKINGS)?)
    {
        grant_to(
            &hotel_admin,
            citybrain_services::RESIDENTS,
            &["resident_id", "name"],
            &police_admin,
            "checking guests in against their id card (30 秒入住)",
            "id and name only, to match the card",
        )?;
        grant_to(
            &hotel_admin,
            citybrain_services::BOOKINGS,
            &["resident_id"],
            &tourism_admin,
            "finding a guest's booking at the desk",
            "the hotel's own guests",
        )?;
    }
    client::ensure_token_file(gov, &data.join("desk.token"), || {
        Ok(gov.issue_console_token(&admin, &desk.name, now)?)
    })?;
    client::ensure_token_file(gov, &data.join("grid.token"), || {
        Ok(gov.issue_console_token(&admin, &grid_worker.name, now)?)
    })?;
    client::ensure_token_file(gov, &data.join("hospital.token"), || {
        Ok(gov.issue_console_token(&admin, &doctor.name, now)?)
    })?;
    client::ensure_token_file(gov, &data.join("cockpit.token"), || {
        Ok(gov.issue_console_token(&admin, &cockpit.name, now)?)
    })?;
    client::ensure_token_file(gov, &data.join("market.token"), || {
        Ok(gov.issue_console_token(&admin, &market_admin.name, now)?)
    })
}
