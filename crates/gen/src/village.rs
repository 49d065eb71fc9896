//! The digital village map's sensors (数字乡村一张图): a few villages around the city, each
//! with an air-quality station, a water probe, a noise monitor, a weather station and fill
//! sensors on its waste containers, and a day of hourly readings as Smart Data Models
//! entities store them (one row per entity and hour). A handful of events are planted (a
//! straw fire, a construction site, a pond short of oxygen at dawn, a cloudburst, a missed
//! collection) so the threshold alerts have something true to find; [`VillageTruth`] says
//! which.
//!
//! Each line starts with `{"date_observed":...`, so the demo streams it as its clock runs.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use citybrain_core::{Date, TimeZone, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

use crate::rng::Rng;
use crate::{GenError, io};

/// The datasets' definitions (Smart Data Models types through `[ngsi_ld]`).
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "environment.air_quality.toml",
        include_str!("../definitions/environment.air_quality.toml"),
    ),
    (
        "environment.water_quality.toml",
        include_str!("../definitions/environment.water_quality.toml"),
    ),
    (
        "environment.noise.toml",
        include_str!("../definitions/environment.noise.toml"),
    ),
    (
        "meteorology.weather.toml",
        include_str!("../definitions/meteorology.weather.toml"),
    ),
    (
        "urban_management.waste_containers.toml",
        include_str!("../definitions/urban_management.waste_containers.toml"),
    ),
];

/// Dataset and the file its readings are written to.
pub const FILES: &[(&str, &str)] = &[
    ("environment.air_quality", "village_air_quality.ndjson"),
    ("environment.water_quality", "village_water_quality.ndjson"),
    ("environment.noise", "village_noise.ndjson"),
    ("meteorology.weather", "village_weather.ndjson"),
    ("urban_management.waste_containers", "village_waste.ndjson"),
];

/// The field each file's lines start with.
pub const TIME_FIELD: &str = "date_observed";

/// (pinyin, 中文): common village names, so they suit any city's demo.
const NAMES: [(&str, &str); 6] = [
    ("Dongshan", "东山村"),
    ("Xixi", "西溪村"),
    ("Nanhu", "南湖村"),
    ("Beiling", "北岭村"),
    ("Qingshan", "青山村"),
    ("Baisha", "白沙村"),
];

#[derive(Debug, Clone)]
pub struct VillageConfig {
    pub seed: u64,
    pub day: Date,
    pub zone: TimeZone,
    /// The city's extent (west, south, east, north): villages stand just outside it.
    pub bounds: [f64; 4],
}

/// One planted event: which rule's alert it should open, on which sensor, between which
/// hours (local, inclusive start).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Planted {
    pub rule: &'static str,
    pub entity: String,
    pub village: String,
    pub from_hour: u32,
    pub what: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VillageTruth {
    pub villages: usize,
    pub sensors: usize,
    pub readings: usize,
    pub planted: Vec<Planted>,
}

/// Where each village is: on a ring just outside the city's extent.
fn places(bounds: [f64; 4]) -> Vec<(f64, f64)> {
    let [w, s, e, n] = bounds;
    let (cx, cy) = ((w + e) / 2.0, (s + n) / 2.0);
    let (rx, ry) = (((e - w) / 2.0).max(0.02), ((n - s) / 2.0).max(0.02));
    (0..NAMES.len())
        .map(|i| {
            let a = std::f64::consts::TAU * (i as f64 + 0.3) / NAMES.len() as f64;
            (cx + 1.15 * rx * a.cos(), cy + 1.15 * ry * a.sin())
        })
        .collect()
}

