//! The demo city `citybrain up` sets up unless `--no-demo`: a generated day of the city
//! (its ANPR passages and the other datasets of `citybrain_gen`), a synthetic economy in
//! `market.enterprises`, and the departments, principals, grants and token files the
//! cockpit and the policy scene's walkthrough use. Each part is done once: a restart finds
//! it in the data directory and leaves it be.

use std::path::Path;

use anyhow::{Context, Result};
use citybrain_core::{DatasetName, DepartmentId, PrincipalName};
use citybrain_gov::{Gov, GrantRequest, GrantState, Principal, Role};
use citybrain_hub::{DatasetDef, Format, Hub, OnError};
use indicatif::{ProgressBar, ProgressStyle};

use crate::client;

pub mod live;

/// The demo's last payout period. `up` pays it on the demo city so the policy page shows
/// what delivery looks like; run again (by `up` or by hand) it pays no one twice.
pub const LAST_RUN: &str = "2025-annual";

/// The market department's admin, who runs the demo's payouts (created by [`load`]).
fn market_admin() -> Result<Principal> {
    Ok(Principal {
        name: PrincipalName::parse("market_admin")?,
        department: DepartmentId::parse("market")?,
        role: Role::Admin,
    })
}

/// Pays [`LAST_RUN`] as the market admin, as `POST /api/v1/policy/runs` would: a run cut
/// short by a crash is finished on the next start, and a finished one pays nobody again.
pub async fn pay_last_period(state: &citybrain_server::AppState) -> Result<()> {
    let me = market_admin()?;
    citybrain_server::scenes::policy::run_payouts(
        state,
        &me,
        LAST_RUN,
        "demo city: last period's subsidy payouts",
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("paying the demo's {LAST_RUN} run: {e}"))?;
    Ok(())
}

/// The demo's cockpits, one per role (files a city edits or replaces; see docs/cockpits.md).
pub const COCKPITS: &[(&str, &str)] = &[
    (
        "city_leader.toml",
        include_str!("cockpits/city_leader.toml"),
    ),
    ("transport.toml", include_str!("cockpits/transport.toml")),
    (
        "district_nw.toml",
        include_str!("cockpits/district_nw.toml"),
    ),
    ("market.toml", include_str!("cockpits/market.toml")),
    ("health.toml", include_str!("cockpits/health.toml")),
    ("community.toml", include_str!("cockpits/community.toml")),
    ("warnings.toml", include_str!("cockpits/warnings.toml")),
    ("village.toml", include_str!("cockpits/village.toml")),
];

/// Applies the demo's cockpits that the data directory does not hold yet, as the hub admin
/// would with `citybrain cockpits apply`: one edited by hand keeps its edits; one deleted
/// comes back at the demo's next start.
pub async fn cockpits(state: &citybrain_server::AppState, data: &Path) -> Result<()> {
    let folder = citybrain_server::cockpits::dir(data);
    let admin = Gov::admin_principal();
    for (name, text) in COCKPITS {
        let stem = name.trim_end_matches(".toml");
        if folder.join(name).exists() || folder.join(format!("{stem}.json")).exists() {
            continue;
        }
        // A cockpit over a scene that did not start (its datasets missing) is left out with
        // a warning; the city still comes up.
        if let Err(e) = citybrain_server::cockpits::apply(state, &admin, name, text).await {
            tracing::warn!(cockpit = name, error = %e, "the demo's cockpit was not applied");
        }
    }
    Ok(())
}

/// The demo hospital that asks for recognitions, and its doctor.
const HOSPITAL: &str = "hz_first_people";
const HOSPITAL_PRINCIPAL: &str = "hz_first_people_doctor";

/// The demo's medical data: results over the 60 days up to the end of the demo day.
fn medical_config(
    scale: f64,
    end: citybrain_core::Timestamp,
) -> citybrain_medical::demo::DemoConfig {
    citybrain_medical::demo::DemoConfig {
        seed: 1,
        patients: ((20_000.0 * scale) as usize).max(100),
        days: 60,
        end,
        orders_per_reason: 10,
    }
}

