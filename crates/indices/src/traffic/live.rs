//! The live view: the state of the stream right now, before windows close, with records
//! still held for the lateness counted as if applied.

use citybrain_core::Timestamp;
use serde::Serialize;

use super::{Counters, SECOND, TrafficIndices};
use crate::plate::{FastMap, PlateKey};

/// The state of the stream right now, before windows close: for live displays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Live {
    /// The newest record's time (the stream's "now").
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
    /// Vehicles with a passage in the on-road window before `at` (provisional: records within
    /// the lateness may still arrive).
    pub on_road: u64,
    /// Corroborated vehicles so far in the current local day.
    pub vehicles_today: u64,
    pub counters: Counters,
}

impl TrafficIndices {
    /// The live view: vehicles on the road and today's census so far, provisional: records
    /// still held for the lateness are counted as if applied, so an ingested record shows at
    /// once rather than a lateness later.
    pub fn live(&self) -> Live {
        let step = self.config.on_road_step_s * SECOND;
        let now = self.newest.max(0);
        let from = (now - self.config.on_road_window_s * SECOND).div_euclid(step);
        let mut on_road: i64 = self
            .buckets
            .range(from..)
            .map(|(_, counts)| counts.iter().sum::<i64>())
            .sum();
        let today = self.local_day(now);
        let corroboration = self.config.corroboration.clamp(1, 255);
        let mut vehicles = self.days.get(&today).map_or(0, |d| d.vehicles);
        // Held records: (passages, whether one falls in the on-road window) per plate.
        let mut held: FastMap<PlateKey, (u32, bool)> = FastMap::default();
        for r in &self.buffer {
            let e = held.entry(r.plate).or_default();
            e.0 += 1;
            e.1 |= r.ts >= from * step;
        }
        for (plate, (n, in_window)) in held {
            let (counted, passages) = match self.plates.get(plate) {
                Some(s) if s.last_ts != i64::MIN => (
                    s.last_ts.div_euclid(step) >= from,
                    if self.local_day(s.last_ts) == today {
                        s.passages()
                    } else {
                        0
                    },
                ),
                _ => (false, 0),
            };
            on_road += i64::from(in_window && !counted);
            if passages < corroboration && passages + n >= corroboration {
                vehicles += 1;
            }
        }
        Live {
            at: Timestamp(now),
            on_road: on_road.max(0) as u64,
            vehicles_today: vehicles,
            counters: self.counters,
        }
    }
}