/// HJ 633-2012 individual air quality index of a concentration, by its breakpoints.
fn iaqi(c: f64, breakpoints: &[f64; 8]) -> f64 {
    const INDEX: [f64; 8] = [0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0];
    for i in 1..8 {
        if c <= breakpoints[i] {
            let (lo, hi) = (breakpoints[i - 1], breakpoints[i]);
            return INDEX[i - 1] + (INDEX[i] - INDEX[i - 1]) * (c - lo) / (hi - lo);
        }
    }
    500.0
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// One reading as a line: the time first, then the entity's fields.
fn line(
    at: Timestamp,
    entity: &str,
    name: &str,
    village: &str,
    loc: (f64, f64),
    values: Value,
) -> String {
    let mut row = serde_json::Map::new();
    row.insert(TIME_FIELD.into(), Value::from(at.to_string()));
    row.insert("entity_id".into(), Value::from(entity));
    row.insert("name".into(), Value::from(name));
    row.insert("area_served".into(), Value::from(village));
    row.insert("location".into(), json!({"lon": loc.0, "lat": loc.1}));
    if let Value::Object(v) = values {
        row.extend(v);
    }
    // serde_json keeps insertion order only with `preserve_order`; write the time first
    // by hand so the demo's streaming reader finds it.
    let rest = Value::Object(row.clone());
    let mut text = format!("{{\"{TIME_FIELD}\":\"{at}\"");
    if let Value::Object(o) = rest {
        for (k, v) in o {
            if k != TIME_FIELD {
                text.push_str(&format!(",{}:{}", Value::from(k), v));
            }
        }
    }
    text.push('}');
    text
}

/// Writes a day of the villages' readings into `out` and says what was planted.
pub fn generate(config: &VillageConfig, out: &Path) -> Result<VillageTruth, GenError> {
    fs::create_dir_all(out).map_err(io(out))?;
    let mut rng = Rng::new(config.seed ^ 0x5641_4c4c);
    let start = config.zone.day_start(config.day).as_secs();
    let mut truth = VillageTruth {
        villages: NAMES.len(),
        ..VillageTruth::default()
    };
    let mut files: Vec<(String, BufWriter<fs::File>)> = Vec::new();
    for (_, file) in FILES {
        let path = out.join(file);
        let f = fs::File::create(&path).map_err(io(&path))?;
        files.push((path.display().to_string(), BufWriter::new(f)));
    }
    let mut lines: Vec<Vec<(i64, String)>> = vec![Vec::new(); FILES.len()];
    for (v, (&(en, zh), (lon, lat))) in NAMES.iter().zip(places(config.bounds)).enumerate() {
        let village = format!("{zh} {en}");
        let slug = en.to_lowercase();
        let near = |rng: &mut Rng| {
            (
                round6(lon + (rng.f64() - 0.5) * 0.01),
                round6(lat + (rng.f64() - 0.5) * 0.008),
            )
        };
        let air = (
            format!("urn:ngsi-ld:AirQualityObserved:{slug}-air"),
            near(&mut rng),
        );
        let water = (
            format!("urn:ngsi-ld:WaterQualityObserved:{slug}-pond"),
            near(&mut rng),
        );
        let noise = (
            format!("urn:ngsi-ld:NoiseLevelObserved:{slug}-square"),
            near(&mut rng),
        );
        let weather = (
            format!("urn:ngsi-ld:WeatherObserved:{slug}-aws"),
            near(&mut rng),
        );
        let bins: Vec<(String, (f64, f64))> = (1..=3)
            .map(|i| {
                (
                    format!("urn:ngsi-ld:WasteContainer:{slug}-bin-{i}"),
                    near(&mut rng),
                )
            })
            .collect();
        truth.sensors += 4 + bins.len();
        // What is planted where (v is the village's index).
        let straw_fire = v == 1;
        let construction = v == 0;
        let low_oxygen = v == 3;
        let cloudburst = v == 2;
        let missed_collection = v == 4;
        if straw_fire {
            truth.planted.push(Planted {
                rule: "pm25",
                entity: air.0.clone(),
                village: village.clone(),
                from_hour: 17,
                what: "straw burning in the fields (秸秆焚烧)",
            });
            truth.planted.push(Planted {
                rule: "pm10",
                entity: air.0.clone(),
                village: village.clone(),
                from_hour: 17,
                what: "straw burning in the fields (秸秆焚烧)",
            });
        }
        if construction {
            truth.planted.push(Planted {
                rule: "noise",
                entity: noise.0.clone(),
                village: village.clone(),
                from_hour: 9,
                what: "a construction site by the square",
            });
        }
        if low_oxygen {
            truth.planted.push(Planted {
                rule: "dissolved_oxygen",
                entity: water.0.clone(),
                village: village.clone(),
                from_hour: 3,
                what: "the fish pond short of oxygen before dawn",
            });
        }
        if cloudburst {
            truth.planted.push(Planted {
                rule: "heavy_rain",
                entity: weather.0.clone(),
                village: village.clone(),
                from_hour: 14,
                what: "a cloudburst",
            });
        }
        if missed_collection {
            truth.planted.push(Planted {
                rule: "waste_full",
                entity: bins[1].0.clone(),
                village: village.clone(),
                from_hour: 20,
                what: "the evening collection missed this container",
            });
        }
        let mut fill: Vec<f64> = (0..bins.len()).map(|_| 0.2 + 0.3 * rng.f64()).collect();
        for h in 0..24u32 {
            let at = Timestamp::from_secs(start + i64::from(h) * 3600);
            let hf = f64::from(h);
            let day_wave = (std::f64::consts::TAU * (hf - 9.0) / 24.0).sin(); // peaks 15:00
            // Air: more particles in the still night and morning, ozone in the afternoon sun.
            let mut pm25 = (34.0 - 12.0 * day_wave + 4.0 * rng.normal()).max(3.0);
            if straw_fire && (17..=21).contains(&h) {
                pm25 += [65.0, 90.0, 100.0, 75.0, 50.0][(h - 17) as usize];
            }
            let mut pm10 = pm25 * 1.5 + 6.0 * rng.f64();
            if straw_fire && (18..=20).contains(&h) {
                pm10 += 25.0;
            }
            let no2 = (28.0 + 8.0 * (-day_wave) + 4.0 * rng.normal()).max(2.0);
            let o3 = (70.0 + 60.0 * day_wave + 8.0 * rng.normal()).max(5.0);
            let aqi = iaqi(pm25, &[0.0, 35.0, 75.0, 115.0, 150.0, 250.0, 350.0, 500.0])
                .max(iaqi(
                    pm10,
                    &[0.0, 50.0, 150.0, 250.0, 350.0, 420.0, 500.0, 600.0],
                ))
                .round();
            lines[0].push((at.0, line(at, &air.0, &format!("{zh} air station"), &village, air.1, json!({
                "pm25": round1(pm25), "pm10": round1(pm10), "no2": round1(no2), "o3": round1(o3),
                "air_quality_index": aqi as i64,
            }))));
            // Water: algae raise oxygen and pH by day and use oxygen up by night.
            let mut o2 = 7.4 + 1.4 * day_wave + 0.2 * rng.normal();
            if low_oxygen && (2..=7).contains(&h) {
                o2 = [5.6, 4.6, 4.1, 3.8, 4.2, 5.2][(h - 2) as usize] + 0.1 * rng.normal();
            }
            let ph = 7.4 + 0.35 * day_wave + 0.05 * rng.normal();
            lines[1].push((at.0, line(at, &water.0, &format!("{zh} pond probe"), &village, water.1, json!({
                "ph": round2(ph), "o2": round2(o2),
                "turbidity": round1(8.0 + 3.0 * rng.f64() + if cloudburst && h >= 14 { 25.0 } else { 0.0 }),
                "temperature": round1(16.0 + 2.0 * day_wave),
            }))));
            // Noise: a quiet village; the square is busier by day.
            let busy = if (7..22).contains(&h) { 47.0 } else { 38.0 };
            let mut laeq = busy + 2.0 * rng.normal().clamp(-1.5, 1.5);
            if construction && (9..=11).contains(&h) {
                laeq = 63.0 + 2.0 * rng.f64();
            }
            lines[2].push((
                at.0,
                line(
                    at,
                    &noise.0,
                    &format!("{zh} square noise monitor"),
                    &village,
                    noise.1,
                    json!({
                        "laeq": round1(laeq), "lamax": round1(laeq + 9.0 + 5.0 * rng.f64()),
                    }),
                ),
            ));
            // Weather.
            let precipitation = if cloudburst && h == 14 {
                31.5
            } else if cloudburst && h == 15 {
                12.0
            } else if (13..=16).contains(&h) && rng.f64() < 0.3 {
                round1(2.0 * rng.f64())
            } else {
                0.0
            };
            lines[3].push((at.0, line(at, &weather.0, &format!("{zh} weather station"), &village, weather.1, json!({
                "temperature": round1(14.0 + 5.0 * day_wave + 0.5 * rng.normal()),
                "relative_humidity": round2((0.72 - 0.15 * day_wave + 0.03 * rng.normal()).clamp(0.2, 1.0)),
                "precipitation": precipitation,
                "wind_speed": round1((3.0 + 1.5 * rng.normal().abs()).min(12.0)),
                "atmospheric_pressure": round1(1016.0 + 2.0 * rng.normal()),
            }))));
            // Waste: filled through the day, emptied at 07:00 and 17:00 (one collection
            // missed where planted).
            for (i, (id, loc)) in bins.iter().enumerate() {
                let missed = missed_collection && i == 1 && h == 17;
                if (h == 7 || h == 17) && !missed {
                    fill[i] = 0.03 + 0.03 * rng.f64();
                } else if missed_collection && i == 1 && h > 7 {
                    // A busy container (by the market), filling steadily.
                    fill[i] = (fill[i] + 0.065).min(1.0);
                } else {
                    fill[i] = (fill[i] + 0.035 * (0.6 + 0.8 * rng.f64())).min(1.0);
                }
                lines[4].push((
                    at.0,
                    line(
                        at,
                        id,
                        &format!("{zh} waste container {}", i + 1),
                        &village,
                        *loc,
                        json!({
                            "filling_level": round2(fill[i]), "status": "ok",
                            "temperature": round1(14.0 + 5.0 * day_wave),
                        }),
                    ),
                ));
            }
        }
    }
    for ((_, file), mut rows) in files.iter_mut().zip(lines) {
        rows.sort_by_key(|(t, _)| *t);
        truth.readings += rows.len();
        for (_, text) in rows {
            writeln!(file, "{text}").map_err(io(out))?;
        }
    }
    for (path, mut file) in files {
        file.flush().map_err(io(Path::new(&path)))?;
    }
    Ok(truth)
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aqi_follows_the_breakpoints() {
        let pm25 = [0.0, 35.0, 75.0, 115.0, 150.0, 250.0, 350.0, 500.0];
        assert_eq!(iaqi(35.0, &pm25), 50.0);
        assert_eq!(iaqi(55.0, &pm25), 75.0);
        assert_eq!(iaqi(900.0, &pm25), 500.0);
    }
}