/// The planted orders (with the answer each must get), beside the demo's other truth.
const MEDICAL_ORDERS: &str = "demo/medical_orders.json";

/// Which demo city: Hangzhou's network and profile, or another network with the data
/// directory's profile (`up --demo-network`).
#[derive(Debug, Clone)]
pub struct DemoCity {
    pub scale: f64,
    pub network: Option<std::path::PathBuf>,
    pub profile: citybrain_core::CityProfile,
    /// The demo's day (`--demo-day`); today in the city's zone when None. A data directory
    /// keeps the day it was first made for.
    pub day: Option<citybrain_core::Date>,
    /// Where the demo clock starts, in seconds after the day's local midnight
    /// (`--demo-from`); now, for today, when None.
    pub from: Option<u32>,
    /// Demo seconds per second (`--demo-speed`).
    pub speed: f64,
}

impl DemoCity {
    /// The demo's day: the one its data directory was made for, or else `--demo-day`, or
    /// else today in the city's zone.
    fn day(&self, demo: &Path) -> Result<citybrain_core::Date> {
        if let Ok(bytes) = std::fs::read(demo.join("truth.json")) {
            let truth: serde_json::Value = serde_json::from_slice(&bytes)?;
            let day = citybrain_core::Date::parse(truth["day"].as_str().unwrap_or_default())
                .map_err(anyhow::Error::msg)?;
            if let Some(asked) = self.day
                && asked != day
            {
                println!(
                    "The demo in this data directory is of {day}; --demo-day {asked} needs a fresh data directory."
                );
            }
            return Ok(day);
        }
        Ok(self
            .day
            .unwrap_or_else(|| self.profile.time_zone.local_day(citybrain_server::now())))
    }
}

/// Sets up whatever of the demo city the data directory does not have yet, loads its day
/// up to the demo clock's start, and returns the rest of the day to replay.
pub fn load(hub: &Hub, gov: &Gov, data: &Path, city: &DemoCity) -> Result<live::Replay> {
    let scale = city.scale;
    let (replay, day) =
        load_city(hub, data, city).context("loading the demo city (or start with --no-demo)")?;
    load_economy(hub, scale).context("loading the demo economy (or start with --no-demo)")?;
    let end = city
        .profile
        .time_zone
        .day_start(citybrain_core::Date(day.0 + 1));
    load_medical(hub, data, scale, end)
        .context("loading the demo's medical results (or start with --no-demo)")?;
    load_paylater(hub, scale, &city.profile.time_zone, day)
        .context("loading the demo's visits and payments (or start with --no-demo)")?;
    load_warnings(hub, &city.profile.time_zone, day)
        .context("loading the demo's workplaces, diagnoses and claims (or start with --no-demo)")?;
    load_people(hub, data, city, day)
        .context("loading the demo's residents (or start with --no-demo)")?;
    governance(gov, hub, data).context("setting up the demo city's departments")?;
    Ok(replay)
}

