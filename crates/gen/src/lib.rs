//! The demo city: a deterministic synthetic day of ANPR checkpoint passages on the real
//! Hangzhou road network, with the ground truth written beside it.
//!
//! Key decision: the generator owns the truth (every vehicle, every true link travel time),
//! so index operators can be scored against it; the camera model then degrades the truth
//! the way real cameras do: missed reads and misread plates. Same seed, same bytes.
//! Later scenes add their datasets as further `write_*` steps (parking lots and sessions,
//! enterprises, residents, hospitals) called from [`generate`].

pub mod economy;
pub mod network;
pub mod parking;
pub mod village;
use citybrain_core::rng;

use std::collections::HashSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use citybrain_core::Timestamp;
use serde::Serialize;

pub use network::Network;
use rng::Rng;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    /// 1.0 is 20,000 vehicles (about half a million passages).
    pub scale: f64,
    /// Probability that a camera misses a passing vehicle.
    pub miss_rate: f64,
    /// Probability that a camera misreads one character of a plate.
    pub misread_rate: f64,
    /// A CBEngine road network file; `None` uses the embedded Hangzhou network.
    pub network: Option<PathBuf>,
    /// Each vehicle makes 1 to this many trips (3 by default; 1 gives a day of many
    /// vehicles and few passages each, like a city's through traffic).
    pub max_trips: u64,
    /// The generated day, a local day in `zone`.
    pub day: citybrain_core::Date,
    /// The city's own plates start with this (the profile's first prefix); others come
    /// from neighbouring provinces.
    pub local_prefix: String,
    /// The city's zone: the day runs from its local midnight.
    pub zone: citybrain_core::TimeZone,
}

impl GenConfig {
    /// The demo's settings for a seed and scale: Hangzhou's plates and zone, 22 Nov 2026.
    pub fn demo(seed: u64, scale: f64) -> Self {
        Self {
            seed,
            scale,
            miss_rate: 0.03,
            misread_rate: 0.02,
            network: None,
            max_trips: 3,
            day: citybrain_core::Date::parse("2026-11-22").expect("a valid date"),
            local_prefix: "浙A".into(),
            zone: citybrain_core::TimeZone::fixed(8 * 3600),
        }
    }

    /// The same settings for the city of `profile` (its first plate prefix and its zone).
    pub fn for_city(mut self, profile: &citybrain_core::CityProfile) -> Self {
        if let Some(prefix) = profile.plate_prefixes.first() {
            self.local_prefix = prefix.clone();
        }
        self.zone = profile.time_zone.clone();
        self
    }
}

/// Ground truth of a generated day.
#[derive(Debug, Serialize)]
pub struct Truth {
    pub seed: u64,
    pub scale: f64,
    pub day: String,
    pub vehicles: u64,
    pub local_vehicles: u64,
    pub non_local_vehicles: u64,
    pub trips: u64,
    pub passages_true: u64,
    pub passages_recorded: u64,
    pub missed_reads: u64,
    pub misread_plates: u64,
    /// Vehicles with at least one true passage (recorded or missed) in each local hour.
    pub vehicles_by_hour: Vec<u64>,
    pub parking: parking::ParkingTruth,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("the road network is unusable: {0}")]
    Network(String),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenError + '_ {
    move |source| GenError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Plates of vehicles from elsewhere: these, less the city's own prefix (so Hangzhou's
/// list is the eight after 浙A, as it always was, and Nanchang's has 浙A instead of 赣A).
const OTHER_PREFIXES: &[&str] = &[
    "浙A", "浙B", "浙C", "浙D", "浙F", "沪A", "苏E", "皖A", "赣A", "京N",
];
const PLATE_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// The real Hangzhou road network (see `data/README.md` for its provenance).
pub const HANGZHOU_NETWORK: &str = include_str!("../data/hangzhou.txt");

