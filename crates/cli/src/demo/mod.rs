//! The demo city `citybrain up` sets up unless `--no-demo`: a generated day of the city
//! (its ANPR passages and the other datasets of `citybrain_gen`), a synthetic economy in
//! `market.enterprises`, and the departments, principals, grants and token files the
//! cockpit and the policy scene's walkthrough use. Each part is done once: a restart finds
//! it in the data directory and leaves it be.

use std::path::Path;

use anyhow::{Context, Result};
use citybrain_core::{DatasetName, DepartmentId, PrincipalName};
use citybrain_gov::{Gov, Principal, Role};
use citybrain_hub::{DatasetDef, Format, Hub, OnError};
use indicatif::{ProgressBar, ProgressStyle};

mod governance;
pub mod live;

use governance::governance;

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
