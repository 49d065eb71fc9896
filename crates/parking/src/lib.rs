//! The parking scene's core (no I/O): lots and their live occupancy from berth sensors and
//! gate cameras, the parking index (停车指数) and berth index (泊位指数) every 5 minutes,
//! forecasts of free berths, guidance to the lot most likely to have one, and leave-first-
//! pay-later sessions and bills.
//!
//! Time is the data's time: [`Parking::advance`] closes 5-minute instants as events pass
//! them, so a recorded day replays the same way as a live one.

pub mod forecast;
pub mod sensors;
pub mod sessions;
pub mod tariff;

use std::collections::{BTreeMap, HashMap};

use citybrain_core::{Fen, GeoPoint, TimeZone, Timestamp};
use serde::{Deserialize, Serialize};

/// The scene's own datasets (outputs), created by `citybrain up`.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "parking.index.toml",
        include_str!("../definitions/parking.index.toml"),
    ),
    (
        "parking.bills.toml",
        include_str!("../definitions/parking.bills.toml"),
    ),
    (
        "parking.anomalies.toml",
        include_str!("../definitions/parking.anomalies.toml"),
    ),
    (
        "parking.payments.toml",
        include_str!("../definitions/parking.payments.toml"),
    ),
];

pub use forecast::{Evaluation, Forecaster, chance_of_a_berth, evaluate};
pub use sensors::{SensorError, SensorReading, parse_fiware};
pub use sessions::{
    Anomaly, AnomalyKind, Bill, BillId, Direction, GateEvent, SessionConfig, SessionOutputs,
    Sessions, overdue,
};
pub use tariff::{Charge, Tariff, TariffError};

const MICROS: i64 = 1_000_000;
const INSTANT: i64 = 5 * 60 * MICROS;
const SLOT: i64 = 15 * 60 * MICROS;
/// Walking distance from a straight line: city blocks make a walk about 1.3 times longer.
pub const WALK_FACTOR: f64 = 1.3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LotId(pub u32);

impl std::fmt::Display for LotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LotKind {
    OnStreet,
    Garage,
    /// Berths pooled around a hospital and guided to together.
    HospitalPool,
}

/// A car park or a stretch of on-street berths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lot {
    pub id: LotId,
    pub name: String,
    pub loc: GeoPoint,
    pub capacity: u32,
    pub kind: LotKind,
    pub district: String,
    pub tariff: Tariff,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParkingError {
    #[error("lot {0} is not known (add it to parking.lots first)")]
    UnknownLot(LotId),
    #[error("lot {0}: {1}")]
    BadLot(LotId, String),
}

/// The indices at one 5-minute instant for one lot, district or the city.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkingIndexRow {
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
    /// `lot`, `district` or `city`.
    pub scope: String,
    pub id: String,
    pub occupied: u32,
    pub capacity: u32,
    /// Occupied berths / capacity.
    pub parking_index: f64,
    pub free: u32,
    /// Arrivals expected in the next 30 minutes (the lot's profile of arrivals).
    pub expected_arrivals: f64,
    /// Free berths / expected arrivals in the next 30 minutes (at least one arrival).
    pub berth_index: f64,
}

/// Where the live state of a lot comes from.
#[derive(Debug, Clone, Default)]
struct LotState {
    /// Berth sensors: spot → occupied.
    spots: HashMap<String, bool>,
    /// A lot-level count (OffStreetParking `availableSpotNumber`).
    lot_free: Option<u32>,
    forecaster: Option<Forecaster>,
    /// Mean arrivals per 15-minute slot of the day, and this slot's count so far.
    arrivals: Vec<Option<f64>>,
    arrivals_now: u32,
}

/// What the scene produced since it was last asked.
#[derive(Debug, Default, Clone)]
pub struct ParkingOutputs {
    pub index: Vec<ParkingIndexRow>,
    pub bills: Vec<Bill>,
    pub anomalies: Vec<Anomaly>,
}

/// A guidance request: where the driver is going and when they arrive.
#[derive(Debug, Clone, Copy)]
pub struct GuideQuery {
    pub at: GeoPoint,
    pub radius_m: f64,
    pub arrive_in_min: u32,
    pub limit: usize,
}

/// One lot in a guidance answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuideEntry {
    pub lot: LotId,
    pub name: String,
    pub kind: LotKind,
    pub loc: GeoPoint,
    pub distance_m: f64,
    /// Estimated walk from the lot to the place ([`WALK_FACTOR`] × straight line).
    pub walk_m: f64,
    pub capacity: u32,
    pub free_now: u32,
    pub predicted_free: f64,
    /// The chance of at least one free berth on arrival.
    pub chance: f64,
    /// What two hours from the arrival would cost.
    pub price_2h: Fen,
}

/// Every lot's live state, indices, forecasts, guidance and sessions.
#[derive(Debug)]
pub struct Parking {
    lots: Vec<Lot>,
    by_id: HashMap<LotId, usize>,
    states: Vec<LotState>,
    sessions: Sessions,
    zone: TimeZone,
    newest: i64,
    next_instant: Option<i64>,
    next_slot: Option<i64>,
    index: Vec<ParkingIndexRow>,
}