/// Dataset definitions for what [`generate`] writes, as TOML files.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "transport.checkpoints.toml",
        include_str!("../definitions/transport.checkpoints.toml"),
    ),
    (
        "transport.links.toml",
        include_str!("../definitions/transport.links.toml"),
    ),
    (
        "transport.anpr_passages.toml",
        include_str!("../definitions/transport.anpr_passages.toml"),
    ),
    (
        "parking.lots.toml",
        include_str!("../definitions/parking.lots.toml"),
    ),
    (
        "parking.gate_events.toml",
        include_str!("../definitions/parking.gate_events.toml"),
    ),
    (
        "parking.sensor_events.toml",
        include_str!("../definitions/parking.sensor_events.toml"),
    ),
];

/// The data files [`generate`] writes, with the dataset each belongs in.
pub const DATA_FILES: &[(&str, &str)] = &[
    ("transport.checkpoints", "checkpoints.ndjson"),
    ("transport.links", "links.ndjson"),
    ("transport.anpr_passages", "anpr_passages.ndjson"),
    ("parking.lots", "parking_lots.ndjson"),
    ("parking.gate_events", "parking_gate_events.ndjson"),
    ("parking.sensor_events", "parking_sensor_events.ndjson"),
];

/// Local departure hour, drawn from a day with morning and evening peaks.
fn departure_secs(rng: &mut Rng) -> i64 {
    let u = rng.f64();
    let hour = if u < 0.3 {
        8.0 + rng.normal() * 0.8
    } else if u < 0.55 {
        18.0 + rng.normal() * 1.0
    } else {
        6.0 + rng.f64() * 16.0
    };
    (hour.clamp(0.0, 23.9) * 3600.0) as i64
}

/// How much slower than free flow a link is at a local time: peaks at 8:00 and 18:00.
pub fn congestion(local_secs: i64, sensitivity: f64) -> f64 {
    let h = local_secs as f64 / 3600.0;
    let peak = (-((h - 8.0) / 1.0).powi(2)).exp() + 0.9 * (-((h - 18.0) / 1.2).powi(2)).exp();
    1.0 + sensitivity * peak
}

