//! Tariffs: what a stay costs, to the fen.
//!
//! The rules, as a lot's sign would state them:
//! - a stay of at most `free_minutes` is free; a longer stay is charged from its start;
//! - the stay is cut into units of `unit_minutes` from the entry time, and a started unit is
//!   charged whole;
//! - a unit costs the day or the night price by the local time at which it starts;
//! - the units that start on one local calendar day cost at most `daily_cap` together (the
//!   cap starts again at midnight).
//!
//! Every amount is integer fen; there is no floating point anywhere on the way to a bill.

use citybrain_core::{Fen, TimeZone, Timestamp};
use serde::{Deserialize, Serialize};

const MICROS_PER_MINUTE: i64 = 60_000_000;
const MINUTES_PER_DAY: i64 = 24 * 60;

/// Why a stay could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TariffError {
    #[error("the exit ({exit}) is before the entry ({entry})")]
    ExitBeforeEntry { entry: Timestamp, exit: Timestamp },
    #[error("tariff {0}: unit_minutes must be at least 1")]
    ZeroUnit(String),
    #[error("tariff {0}: the day period must lie within 00:00..24:00 and start before it ends")]
    BadPeriod(String),
    #[error("tariff {0}: prices and caps must not be negative")]
    Negative(String),
}

/// A lot's price list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariff {
    pub id: String,
    /// A stay this long or shorter is free.
    pub free_minutes: u32,
    /// The billing unit; a started unit is charged whole.
    pub unit_minutes: u32,
    /// The price of a unit that starts in the day period.
    pub day_unit: Fen,
    /// The price of a unit that starts outside it.
    pub night_unit: Fen,
    /// The day period in minutes after local midnight, `[start, end)`.
    pub day_start_min: u32,
    pub day_end_min: u32,
    /// The most the units starting on one local calendar day cost together.
    pub daily_cap: Option<Fen>,
    /// The zone of the local times above (the city profile's).
    pub zone: TimeZone,
}

/// The price of one stay, with how it came about (for the bill and for disputes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub total: Fen,
    pub minutes: i64,
    /// The stay was within the free minutes.
    pub free: bool,
    pub day_units: u32,
    pub night_units: u32,
    /// Local days on which the cap applied.
    pub capped_days: u32,
}

impl Tariff {
    /// A common city-centre tariff: 15 free minutes, 30-minute units at 5 yuan by day
    /// (07:00–21:00) and 1 yuan by night, at most 60 yuan a day.
    pub fn city_centre() -> Self {
        Self {
            id: "city_centre".into(),
            free_minutes: 15,
            unit_minutes: 30,
            day_unit: Fen(500),
            night_unit: Fen(100),
            day_start_min: 7 * 60,
            day_end_min: 21 * 60,
            daily_cap: Some(Fen(6_000)),
            zone: TimeZone::fixed(8 * 3600),
        }
    }

    pub fn validate(&self) -> Result<(), TariffError> {
        if self.unit_minutes == 0 {
            return Err(TariffError::ZeroUnit(self.id.clone()));
        }
        if self.day_start_min > self.day_end_min || self.day_end_min > MINUTES_PER_DAY as u32 {
            return Err(TariffError::BadPeriod(self.id.clone()));
        }
        if self.day_unit.0 < 0 || self.night_unit.0 < 0 || self.daily_cap.is_some_and(|c| c.0 < 0) {
            return Err(TariffError::Negative(self.id.clone()));
        }
        Ok(())
    }

    /// Local minutes since the epoch of a UTC timestamp.
    fn local_minute(&self, at_micros: i64) -> i64 {
        let offset = self.zone.offset_s(at_micros.div_euclid(1_000_000));
        (at_micros + i64::from(offset) * 1_000_000).div_euclid(MICROS_PER_MINUTE)
    }