/// Creates the demo datasets and loads the generated city, unless already loaded.
fn load_city(
    hub: &Hub,
    data: &Path,
    city: &DemoCity,
) -> Result<(live::Replay, citybrain_core::Date)> {
    let demo = data.join("demo");
    let day = city.day(&demo)?;
    if !demo.join("truth.json").exists() {
        let config = citybrain_gen::GenConfig {
            network: city.network.clone(),
            day,
            ..citybrain_gen::GenConfig::demo(1, city.scale)
        }
        .for_city(&city.profile);
        crate::commands::generate::with_progress(&config, &demo)?;
    }
    let now = citybrain_server::now();
    for (file, text) in citybrain_gen::DEFINITIONS {
        let def = DatasetDef::from_file_text(file, text).map_err(anyhow::Error::msg)?;
        if !hub.names().contains(&def.name) {
            hub.create_dataset(def, now)?;
        }
    }
    // The network and the lots once; the day's events up to the demo clock (`live`).
    let fixed = citybrain_gen::DATA_FILES
        .iter()
        .filter(|(d, _)| !live::TIMED.iter().any(|(t, _, _)| t == d));
    for (dataset, file) in fixed {
        let name = DatasetName::parse(dataset)?;
        if hub.snapshot(&name)?.rows() > 0 {
            continue;
        }
        let path = demo.join(file);
        let body = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let bar = ProgressBar::new(body.len() as u64).with_style(
            ProgressStyle::with_template(&format!(
                "loading {dataset:<26} {{bar:40}} {{bytes}}/{{total_bytes}}"
            ))
            .expect("valid template"),
        );
        // Replay in batches of about 10,000 records, as a publisher would send them.
        let mut start = 0;
        while start < body.len() {
            let mut end = (start + 1_500_000).min(body.len());
            while end < body.len() && body[end - 1] != b'\n' {
                end += 1;
            }
            hub.ingest(
                &name,
                Format::Ndjson,
                &body[start..end],
                OnError::Reject,
                citybrain_server::now(),
            )?;
            bar.set_position(end as u64);
            start = end;
        }
        bar.finish_and_clear();
    }
    village(hub, &demo, city, day).context("the village map's sensors")?;
    let now = citybrain_server::now();
    let clock = live::Clock::choose(day, &city.profile.time_zone, now, city.from, city.speed);
    Ok((live::load(hub, &demo, clock)?, day))
}

/// The village map's sensors (`citybrain_gen::village`): their datasets, and a day of
/// readings generated once beside the city's other files (streamed by `live`).
fn village(hub: &Hub, demo: &Path, city: &DemoCity, day: citybrain_core::Date) -> Result<()> {
    let now = citybrain_server::now();
    for (file, text) in citybrain_gen::village::DEFINITIONS {
        let def = DatasetDef::from_file_text(file, text).map_err(anyhow::Error::msg)?;
        if !hub.names().contains(&def.name) {
            hub.create_dataset(def, now)?;
        }
    }
    let truth = demo.join("village_truth.json");
    if truth.exists() {
        return Ok(());
    }
    let config = citybrain_gen::GenConfig {
        network: city.network.clone(),
        ..citybrain_gen::GenConfig::demo(1, city.scale)
    };
    let bounds = citybrain_gen::network_bounds(&config)?;
    let made = citybrain_gen::village::generate(
        &citybrain_gen::village::VillageConfig {
            seed: 1,
            day,
            zone: city.profile.time_zone.clone(),
            bounds,
        },
        demo,
    )?;
    std::fs::write(&truth, serde_json::to_vec_pretty(&made)?)
        .with_context(|| format!("writing {}", truth.display()))?;
    Ok(())
}

/// The demo city's economy in `market.enterprises`: 6,780 enterprises at scale 1 (a
/// hundredth of Hangzhou's), written once.
fn load_economy(hub: &Hub, scale: f64) -> Result<()> {
    let name = DatasetName::parse("market.enterprises")?;
    if hub.snapshot(&name)?.rows() > 0 {
        return Ok(());
    }
    let firms = ((citybrain_gen::economy::FIRMS_AT_SCALE_1 as f64) * scale / 100.0)
        .round()
        .max(1.0) as u64;
    let mut body = Vec::new();
    citybrain_gen::economy::write_csv_in(1, firms, citybrain_gen::economy::Unit::Fen, &mut body)?;
    hub.ingest(
        &name,
        Format::Csv,
        &body,
        OnError::Reject,
        citybrain_server::now(),
    )?;
    Ok(())
}

