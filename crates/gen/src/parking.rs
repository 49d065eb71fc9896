//! The demo city's parking: lots pooled around three hospitals and spread over the city, and
//! a day of gate camera reads (garages, hospital pools) and berth sensor messages
//! (on-street berths), with the faults real gates have: reads twice, missed exits, missed
//! entries.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use citybrain_core::Timestamp;
use serde::Serialize;

use crate::network::Network;
use crate::rng::Rng;

/// What the generator put into the parking day, to check the scene against.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ParkingTruth {
    pub lots: u64,
    pub berths: u64,
    pub stays: u64,
    /// Stays whose entry and exit were both read once (each should become one bill).
    pub clean_stays_ended: u64,
    pub gate_events: u64,
    pub sensor_events: u64,
    pub duplicate_reads: u64,
    pub missed_exits: u64,
    pub missed_entries: u64,
    /// Gate-lot stays whose entry was read and whose exit was not (missed, or after the
    /// day): each is a `no_exit` anomaly once the gates' clock passes a day after the entry.
    pub open_without_exit: u64,
    /// Drivers who found a lot full and went elsewhere.
    pub turned_away: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    OnStreet,
    Garage,
    HospitalPool,
}

struct LotPlan {
    id: u32,
    name: String,
    lon: f64,
    lat: f64,
    capacity: u32,
    kind: Kind,
    district: &'static str,
    /// Arrivals over the day per berth.
    turnover: f64,
    /// Median stay in minutes.
    stay_min: f64,
}

/// (full name, short name for its nearby lots).
const HOSPITALS: [(&str, &str); 3] = [
    ("City First People's Hospital 市一医院", "First Hospital"),
    ("Children's Hospital 儿童医院", "Children's Hospital"),
    (
        "Hospital of Traditional Chinese Medicine 中医院",
        "TCM Hospital",
    ),
];

fn tariff_fields(kind: Kind) -> String {
    // free minutes, unit minutes, day unit and night unit (fen), day 07:00–21:00, daily cap.
    let (free, unit, day, night, cap) = match kind {
        Kind::HospitalPool => (15, 30, 300, 100, "3000"),
        Kind::Garage => (15, 30, 500, 100, "6000"),
        Kind::OnStreet => (15, 15, 250, 50, "null"),
    };
    format!(
        "\"free_minutes\":{free},\"unit_minutes\":{unit},\"day_unit\":{day},\"night_unit\":{night},\"day_start_min\":420,\"day_end_min\":1260,\"daily_cap\":{cap}"
    )
}

fn plan(network: &Network, rng: &mut Rng) -> Vec<LotPlan> {
    let n = network.intersections.len();
    let mut lots = Vec::new();
    let mut id = 1;
    let mut add = |lots: &mut Vec<LotPlan>, at: usize, kind: Kind, name: String, rng: &mut Rng| {
        let i = &network.intersections[at];
        let (capacity, turnover, stay_min) = match kind {
            Kind::HospitalPool => (300 + rng.below(300) as u32, 3.0, 150.0),
            Kind::Garage => (120 + rng.below(380) as u32, 2.2, 120.0),
            Kind::OnStreet => (20 + rng.below(40) as u32, 5.0, 45.0),
        };
        lots.push(LotPlan {
            id,
            name,
            lon: i.lon + (rng.f64() - 0.5) * 0.002,
            lat: i.lat + (rng.f64() - 0.5) * 0.002,
            capacity,
            kind,
            district: i.district,
            turnover,
            stay_min,
        });
        id += 1;
    };
    for (h, (hospital, short)) in HOSPITALS.iter().enumerate() {
        let at = (n * (2 * h + 1)) / 6;
        add(
            &mut lots,
            at,
            Kind::HospitalPool,
            format!("{hospital} pool"),
            rng,
        );
        // The berths within 2.5 km that the pool guides to: the nearest intersections.
        let here = &network.intersections[at];
        let mut near: Vec<(f64, usize)> = (0..n)
            .filter(|&j| j != at)
            .map(|j| {
                let o = &network.intersections[j];
                let d = ((o.lat - here.lat) * 111_000.0).hypot((o.lon - here.lon) * 89_000.0);
                (d, j)
            })
            .filter(|(d, _)| *d < 2_500.0)
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (k, (_, j)) in near.iter().step_by(3).take(6).enumerate() {
            let kind = if k % 2 == 0 {
                Kind::Garage
            } else {
                Kind::OnStreet
            };
            let label = if kind == Kind::Garage {
                "garage"
            } else {
                "street berths"
            };
            add(
                &mut lots,
                *j,
                kind,
                format!("{short} {label} {}", k + 1),
                rng,
            );
        }
    }
    for k in 0..20 {
        let at = rng.below(n as u64) as usize;
        let kind = if k % 3 == 0 {
            Kind::OnStreet
        } else {
            Kind::Garage
        };
        let label = if kind == Kind::Garage {
            "Garage"
        } else {
            "Street berths"
        };
        add(&mut lots, at, kind, format!("{label} {}", k + 1), rng);
    }
    lots
}

