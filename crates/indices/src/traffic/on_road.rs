//! Vehicles on the road (在途量): each plate counted in the on-road bucket and district of
//! its last passage, summed over the window before every instant.

use citybrain_core::Timestamp;
use serde::Serialize;

use super::{CITY, SECOND, TrafficIndices};

/// Vehicles on the road at an instant, city-wide (`district` = `city`) or per district.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnRoad {
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
    pub district: String,
    pub vehicles: u64,
}

impl TrafficIndices {
    /// When `emit_on_road_until` next has an instant to emit (there being a bucket).
    pub(super) fn next_on_road_instant(&self) -> i64 {
        let step = self.config.on_road_step_s * SECOND;
        self.next_instant.unwrap_or_else(|| {
            let first = self
                .buckets
                .keys()
                .next()
                .copied()
                .unwrap_or(i64::MAX / step - 1);
            (first + 1) * step
        })
    }

    /// Emits on-road rows for every instant up to and including `now`.
    pub(super) fn emit_on_road_until(&mut self, now: i64) {
        let step = self.config.on_road_step_s * SECOND;
        let window = self.config.on_road_window_s * SECOND;
        let Some(first) = self.buckets.keys().next().copied() else {
            return;
        };
        let mut t = self.next_instant.unwrap_or_else(|| (first + 1) * step);
        while t <= now {
            let from = (t - window).div_euclid(step);
            let to = t.div_euclid(step); // exclusive
            let mut per_district = vec![0i64; self.district_names.len()];
            for (_, counts) in self.buckets.range(from..to) {
                for (d, n) in counts.iter().enumerate() {
                    per_district[d] += n;
                }
            }
            let at = Timestamp(t);
            self.out.on_road.push(OnRoad {
                at,
                district: CITY.to_string(),
                vehicles: per_district.iter().sum::<i64>().max(0) as u64,
            });
            for (d, name) in self.district_names.iter().enumerate().skip(1) {
                self.out.on_road.push(OnRoad {
                    at,
                    district: name.clone(),
                    vehicles: per_district[d].max(0) as u64,
                });
            }
            self.emit_census_so_far(t);
            // Buckets before the next window can go.
            let keep_from = (t + step - window).div_euclid(step);
            self.buckets = self.buckets.split_off(&keep_from);
            t += step;
        }
        self.next_instant = Some(t);
    }
}