fn plate(rng: &mut Rng, local: bool, own: &str, others: &[&'static str]) -> String {
    let prefix = if local {
        own
    } else {
        others[rng.below(others.len() as u64) as usize]
    };
    let mut p = String::from(prefix);
    for _ in 0..5 {
        p.push(PLATE_CHARS[rng.below(PLATE_CHARS.len() as u64) as usize] as char);
    }
    p
}

fn misread(rng: &mut Rng, plate: &str) -> String {
    let mut chars: Vec<char> = plate.chars().collect();
    let at = chars.len() - 1 - rng.below(5) as usize;
    let original = chars[at];
    loop {
        let c = PLATE_CHARS[rng.below(PLATE_CHARS.len() as u64) as usize] as char;
        if c != original {
            chars[at] = c;
            break;
        }
    }
    chars.into_iter().collect()
}

struct Passage {
    ts: i64,
    checkpoint: u64,
    plate: String,
    lane: u8,
    speed_kmh: f32,
}

/// Generates the demo city into `out`; `progress(done, total)` is called as vehicles are made.
/// The extent (west, south, east, north) of the network `config` names.
pub fn network_bounds(config: &GenConfig) -> Result<[f64; 4], GenError> {
    let text = match &config.network {
        Some(path) => fs::read_to_string(path).map_err(io(path))?,
        None => HANGZHOU_NETWORK.to_string(),
    };
    let network = Network::parse(&text).map_err(GenError::Network)?;
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for i in &network.intersections {
        b = [
            b[0].min(i.lon),
            b[1].min(i.lat),
            b[2].max(i.lon),
            b[3].max(i.lat),
        ];
    }
    if network.intersections.is_empty() {
        return Err(GenError::Network("no intersections".into()));
    }
    Ok(b)
}

pub fn generate(
    config: &GenConfig,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Truth, GenError> {
    let text = match &config.network {
        Some(path) => fs::read_to_string(path).map_err(io(path))?,
        None => HANGZHOU_NETWORK.to_string(),
    };
    let network = Network::parse(&text).map_err(GenError::Network)?;
    fs::create_dir_all(out).map_err(io(out))?;
    let defs = out.join("definitions");
    fs::create_dir_all(&defs).map_err(io(&defs))?;
    for (file, text) in DEFINITIONS {
        let path = defs.join(file);
        fs::write(&path, text).map_err(io(&path))?;
    }
    network
        .write_checkpoints(&out.join("checkpoints.ndjson"))
        .map_err(io(out))?;
    network
        .write_links(&out.join("links.ndjson"))
        .map_err(io(out))?;

    let mut rng = Rng::new(config.seed);
    let vehicles = (20_000.0 * config.scale).round().max(1.0) as u64;
    let day_start_utc = config.zone.day_start(config.day).as_secs();
    let others: Vec<&'static str> = OTHER_PREFIXES
        .iter()
        .copied()
        .filter(|p| *p != config.local_prefix)
        .collect();
    // How much a road slows at the peak: log-normal, as in real cities, where most roads
    // slow a little and a few bottlenecks a lot (median 0.7: delay index 1.7 at 08:00).
    // Drawn uniformly (0.3–1.5) the worst roads were all alike: with 6,000 links the 20
    // worst lay within 0.1% of each other, so no "top 20" was there to find. Capped at 4
    // so that a peak traversal stays well under the 8× free flow the indices accept.
    let sensitivity: Vec<f64> = (0..network.roads.len())
        .map(|_| (0.7 * (0.5 * rng.normal()).exp()).min(4.0))
        .collect();
    let mut passages = Vec::new();
    let mut truth = Truth {
        seed: config.seed,
        scale: config.scale,
        day: config.day.to_string(),
        vehicles,
        local_vehicles: 0,
        non_local_vehicles: 0,
        trips: 0,
        passages_true: 0,
        passages_recorded: 0,
        missed_reads: 0,
        misread_plates: 0,
        vehicles_by_hour: vec![0; 24],
        parking: parking::ParkingTruth::default(),
    };
    // True travel times per (road, 15-minute window of entry) for the truth file.
    let mut travel: std::collections::BTreeMap<(usize, i64), Vec<f32>> = Default::default();
    let mut seen_plates = HashSet::new();
    for v in 0..vehicles {
        if v % 1000 == 0 {
            progress(v, vehicles);
        }
        let local = rng.f64() < 0.8;
        let mut vehicle_plate = plate(&mut rng, local, &config.local_prefix, &others);
        while !seen_plates.insert(vehicle_plate.clone()) {
            vehicle_plate = plate(&mut rng, local, &config.local_prefix, &others);
        }
        if local {
            truth.local_vehicles += 1;
        } else {
            truth.non_local_vehicles += 1;
        }
        let trips = 1 + rng.below(config.max_trips.max(1));
        let mut hours = [false; 24];
        // A vehicle makes its trips one after another: each leaves at its drawn time or a
        // minute after the one before arrived, whichever is later. (Drawn independently,
        // trips overlapped in the peaks: one plate in two places, whose passages interleave
        // and pair into no link, so the truth counted traversals no camera could see.)
        let mut departures: Vec<f64> = (0..trips)
            .map(|_| departure_secs(&mut rng) as f64)
            .collect();
        departures.sort_by(f64::total_cmp);
        let mut arrived = f64::MIN;
        for departure in departures {
            let mut t = departure.max(arrived + 60.0);
            if t >= 86_400.0 {
                break;
            }
            truth.trips += 1;
            let mut at = rng.below(network.intersections.len() as u64) as usize;
            let hops = 4 + rng.below(12);
            let mut came_from = usize::MAX;
            let mut record =
                |rng: &mut Rng, at: usize, t: f64, lanes: u8, speed: f64, truth: &mut Truth| {
                    truth.passages_true += 1;
                    hours[((t as usize) / 3600).min(23)] = true;
                    if rng.f64() < config.miss_rate {
                        truth.missed_reads += 1;
                        return;
                    }
                    let plate = if rng.f64() < config.misread_rate {
                        truth.misread_plates += 1;
                        misread(rng, &vehicle_plate)
                    } else {
                        vehicle_plate.clone()
                    };
                    passages.push(Passage {
                        ts: (day_start_utc as f64 * 1e6 + t * 1e6) as i64,
                        checkpoint: network.intersections[at].id,
                        plate,
                        lane: 1 + rng.below(u64::from(lanes.max(1))) as u8,
                        speed_kmh: (speed * 3.6) as f32,
                    });
                };
            record(&mut rng, at, t, 2, 30.0 / 3.6, &mut truth);
            for _ in 0..hops {
                let outs = &network.out_roads[at];
                let choices: Vec<usize> = outs
                    .iter()
                    .copied()
                    .filter(|r| network.roads[*r].to != came_from || outs.len() == 1)
                    .collect();
                if choices.is_empty() {
                    break;
                }
                let road_index = choices[rng.below(choices.len() as u64) as usize];
                let road = &network.roads[road_index];
                let factor = congestion(t as i64, sensitivity[road_index])
                    * (1.0 + 0.1 * rng.normal()).max(0.7);
                let travel_s = road.freeflow_s() * factor;
                if t + travel_s >= 86_400.0 {
                    // Arrives after the day: no passage, so no traversal in the truth either.
                    break;
                }
                let window = (t as i64) / 900;
                travel
                    .entry((road_index, window))
                    .or_default()
                    .push(travel_s as f32);
                t += travel_s;
                came_from = at;
                at = road.to;
                record(
                    &mut rng,
                    at,
                    t,
                    road.lanes,
                    road.length_m / travel_s,
                    &mut truth,
                );
            }
            arrived = t;
        }
        for (h, seen) in hours.iter().enumerate() {
            truth.vehicles_by_hour[h] += u64::from(*seen);
        }
    }
    progress(vehicles, vehicles);
    passages.sort_by_key(|p| p.ts);
    truth.passages_recorded = passages.len() as u64;
    let path = out.join("anpr_passages.ndjson");
    let file = fs::File::create(&path).map_err(io(&path))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    for p in &passages {
        writeln!(
            w,
            "{{\"ts\":\"{}\",\"checkpoint_id\":{},\"plate\":\"{}\",\"lane\":{},\"speed_kmh\":{:.1}}}",
            Timestamp(p.ts),
            p.checkpoint,
            p.plate,
            p.lane,
            p.speed_kmh
        )
        .map_err(io(&path))?;
    }
    w.flush().map_err(io(&path))?;
    let path = out.join("truth_link_travel_times.csv");
    let mut w = BufWriter::new(fs::File::create(&path).map_err(io(&path))?);
    writeln!(
        w,
        "from_checkpoint,to_checkpoint,window_start,median_travel_s,mean_travel_s,vehicles"
    )
    .map_err(io(&path))?;
    for ((road_index, window), times) in &mut travel {
        let road = &network.roads[*road_index];
        times.sort_by(f32::total_cmp);
        let n = times.len();
        // The median as the indices compute it: the mean of the two middle values if even.
        let median = if n % 2 == 1 {
            f64::from(times[n / 2])
        } else {
            (f64::from(times[n / 2 - 1]) + f64::from(times[n / 2])) / 2.0
        };
        let mean = times.iter().map(|t| f64::from(*t)).sum::<f64>() / n as f64;
        writeln!(
            w,
            "{},{},{},{:.3},{:.3},{}",
            network.intersections[road.from].id,
            network.intersections[road.to].id,
            Timestamp::from_secs(day_start_utc + window * 900),
            median,
            mean,
            n
        )
        .map_err(io(&path))?;
    }
    w.flush().map_err(io(&path))?;
    truth.parking = parking::generate(
        &network,
        config.seed,
        config.scale,
        day_start_utc,
        &config.local_prefix,
        out,
    )
    .map_err(io(out))?;
    let path = out.join("truth.json");
    fs::write(
        &path,
        serde_json::to_vec_pretty(&truth).expect("truth serialises"),
    )
    .map_err(io(&path))?;
    Ok(truth)
}