/// The shipped test types and the hospitals' results, once; the planted orders to a file.
fn load_medical(hub: &Hub, data: &Path, scale: f64, end: citybrain_core::Timestamp) -> Result<()> {
    let now = citybrain_server::now();
    let types = DatasetName::parse(citybrain_medical::TYPES)?;
    if hub.snapshot(&types)?.rows() == 0 {
        let body = citybrain_medical::SHIPPED_TYPES.as_bytes();
        hub.ingest(&types, Format::Ndjson, body, OnError::Reject, now)?;
    }
    let results = DatasetName::parse(citybrain_medical::RESULTS)?;
    if hub.snapshot(&results)?.rows() > 0 {
        return Ok(());
    }
    let (rows, planted) = citybrain_medical::demo::generate(&medical_config(scale, end));
    for chunk in rows.chunks(10_000) {
        let body = citybrain_indices::to_ndjson(chunk);
        hub.ingest(
            &results,
            Format::Ndjson,
            &body,
            OnError::Reject,
            citybrain_server::now(),
        )?;
    }
    let path = data.join(MEDICAL_ORDERS);
    std::fs::write(&path, serde_json::to_vec_pretty(&planted)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A month of treat-first-pay-later up to the demo's day: memberships, credit ratings,
/// visits at the hospitals and the payments made before the day began (2,000 patients and
/// 10,000 visits at scale 1). Once.
fn load_paylater(
    hub: &Hub,
    scale: f64,
    zone: &citybrain_core::TimeZone,
    day: citybrain_core::Date,
) -> Result<()> {
    use citybrain_medical::paylater;
    let visits = DatasetName::parse(paylater::VISITS)?;
    if hub.snapshot(&visits)?.rows() > 0 {
        return Ok(());
    }
    let end = zone.day_start(day);
    let month = paylater::demo::generate(&paylater::demo::DemoConfig {
        seed: 3,
        patients: ((2_000.0 * scale) as usize).max(50),
        days: 30,
        visits: ((10_000.0 * scale) as usize).max(200),
        end,
        zone: zone.clone(),
        terms: paylater::Terms::default(),
    });
    let payments: Vec<_> = month.payments.iter().filter(|p| p.at < end).collect();
    let ingest = |name: &str, body: Vec<u8>| -> Result<()> {
        hub.ingest(
            &DatasetName::parse(name)?,
            Format::Ndjson,
            &body,
            OnError::Reject,
            citybrain_server::now(),
        )?;
        Ok(())
    };
    ingest(
        paylater::MEMBERS,
        citybrain_indices::to_ndjson(&month.members),
    )?;
    ingest(
        paylater::RATINGS,
        citybrain_indices::to_ndjson(&month.ratings),
    )?;
    for chunk in month.visits.chunks(10_000) {
        ingest(paylater::VISITS, citybrain_indices::to_ndjson(chunk))?;
    }
    for chunk in payments.chunks(10_000) {
        ingest(paylater::PAYMENTS, citybrain_indices::to_ndjson(chunk))?;
    }
    Ok(())
}

/// A district's workplaces, migrant workers, diagnoses and work-injury claims over the 30
/// weeks up to the demo's day, with the 铁屑伤眼 cluster planted 12 weeks back; its truth
/// to `demo/warnings_truth.json`. Once.
fn load_warnings(
    hub: &Hub,
    zone: &citybrain_core::TimeZone,
    day: citybrain_core::Date,
) -> Result<()> {
    use citybrain_warnings::demo;
    let workplaces = DatasetName::parse("safety.workplaces")?;
    if hub.snapshot(&workplaces)?.rows() > 0 {
        return Ok(());
    }
    let district = demo::generate(&demo::DemoConfig::standard(
        1,
        zone.day_start(day),
        zone.clone(),
    ));
    let ingest = |name: &str, body: Vec<u8>| -> Result<()> {
        hub.ingest(
            &DatasetName::parse(name)?,
            Format::Ndjson,
            &body,
            OnError::Reject,
            citybrain_server::now(),
        )?;
        Ok(())
    };
    ingest(
        "safety.workplaces",
        citybrain_indices::to_ndjson(&district.workplaces),
    )?;
    for chunk in district.migrants.chunks(20_000) {
        ingest(
            "public_security.migrants",
            citybrain_indices::to_ndjson(chunk),
        )?;
    }
    for chunk in district.diagnoses.chunks(20_000) {
        ingest("health.diagnoses", citybrain_indices::to_ndjson(chunk))?;
    }
    ingest(
        "hr.injury_claims",
        citybrain_indices::to_ndjson(&district.claims),
    )?;
    Ok(())
}

/// The demo hotel's department and its front desk principal (`DATA/desk.token`).
pub const HOTEL_DESK: (&str, &str) = ("hotel_west_lake", "front_desk");

/// The truth of which tasks the services scene must open, beside the demo's other truth.
pub const SERVICES_TRUTH: &str = "demo/services_truth.json";

/// The demo's residents (10,000 at scale 1: a hundredth of the generator's scale 1) with a
/// month of changes ending the day before the demo's day, published as each department
/// would, day by day; the grids and their workers; the truth to a file. Once.
fn load_people(hub: &Hub, data: &Path, city: &DemoCity, day: citybrain_core::Date) -> Result<()> {
    let residents = DatasetName::parse(citybrain_services::RESIDENTS)?;
    if hub.snapshot(&residents)?.rows() > 0 {
        return Ok(());
    }
    let (centre, radius_m) = network_disc(&data.join("demo"))?;
    let config = citybrain_services::demo::DemoConfig {
        seed: 1,
        residents: ((10_000.0 * city.scale).round() as u64).max(100),
        first_day: citybrain_core::Date(day.0 - 30),
        days: 30,
        zone: city.profile.time_zone.clone(),
        centre,
        radius_m,
    };
    let people = citybrain_services::demo::generate(&config);
    let send = |dataset: &str, body: &[u8], format: Format| -> Result<()> {
        let name = DatasetName::parse(dataset)?;
        hub.ingest(
            &name,
            format,
            body,
            OnError::Reject,
            citybrain_server::now(),
        )?;
        Ok(())
    };
    let grids: Vec<u8> = people
        .grids
        .iter()
        .flat_map(|g| {
            let mut line = serde_json::to_vec(g).expect("rows serialise");
            line.push(b'\n');
            line
        })
        .collect();
    send(citybrain_services::GRIDS, &grids, Format::Ndjson)?;
    let batches = std::iter::once(&people.first_load).chain(people.days.iter().map(|(_, d)| d));
    for updates in batches {
        for (dataset, body) in citybrain_services::demo::ndjson_by_dataset(updates) {
            send(dataset, &body, Format::Ndjson)?;
        }
    }
    // What codes read: talent facts, screening results and contacts up to the demo's day.
    for (dataset, body) in citybrain_services::demo::code_facts(&people, 1, day, &config.zone) {
        if !body.is_empty() {
            send(dataset, &body, Format::Ndjson)?;
        }
    }
    // The grid workers' patrol positions over the demo's day so far (alarms come from sensors).
    let patrol = citybrain_services::alarms::generate(
        1,
        &people.grids,
        &[],
        day,
        &config.zone,
        config.grid_radius_m(),
        0,
    );
    // Up to now: the rest of the day has not happened yet.
    let now = citybrain_server::now();
    let positions: Vec<u8> = patrol
        .positions
        .iter()
        .filter(|p| p.at <= now)
        .flat_map(|p| {
            let mut line = serde_json::to_vec(p).expect("rows serialise");
            line.push(b'\n');
            line
        })
        .collect();
    if !positions.is_empty() {
        send(citybrain_services::POSITIONS, &positions, Format::Ndjson)?;
    }
    // Sensor alarms at residents' homes (smoke, falls, leaks) over the day before and the
    // demo's day up to now, a dozen a day: the services scene sends each to the nearest
    // worker on its SLA clock, and the community cockpit maps them with their state.
    let homes: Vec<citybrain_core::GeoPoint> = people
        .first_load
        .iter()
        .filter_map(|u| match u {
            citybrain_services::Update::Resident(r) => r.home,
            _ => None,
        })
        .collect();
    let mut alarms = Vec::new();
    for (seed, d) in [(2u64, citybrain_core::Date(day.0 - 1)), (3, day)] {
        let grids: &[citybrain_services::demo::GridRow] = &[];
        let generated = citybrain_services::alarms::generate(
            seed,
            grids,
            &homes,
            d,
            &config.zone,
            config.grid_radius_m(),
            12,
        );
        alarms.extend(
            generated
                .alarms
                .into_iter()
                .filter(|a| a.raised_at <= now)
                .map(|mut a| {
                    a.alarm_id = format!("{}-{d}", a.alarm_id);
                    a
                }),
        );
    }
    if !alarms.is_empty() && !homes.is_empty() {
        let body: Vec<u8> = alarms
            .iter()
            .flat_map(|a| {
                let mut line = serde_json::to_vec(a).expect("rows serialise");
                line.push(b'\n');
                line
            })
            .collect();
        send(citybrain_services::ALARMS, &body, Format::Ndjson)?;
    }
    let booked = citybrain_services::demo::bookings(&people, 1, day, &config.zone, HOTEL_DESK.0);
    send(citybrain_services::BOOKINGS, &booked, Format::Ndjson)?;
    let path = data.join(SERVICES_TRUTH);
    std::fs::write(&path, serde_json::to_vec(&people.truth)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Where the demo's road network is: the centre of its checkpoints and the radius that holds
/// most of them, so residents live where the roads are.
fn network_disc(demo: &Path) -> Result<(citybrain_core::GeoPoint, f64)> {
    let file = citybrain_gen::DATA_FILES
        .iter()
        .find(|(d, _)| *d == "transport.checkpoints")
        .map(|(_, f)| demo.join(f))
        .context("the generator writes no checkpoints")?;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let points: Vec<citybrain_core::GeoPoint> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| serde_json::from_value(v["loc"].clone()).ok())
        .collect();
    anyhow::ensure!(
        !points.is_empty(),
        "{} holds no checkpoints",
        file.display()
    );
    let n = points.len() as f64;
    let centre = citybrain_core::GeoPoint {
        lon: points.iter().map(|p| p.lon).sum::<f64>() / n,
        lat: points.iter().map(|p| p.lat).sum::<f64>() / n,
    };
    let mut d: Vec<f64> = points.iter().map(|p| p.distance_m(&centre)).collect();
    d.sort_by(f64::total_cmp);
    Ok((centre, d[(d.len() * 9 / 10).min(d.len() - 1)].max(500.0)))
}

/// Sends the planted orders not answered yet as the demo hospital's doctor, once the medical
/// scene has every result, so the health page shows recognition at work.
pub async fn recognise_planted(state: &citybrain_server::AppState, data: &Path) -> Result<()> {
    use citybrain_server::scenes::medical;
    let Ok(text) = std::fs::read(data.join(MEDICAL_ORDERS)) else {
        return Ok(());
    };
    let planted: Vec<serde_json::Value> = serde_json::from_slice(&text)?;
    let Ok(live) = state.scenes.handle::<medical::LiveMedical>("medical") else {
        return Ok(());
    };
    if !state
        .scenes
        .caught_up("medical", &state.hub, std::time::Duration::from_secs(60))
        .await
    {
        anyhow::bail!("the medical scene did not apply the demo's results within a minute");
    }
    let me = Principal {
        name: PrincipalName::parse(HOSPITAL_PRINCIPAL)?,
        department: DepartmentId::parse(HOSPITAL)?,
        role: Role::Publisher,
    };
    for order in planted {
        let mut request: medical::RecognitionRequest = serde_json::from_value(order)?;
        if live.answered(&format!("{HOSPITAL}/{}", request.order_id)) {
            continue;
        }
        request.purpose = "demo city: the demo hospital's orders".into();
        medical::recognise(state, &me, request)
            .await
            .map_err(|e| anyhow::anyhow!("a demo recognition: {e}"))?;
    }
    Ok(())
}

/// The demo city's departments, its principals, and the grant the cockpit reads through.
fn governance(gov: &Gov, hub: &Hub, data: &Path) -> Result<()> {
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