fn local_slot(at: i64, zone: &TimeZone) -> i64 {
    (at + i64::from(zone.offset_s(at.div_euclid(MICROS))) * MICROS).div_euclid(SLOT)
}

impl Parking {
    pub fn new(lots: Vec<Lot>, config: SessionConfig) -> Result<Self, ParkingError> {
        let mut by_id = HashMap::new();
        for (i, lot) in lots.iter().enumerate() {
            lot.tariff
                .validate()
                .map_err(|e| ParkingError::BadLot(lot.id, e.to_string()))?;
            if by_id.insert(lot.id, i).is_some() {
                return Err(ParkingError::BadLot(lot.id, "listed twice".into()));
            }
        }
        let tariffs = lots.iter().map(|l| (l.id, l.tariff.clone())).collect();
        let zone = lots
            .first()
            .map_or_else(|| TimeZone::fixed(8 * 3600), |l| l.tariff.zone.clone());
        let states = lots
            .iter()
            .map(|l| LotState {
                forecaster: Some(Forecaster::new(l.capacity)),
                arrivals: vec![None; forecast::SLOTS_PER_DAY as usize],
                ..LotState::default()
            })
            .collect();
        Ok(Self {
            lots,
            by_id,
            states,
            sessions: Sessions::new(config, tariffs),
            zone,
            newest: i64::MIN,
            next_instant: None,
            next_slot: None,
            index: Vec::new(),
        })
    }

    pub fn lots(&self) -> &[Lot] {
        &self.lots
    }

    fn slot_of(&self, lot: LotId) -> Result<usize, ParkingError> {
        self.by_id
            .get(&lot)
            .copied()
            .ok_or(ParkingError::UnknownLot(lot))
    }

    /// Occupied berths now: a lot-level count if the lot sends one, else its berth sensors,
    /// else the cars inside by its gates.
    pub fn occupied(&self, lot: LotId) -> Option<u32> {
        let i = *self.by_id.get(&lot)?;
        let (l, s) = (&self.lots[i], &self.states[i]);
        let occupied = if let Some(free) = s.lot_free {
            l.capacity.saturating_sub(free)
        } else if !s.spots.is_empty() {
            s.spots.values().filter(|o| **o).count() as u32
        } else {
            self.sessions.inside(lot)
        };
        Some(occupied.min(l.capacity))
    }

    pub fn push_gate(&mut self, event: GateEvent) -> Result<(), ParkingError> {
        let i = self.slot_of(event.lot)?;
        let ts = event.ts.0;
        self.advance(ts);
        if event.direction == Direction::In {
            self.states[i].arrivals_now += 1;
        }
        self.sessions.push(event);
        Ok(())
    }

    pub fn push_sensor(&mut self, reading: SensorReading) -> Result<(), ParkingError> {
        let (lot, ts) = (reading.lot(), reading.ts());
        let i = self.slot_of(lot)?;
        self.advance(ts.0);
        let state = &mut self.states[i];
        match reading {
            SensorReading::Spot { spot, occupied, .. } => match occupied {
                Some(now) => {
                    let before = state.spots.insert(spot, now);
                    if now && before != Some(true) {
                        state.arrivals_now += 1;
                    }
                }
                None => {
                    state.spots.remove(&spot);
                }
            },
            SensorReading::Lot { free, .. } => {
                if let Some(before) = state.lot_free
                    && free < before
                {
                    state.arrivals_now += before - free;
                }
                state.lot_free = Some(free);
            }
        }
        Ok(())
    }

    /// The scene's clock: the newest read's time (µs), `i64::MIN` before any.
    pub fn clock(&self) -> i64 {
        self.newest
    }

    /// Moves the scene's clock to `now` (the newest event's time): emits the 5-minute
    /// instants it passes and, every 15 minutes, teaches each lot's forecaster.
    pub fn advance(&mut self, now: i64) {
        if now <= self.newest {
            return;
        }
        self.newest = now;
        let first_instant = *self
            .next_instant
            .get_or_insert((now.div_euclid(INSTANT) + 1) * INSTANT);
        let first_slot = *self
            .next_slot
            .get_or_insert((now.div_euclid(SLOT) + 1) * SLOT);
        let (mut instant, mut slot) = (first_instant, first_slot);
        while instant <= now || slot <= now {
            if slot <= instant && slot <= now {
                self.close_slot(slot);
                slot += SLOT;
            } else {
                self.emit_instant(instant);
                instant += INSTANT;
            }
        }
        self.next_instant = Some(instant);
        self.next_slot = Some(slot);
    }

    fn close_slot(&mut self, end: i64) {
        let finished = local_slot(end - SLOT, &self.zone);
        for i in 0..self.lots.len() {
            let id = self.lots[i].id;
            let free = self.lots[i]
                .capacity
                .saturating_sub(self.occupied(id).unwrap_or(0));
            let state = &mut self.states[i];
            let k = finished.rem_euclid(forecast::SLOTS_PER_DAY) as usize;
            let n = f64::from(std::mem::take(&mut state.arrivals_now));
            state.arrivals[k] = Some(match state.arrivals[k] {
                None => n,
                Some(mean) => mean + 0.2 * (n - mean),
            });
            if let Some(f) = state.forecaster.as_mut() {
                f.observe(finished + 1, f64::from(free));
            }
        }
    }