    /// What a stay from `entry` to `exit` costs.
    pub fn price(&self, entry: Timestamp, exit: Timestamp) -> Result<Charge, TariffError> {
        self.validate()?;
        if exit < entry {
            return Err(TariffError::ExitBeforeEntry { entry, exit });
        }
        let span = exit.0 - entry.0;
        // Whole minutes, a started minute counting: 15 min 00 s is 15, 15 min 01 s is 16.
        let minutes = (span + MICROS_PER_MINUTE - 1) / MICROS_PER_MINUTE;
        let mut charge = Charge {
            total: Fen(0),
            minutes,
            free: minutes <= i64::from(self.free_minutes),
            day_units: 0,
            night_units: 0,
            capped_days: 0,
        };
        if charge.free {
            return Ok(charge);
        }
        let unit = i64::from(self.unit_minutes) * MICROS_PER_MINUTE;
        let units = (span + unit - 1) / unit;
        let mut day: Option<i64> = None;
        let mut day_sum = 0i64;
        let close_day = |sum: i64, charge: &mut Charge| {
            let capped = match self.daily_cap {
                Some(cap) if sum > cap.0 => {
                    charge.capped_days += 1;
                    cap.0
                }
                _ => sum,
            };
            charge.total = Fen(charge.total.0 + capped);
        };
        for k in 0..units {
            let start = self.local_minute(entry.0 + k * unit);
            let (this_day, minute_of_day) = (
                start.div_euclid(MINUTES_PER_DAY),
                start.rem_euclid(MINUTES_PER_DAY),
            );
            if day != Some(this_day) {
                if day.is_some() {
                    close_day(day_sum, &mut charge);
                }
                day = Some(this_day);
                day_sum = 0;
            }
            let in_day = (i64::from(self.day_start_min)..i64::from(self.day_end_min))
                .contains(&minute_of_day);
            if in_day {
                charge.day_units += 1;
                day_sum += self.day_unit.0;
            } else {
                charge.night_units += 1;
                day_sum += self.night_unit.0;
            }
        }
        if day.is_some() {
            close_day(day_sum, &mut charge);
        }
        Ok(charge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn price(entry: &str, exit: &str) -> Charge {
        Tariff::city_centre().price(at(entry), at(exit)).unwrap()
    }

    #[test]
    fn free_minutes_are_free_and_one_more_minute_charges_from_the_start() {
        let c = price("2026-11-22T10:00:00+08:00", "2026-11-22T10:15:00+08:00");
        assert!(c.free);
        assert_eq!(c.total, Fen(0));
        // 15 min 1 s is a started 16th minute: the whole stay is charged, one unit.
        let c = price("2026-11-22T10:00:00+08:00", "2026-11-22T10:15:01+08:00");
        assert!(!c.free);
        assert_eq!((c.total, c.day_units), (Fen(500), 1));
        let c = price("2026-11-22T10:00:00+08:00", "2026-11-22T10:30:00+08:00");
        assert_eq!(c.total, Fen(500));
        let c = price("2026-11-22T10:00:00+08:00", "2026-11-22T10:30:01+08:00");
        assert_eq!(c.total, Fen(1000));
    }

    #[test]
    fn a_unit_costs_the_price_of_the_period_it_starts_in() {
        // 20:45 → 21:45: the 20:45 unit is a day unit, the 21:15 one a night unit.
        let c = price("2026-11-22T20:45:00+08:00", "2026-11-22T21:45:00+08:00");
        assert_eq!((c.day_units, c.night_units, c.total), (1, 1, Fen(600)));
        // 06:50 → 07:30: the 06:50 unit is night, the 07:20 one day.
        let c = price("2026-11-22T06:50:00+08:00", "2026-11-22T07:30:00+08:00");
        assert_eq!((c.day_units, c.night_units, c.total), (1, 1, Fen(600)));
    }

    #[test]
    fn the_daily_cap_applies_per_local_day_and_starts_again_at_midnight() {
        // 08:00 → 20:00 is 24 day units = 120 yuan, capped at 60.
        let c = price("2026-11-22T08:00:00+08:00", "2026-11-22T20:00:00+08:00");
        assert_eq!((c.total, c.capped_days), (Fen(6_000), 1));
        // 08:00 day one → 10:00 day two: day one capped at 60 (26 day units + 6 night units
        // = 136 yuan), day two 14 night units (00:00–07:00) + 6 day units = 14 + 30 = 44.
        let c = price("2026-11-22T08:00:00+08:00", "2026-11-23T10:00:00+08:00");
        assert_eq!(c.capped_days, 1);
        assert_eq!(c.total, Fen(6_000 + 1_400 + 3_000));
        // A stay across midnight only: 23:00 → 01:00 is 4 night units, on two days.
        let c = price("2026-11-22T23:00:00+08:00", "2026-11-23T01:00:00+08:00");
        assert_eq!((c.night_units, c.total, c.capped_days), (4, Fen(400), 0));
    }

    #[test]
    fn midnight_is_local_midnight_not_utc() {
        // 15:50 UTC is 23:50 in Hangzhou; the unit from 00:20 local belongs to the next day.
        let tariff = Tariff {
            daily_cap: Some(Fen(100)),
            ..Tariff::city_centre()
        };
        let c = tariff
            .price(at("2026-11-22T15:50:00Z"), at("2026-11-22T16:50:00Z"))
            .unwrap();
        // Two night units, each on its own local day, each under the 1-yuan cap.
        assert_eq!((c.night_units, c.total, c.capped_days), (2, Fen(200), 0));
    }

    #[test]
    fn nonsense_is_refused() {
        let t = Tariff::city_centre();
        assert!(matches!(
            t.price(at("2026-11-22T10:00:00Z"), at("2026-11-22T09:00:00Z")),
            Err(TariffError::ExitBeforeEntry { .. })
        ));
        let zero = Tariff {
            unit_minutes: 0,
            ..t.clone()
        };
        assert!(zero.validate().is_err());
        let backwards = Tariff {
            day_start_min: 22 * 60,
            day_end_min: 7 * 60,
            ..t
        };
        assert!(backwards.validate().is_err());
    }
}