/// Arrival time in seconds after local midnight for a lot of this kind.
fn arrival_secs(kind: Kind, rng: &mut Rng) -> f64 {
    let u = rng.f64();
    let hour = match kind {
        // Hospitals: a steep morning (clinics open at 08:00), a smaller afternoon.
        Kind::HospitalPool => {
            if u < 0.6 {
                8.5 + rng.normal() * 1.0
            } else {
                14.0 + rng.normal() * 1.5
            }
        }
        _ => {
            if u < 0.35 {
                8.5 + rng.normal() * 1.2
            } else if u < 0.6 {
                18.5 + rng.normal() * 1.5
            } else {
                7.0 + rng.f64() * 15.0
            }
        }
    };
    hour.clamp(0.0, 23.99) * 3600.0
}

fn plate(rng: &mut Rng, prefix: &str) -> String {
    const LETTERS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut p = String::from(prefix);
    for k in 0..5 {
        let c = if k < 1 || rng.f64() < 0.3 {
            LETTERS[rng.below(LETTERS.len() as u64) as usize] as char
        } else {
            char::from(b'0' + rng.below(10) as u8)
        };
        p.push(c);
    }
    p
}

/// Writes `parking_lots.ndjson`, `parking_gate_events.ndjson` and
/// `parking_sensor_events.ndjson` for the day starting at `day_start_utc` (seconds).
pub fn generate(
    network: &Network,
    seed: u64,
    scale: f64,
    day_start_utc: i64,
    local_prefix: &str,
    out: &Path,
) -> std::io::Result<ParkingTruth> {
    let mut rng = Rng::new(seed ^ 0x5041_524b);
    let lots = plan(network, &mut rng);
    let mut truth = ParkingTruth {
        lots: lots.len() as u64,
        ..ParkingTruth::default()
    };
    let mut w = BufWriter::new(fs::File::create(out.join("parking_lots.ndjson"))?);
    for lot in &lots {
        let kind = match lot.kind {
            Kind::OnStreet => "on_street",
            Kind::Garage => "garage",
            Kind::HospitalPool => "hospital_pool",
        };
        truth.berths += u64::from(lot.capacity);
        writeln!(
            w,
            "{{\"lot_id\":{},\"name\":{:?},\"loc\":{{\"lon\":{:.6},\"lat\":{:.6}}},\"capacity\":{},\"kind\":\"{kind}\",\"district\":\"{}\",{}}}",
            lot.id,
            lot.name,
            lot.lon,
            lot.lat,
            lot.capacity,
            lot.district,
            tariff_fields(lot.kind)
        )?;
    }
    w.flush()?;

    // (ts µs, line) per file, sorted at the end.
    let mut gates: Vec<(i64, String)> = Vec::new();
    let mut sensors: Vec<(i64, String)> = Vec::new();
    let at = |secs: f64| (day_start_utc as f64 * 1e6 + secs * 1e6) as i64;
    for lot in &lots {
        let wanted = (f64::from(lot.capacity) * lot.turnover * scale.max(0.05)).round() as u64;
        let mut arrivals: Vec<f64> = (0..wanted)
            .map(|_| arrival_secs(lot.kind, &mut rng))
            .collect();
        arrivals.sort_by(f64::total_cmp);
        // Departure times of the cars inside, and which berths are free (sensor lots).
        let mut inside: Vec<(f64, u32)> = Vec::new();
        let mut free_spots: Vec<u32> = (0..lot.capacity).rev().collect();
        for t in arrivals {
            // Cars that have left by now free their berths.
            inside.retain(|&(leave, spot)| {
                if leave <= t {
                    free_spots.push(spot);
                    false
                } else {
                    true
                }
            });
            let Some(spot) = free_spots.pop() else {
                truth.turned_away += 1;
                continue;
            };
            truth.stays += 1;
            let stay = lot.stay_min * 60.0 * (0.6 * rng.normal()).exp();
            let leave = t + stay.max(120.0);
            inside.push((leave, spot));
            let car = plate(&mut rng, local_prefix);
            let ends = leave < 86_400.0;
            if lot.kind == Kind::OnStreet {
                let spot_id = format!("urn:ngsi-ld:ParkingSpot:{}:{spot:03}", lot.id);
                sensors.push((at(t), format!(
                    "{{\"ts\":\"{}\",\"lot_id\":{},\"spot\":\"{spot_id}\",\"status\":\"occupied\"}}",
                    Timestamp(at(t)), lot.id
                )));
                if ends {
                    sensors.push((at(leave), format!(
                        "{{\"ts\":\"{}\",\"lot_id\":{},\"spot\":\"{spot_id}\",\"status\":\"free\"}}",
                        Timestamp(at(leave)), lot.id
                    )));
                }
                continue;
            }
            let gate = |secs: f64, direction: &str| {
                (
                    at(secs),
                    format!(
                        "{{\"ts\":\"{}\",\"lot_id\":{},\"plate\":\"{car}\",\"direction\":\"{direction}\"}}",
                        Timestamp(at(secs)),
                        lot.id
                    ),
                )
            };
            let (mut entry_read, mut exit_read) = (true, ends);
            if rng.f64() < 0.004 {
                entry_read = false;
                truth.missed_entries += 1;
            }
            if ends && rng.f64() < 0.006 {
                exit_read = false;
                truth.missed_exits += 1;
            }
            if entry_read {
                gates.push(gate(t, "in"));
                if rng.f64() < 0.01 {
                    gates.push(gate(t + 2.0 + rng.f64() * 20.0, "in"));
                    truth.duplicate_reads += 1;
                }
            }
            if exit_read {
                gates.push(gate(leave, "out"));
                if rng.f64() < 0.01 {
                    gates.push(gate(leave + 2.0 + rng.f64() * 20.0, "out"));
                    truth.duplicate_reads += 1;
                }
            }
            if entry_read && exit_read {
                truth.clean_stays_ended += 1;
            }
            if entry_read && !exit_read {
                truth.open_without_exit += 1;
            }
        }
    }
    for (name, mut lines, count) in [
        ("parking_gate_events.ndjson", gates, &mut truth.gate_events),
        (
            "parking_sensor_events.ndjson",
            sensors,
            &mut truth.sensor_events,
        ),
    ] {
        lines.sort_by_key(|(ts, _)| *ts);
        *count = lines.len() as u64;
        let mut w = BufWriter::new(fs::File::create(out.join(name))?);
        for (_, line) in &lines {
            writeln!(w, "{line}")?;
        }
        w.flush()?;
    }
    Ok(truth)
}