    fn expected_arrivals(&self, i: usize, at: i64) -> f64 {
        let slot = local_slot(at, &self.zone);
        (0..2)
            .map(|k| {
                let s = (slot + k).rem_euclid(forecast::SLOTS_PER_DAY) as usize;
                self.states[i].arrivals[s].unwrap_or(0.0)
            })
            .sum()
    }

    fn emit_instant(&mut self, at: i64) {
        let stamp = Timestamp(at);
        let mut districts: BTreeMap<String, (u32, u32, f64)> = BTreeMap::new();
        let mut city = (0u32, 0u32, 0.0f64);
        let row = |scope: &str, id: String, occupied: u32, capacity: u32, expected: f64| {
            let free = capacity.saturating_sub(occupied);
            ParkingIndexRow {
                at: stamp,
                scope: scope.into(),
                id,
                occupied,
                capacity,
                parking_index: if capacity == 0 {
                    0.0
                } else {
                    f64::from(occupied) / f64::from(capacity)
                },
                free,
                expected_arrivals: expected,
                berth_index: f64::from(free) / expected.max(1.0),
            }
        };
        for i in 0..self.lots.len() {
            let lot = &self.lots[i];
            let occupied = self.occupied(lot.id).unwrap_or(0);
            let expected = self.expected_arrivals(i, at);
            let d = districts.entry(lot.district.clone()).or_default();
            *d = (d.0 + occupied, d.1 + lot.capacity, d.2 + expected);
            city = (city.0 + occupied, city.1 + lot.capacity, city.2 + expected);
            self.index.push(row(
                "lot",
                lot.id.to_string(),
                occupied,
                lot.capacity,
                expected,
            ));
        }
        for (name, (occupied, capacity, expected)) in districts {
            self.index
                .push(row("district", name, occupied, capacity, expected));
        }
        self.index
            .push(row("city", "city".into(), city.0, city.1, city.2));
    }

    /// Applies every held gate event (the end of a recorded day).
    pub fn flush(&mut self) {
        self.sessions.flush();
    }

    pub fn take(&mut self) -> ParkingOutputs {
        let sessions = self.sessions.take();
        ParkingOutputs {
            index: std::mem::take(&mut self.index),
            bills: sessions.bills,
            anomalies: sessions.anomalies,
        }
    }

    /// Lots within the radius, most likely to have a free berth on arrival first, then the
    /// shorter walk, then the lower price.
    pub fn guide(&self, query: &GuideQuery) -> Vec<GuideEntry> {
        let arrival = Timestamp(self.newest.max(0) + i64::from(query.arrive_in_min) * 60 * MICROS);
        let two_hours = Timestamp(arrival.0 + 2 * 3600 * MICROS);
        let mut out: Vec<GuideEntry> = Vec::new();
        // A box around the circle first: a comparison per lot instead of a haversine.
        let dlat = query.radius_m / 110_574.0 * 1.01;
        let dlon = query.radius_m / (111_320.0 * query.at.lat.to_radians().cos().max(0.01)) * 1.01;
        for (i, lot) in self.lots.iter().enumerate() {
            if (lot.loc.lat - query.at.lat).abs() > dlat
                || (lot.loc.lon - query.at.lon).abs() > dlon
            {
                continue;
            }
            let distance_m = lot.loc.distance_m(&query.at);
            if distance_m > query.radius_m {
                continue;
            }
            let free_now = lot
                .capacity
                .saturating_sub(self.occupied(lot.id).unwrap_or(0));
            let (predicted_free, sigma) = self.states[i]
                .forecaster
                .as_ref()
                .and_then(|f| f.predict(query.arrive_in_min))
                .unwrap_or((
                    f64::from(free_now),
                    (f64::from(lot.capacity) * 0.1).max(1.0),
                ));
            // The forecaster learns every 15 minutes; the count now is newer than its last
            // observation, so within the first slot it is what the driver will find.
            let predicted_free = if query.arrive_in_min < 8 {
                f64::from(free_now)
            } else {
                predicted_free
            };
            out.push(GuideEntry {
                lot: lot.id,
                name: lot.name.clone(),
                kind: lot.kind,
                loc: lot.loc,
                distance_m,
                walk_m: distance_m * WALK_FACTOR,
                capacity: lot.capacity,
                free_now,
                predicted_free,
                chance: chance_of_a_berth(predicted_free, sigma),
                price_2h: lot
                    .tariff
                    .price(arrival, two_hours)
                    .map_or(Fen(0), |c| c.total),
            });
        }
        out.sort_by(|a, b| {
            let (ca, cb) = ((a.chance * 100.0).round(), (b.chance * 100.0).round());
            cb.total_cmp(&ca)
                .then(a.walk_m.total_cmp(&b.walk_m))
                .then(a.price_2h.cmp(&b.price_2h))
        });
        out.truncate(query.limit);
        out
    }
}
