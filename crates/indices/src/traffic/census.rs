//! The vehicle census: distinct corroborated plates per local day and hour, and the census
//! of the day so far at every on-road instant.

use citybrain_core::{Date, Timestamp};
use serde::Serialize;

use super::{SECOND, TrafficIndices};

/// Distinct vehicles in one local day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CensusDay {
    /// Local date, `YYYY-MM-DD`.
    #[serde(with = "citybrain_core::time::date_as_text")]
    pub day: Date,
    /// Corroborated plates: seen in at least `corroboration` passages.
    pub vehicles: u64,
    pub local: u64,
    pub non_local: u64,
    /// Every distinct plate read, misreads included (the naive count).
    pub plates_read: u64,
}

/// Distinct corroborated vehicles seen in one hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CensusHour {
    #[serde(with = "citybrain_core::time::as_text")]
    pub hour: Timestamp,
    pub vehicles: u64,
    pub local: u64,
    pub non_local: u64,
}

/// The census of a day so far: vehicles corroborated in the local day `day` before the
/// instant `at` (every on-road instant, city-wide). What "vehicles in the city today" read at
/// `at`; the day's row in `census_daily` is the last word once the day closes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CensusSoFar {
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
    /// The local date of `at`, `YYYY-MM-DD`.
    #[serde(with = "citybrain_core::time::date_as_text")]
    pub day: Date,
    pub vehicles: u64,
    pub local: u64,
    pub non_local: u64,
}

/// Corroborated vehicles, and how many of them local.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    pub(super) vehicles: u64,
    pub(super) local: u64,
}

#[derive(Debug, Default)]
pub(super) struct DayCensus {
    pub(super) vehicles: u64,
    pub(super) local: u64,
    pub(super) plates_read: u64,
    pub(super) hours: [u64; 24],
    pub(super) hours_local: [u64; 24],
}

impl TrafficIndices {
    /// The census so far at instant `t`: folds the corroborations of passages before `t`.
    pub(super) fn emit_census_so_far(&mut self, t: i64) {
        let step = self.config.on_road_step_s * SECOND;
        let rest = self.corroborated.split_off(&t.div_euclid(step));
        for (bucket, tally) in std::mem::replace(&mut self.corroborated, rest) {
            let day = self.local_day(bucket * step);
            if day != self.so_far.0 {
                self.so_far = (day, Tally::default());
            }
            self.so_far.1.vehicles += tally.vehicles;
            self.so_far.1.local += tally.local;
        }
        let day = self.local_day(t);
        let Tally { vehicles, local } = if day == self.so_far.0 {
            self.so_far.1
        } else {
            Tally::default()
        };
        self.out.census_so_far.push(CensusSoFar {
            at: Timestamp(t),
            day: Date(day as i32),
            vehicles,
            local,
            non_local: vehicles - local,
        });
    }

    pub(super) fn close_day(&mut self, day: i64, now: i64) {
        let Some(c) = self.days.remove(&day) else {
            return;
        };
        self.out.census_days.push(CensusDay {
            day: Date(day as i32),
            vehicles: c.vehicles,
            local: c.local,
            non_local: c.vehicles - c.local,
            plates_read: c.plates_read,
        });
        // By local wall-clock hour: the hour clocks skip has no row, and the hour they repeat
        // is one row (at its first start) counting both.
        for h in 0..24 {
            let Some(hour) = self.config.zone.hour_start(Date(day as i32), h as u32) else {
                continue;
            };
            self.out.census_hours.push(CensusHour {
                hour,
                vehicles: c.hours[h],
                local: c.hours_local[h],
                non_local: c.hours[h] - c.hours_local[h],
            });
        }
        // Forget plates whose last passage can matter to no open window (on the road, link
        // travel): that bounds memory to about a day's vehicles.
        let horizon = now - (self.config.on_road_window_s * SECOND).max(self.max_travel);
        self.plates.retain(|s| s.last_ts > horizon);
    }
}
