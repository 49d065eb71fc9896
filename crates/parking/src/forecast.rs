//! Free berths ahead: the lot's daily profile plus how far it is from it now.
//!
//! For a lot observed every 15 minutes (a *slot*), the forecast of free berths `h` slots
//! ahead starts from the count now and adds two corrections:
//!
//! ```text
//!   f̂(s + h) = f(s) + β_h · (p(s + h) − p(s)) − γ_h · (f(s) − p(s))
//! ```
//!
//! where `p` is the lot's profile (an exponentially weighted mean of free berths per slot of
//! the day, weekdays and weekends apart): the lot usually moves as its profile moves (β), and
//! a lot fuller or emptier than usual drifts back towards it (γ). β and γ are fitted per
//! horizon by least squares on the lot's own past, with slow forgetting so they follow a
//! changing lot; with both at zero the forecast is "same as now", which the fit can only
//! improve on the past it has seen. `σ_h` is the spread of its past errors, from which the
//! guide computes the chance of a free berth. Everything is learned
//! online, one observation at a time, so the same code runs live and in the evaluation (which
//! predicts before it learns: no look-ahead).

use serde::{Deserialize, Serialize};

/// Slots per day (15 minutes each).
pub const SLOTS_PER_DAY: i64 = 96;
/// The horizons fitted: 1 to 4 slots (15 to 60 minutes).
pub const HORIZONS: usize = 4;
/// How fast the profile follows a lot: the weight of the newest day.
const PROFILE_ALPHA: f64 = 0.2;
/// Forgetting of the φ fit per observation (a half-life of about a month of slots).
const FIT_DECAY: f64 = 0.9997;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Fit {
    /// Decayed sums of the normal equations for d = β·x1 − γ·x2 (x1 the profile's move,
    /// x2 the departure from the profile, d the change that came).
    s11: f64,
    s12: f64,
    s22: f64,
    s1d: f64,
    s2d: f64,
    /// Squared and absolute errors of the forecasts made (decayed), the absolute errors
    /// "same as now" made, and their weight.
    se: f64,
    ae: f64,
    ae_naive: f64,
    n: f64,
}

impl Fit {
    /// (β, γ), with a little ridge so a fit from few observations stays near "same as now".
    fn coefficients(&self) -> (f64, f64) {
        let ridge = 1e-3 * (self.s11 + self.s22) + 1e-6;
        let (a, b, c) = (self.s11 + ridge, self.s12, self.s22 + ridge);
        let det = a * c - b * b;
        if det.abs() < 1e-12 {
            return (0.0, 0.0);
        }
        let beta = (c * self.s1d - b * self.s2d) / det;
        let minus_gamma = (a * self.s2d - b * self.s1d) / det;
        (beta.clamp(0.0, 1.5), (-minus_gamma).clamp(0.0, 1.0))
    }

    /// Whether the model has lately done better than "same as now" at this horizon; if not,
    /// the forecast is the count now (online model selection, per lot and horizon).
    fn trusted(&self) -> bool {
        self.n > 96.0 && self.ae < self.ae_naive
    }

    fn forecast(&self, free: f64, p_now: f64, p_target: f64) -> f64 {
        if !self.trusted() {
            return free;
        }
        let (beta, gamma) = self.coefficients();
        free + beta * (p_target - p_now) - gamma * (free - p_now)
    }

    fn learn(&mut self, x1: f64, x2: f64, d: f64) {
        // The error the forecast made with the coefficients as they were.
        let (beta, gamma) = self.coefficients();
        let error = d - (beta * x1 - gamma * x2);
        let used = if self.trusted() { error } else { d };
        // Huber weights: a jump (a coach party, a sensor reset) counts like a large error,
        // not a squared one, so it does not swing the fit; the score is absolute error.
        let scale = if self.n > 10.0 {
            1.5 * self.ae / self.n
        } else {
            f64::INFINITY
        };
        let w = if error.abs() > scale {
            scale / error.abs()
        } else {
            1.0
        };
        for v in [
            &mut self.s11,
            &mut self.s12,
            &mut self.s22,
            &mut self.s1d,
            &mut self.s2d,
            &mut self.se,
            &mut self.ae,
            &mut self.ae_naive,
            &mut self.n,
        ] {
            *v *= FIT_DECAY;
        }
        self.s11 += w * x1 * x1;
        self.s12 += w * x1 * x2;
        self.s22 += w * x2 * x2;
        self.s1d += w * x1 * d;
        self.s2d += w * x2 * d;
        self.se += used * used;
        self.ae += error.abs();
        self.ae_naive += d.abs();
        self.n += 1.0;
    }
}

/// One lot's forecaster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forecaster {
    /// Profile mean and whether it has been seen, per day type (weekday, weekend) and slot.
    profile: Vec<Option<f64>>,
    /// The last observations: (slot, free berths), newest last.
    recent: Vec<(i64, f64)>,
    fits: [Fit; HORIZONS],
    capacity: f64,
}

/// Local slot index (15-minute slots since the epoch, local time) to (day type, slot of day).
fn profile_index(slot: i64) -> usize {
    let day = slot.div_euclid(SLOTS_PER_DAY);
    // 1970-01-01 was a Thursday: day 0 → weekday 3 (Monday = 0).
    let weekday = (day + 3).rem_euclid(7);
    let weekend = usize::from(weekday >= 5);
    weekend * SLOTS_PER_DAY as usize + slot.rem_euclid(SLOTS_PER_DAY) as usize
}

impl Forecaster {
    pub fn new(capacity: u32) -> Self {
        Self {
            profile: vec![None; 2 * SLOTS_PER_DAY as usize],
            recent: Vec::with_capacity(HORIZONS + 1),
            fits: [Fit::default(); HORIZONS],
            capacity: f64::from(capacity),
        }
    }

    fn profile_at(&self, slot: i64) -> Option<f64> {
        self.profile[profile_index(slot)]
    }

    fn observed_at(&self, slot: i64) -> Option<f64> {
        self.recent
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, f)| *f)
    }

    /// Learns from `free` berths observed in `slot` (slots must not go backwards; a repeat
    /// of the newest slot replaces it).
    pub fn observe(&mut self, slot: i64, free: f64) {
        if let Some((last, _)) = self.recent.last() {
            if slot < *last {
                return;
            }
            if slot == *last {
                self.recent.pop();
            }
        }
        // Fit each horizon on what a forecast made h slots ago saw (the count and profile
        // then, the profile now as it stood before this observation) and what came.
        if let Some(p_now) = self.profile_at(slot) {
            for h in 1..=HORIZONS {
                let then = slot - h as i64;
                if let (Some(f_then), Some(p_then)) =
                    (self.observed_at(then), self.profile_at(then))
                {
                    self.fits[h - 1].learn(p_now - p_then, f_then - p_then, free - f_then);
                }
            }
        }
        let cell = &mut self.profile[profile_index(slot)];
        *cell = Some(match *cell {
            None => free,
            Some(p) => p + PROFILE_ALPHA * (free - p),
        });
        self.recent.push((slot, free));
        if self.recent.len() > HORIZONS + 1 {
            self.recent.remove(0);
        }
    }

    /// Free berths expected `minutes` after the newest observation, and the spread (one
    /// standard deviation) of such forecasts so far. Without a profile for the target slot
    /// it is the newest observation ("same as now").
    pub fn predict(&self, minutes: u32) -> Option<(f64, f64)> {
        let &(slot, free) = self.recent.last()?;
        let steps = (f64::from(minutes) / 15.0).round() as i64;
        if steps == 0 {
            return Some((free, 0.5));
        }
        let target = slot + steps;
        let h = (steps as usize).min(HORIZONS);
        let fit = &self.fits[h - 1];
        let sigma = if fit.n > 1.0 {
            (fit.se / fit.n).sqrt().max(0.5)
        } else {
            (self.capacity * 0.1).max(1.0)
        };
        let (Some(p_now), Some(p_target)) = (self.profile_at(slot), self.profile_at(target)) else {
            return Some((free, sigma));
        };
        let mut mean = fit.forecast(free, p_now, p_target);
        if steps as usize > HORIZONS {
            // Beyond the fitted horizons: the profile at the target, as the departure from it
            // fades (an hour's reversion per hour).
            let (_, gamma) = if fit.trusted() {
                fit.coefficients()
            } else {
                (0.0, 0.0)
            };
            let fade = (1.0 - gamma).powf(steps as f64 / HORIZONS as f64);
            mean = p_target + fade * (free - p_now);
        }
        let mean = mean.clamp(0.0, self.capacity.max(free));
        Some((mean, sigma))
    }
}

/// The chance that at least one berth is free, given a forecast and its spread (normal).
pub fn chance_of_a_berth(mean: f64, sigma: f64) -> f64 {
    let z = (mean - 0.5) / sigma.max(1e-6);
    normal_cdf(z)
}

/// Φ(z), by Abramowitz and Stegun 7.1.26 (error below 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Mean absolute errors of a forecaster against "same as now", evaluated prequentially.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evaluation {
    pub horizons_min: Vec<u32>,
    pub forecasts: Vec<u64>,
    pub mae_model: Vec<f64>,
    pub mae_naive: Vec<f64>,
}

/// Runs one lot's series (slot, free) through a forecaster: before learning each slot, the
/// forecasts made 1, 2 and 4 slots earlier are scored against it. Slots before `score_from`
/// only train.
pub fn evaluate(series: &[(i64, f64)], capacity: u32, score_from: i64, into: &mut Evaluation) {
    const STEPS: [u32; 3] = [1, 2, 4];
    if into.horizons_min.is_empty() {
        into.horizons_min = STEPS.iter().map(|s| s * 15).collect();
        into.forecasts = vec![0; STEPS.len()];
        into.mae_model = vec![0.0; STEPS.len()];
        into.mae_naive = vec![0.0; STEPS.len()];
    }
    let mut model = Forecaster::new(capacity);
    // Forecasts waiting for their target slot: (target, step index, model, naive).
    let mut pending: Vec<(i64, usize, f64, f64)> = Vec::new();
    for &(slot, free) in series {
        pending.retain(|&(target, i, m, n)| {
            if target < slot {
                return false; // the target slot had no observation
            }
            if target == slot {
                if slot >= score_from {
                    into.forecasts[i] += 1;
                    into.mae_model[i] += (m - free).abs();
                    into.mae_naive[i] += (n - free).abs();
                }
                return false;
            }
            true
        });
        model.observe(slot, free);
        for (i, step) in STEPS.iter().enumerate() {
            if let Some((m, _)) = model.predict(step * 15) {
                pending.push((slot + i64::from(*step), i, m, free));
            }
        }
    }
}

impl Evaluation {
    /// Turns the sums into means.
    pub fn finish(&mut self) {
        for i in 0..self.forecasts.len() {
            let n = self.forecasts[i].max(1) as f64;
            self.mae_model[i] /= n;
            self.mae_naive[i] /= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lot that empties every morning and fills every evening, with noise.
    fn daily(days: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        let mut noise = 12345u64;
        for s in 0..days * SLOTS_PER_DAY {
            let hour = (s % SLOTS_PER_DAY) as f64 / 4.0;
            let base = 100.0 - 80.0 * (-((hour - 13.0) / 4.0).powi(2)).exp();
            noise = noise
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let e = ((noise >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 6.0;
            out.push((s, (base + e).clamp(0.0, 120.0)));
        }
        out
    }

    #[test]
    fn it_beats_same_as_now_on_a_daily_pattern_at_an_hour() {
        let mut e = Evaluation::default();
        evaluate(&daily(60), 120, 28 * SLOTS_PER_DAY, &mut e);
        e.finish();
        assert!(e.forecasts[2] > 1000);
        assert!(e.mae_model[2] < e.mae_naive[2] * 0.8, "{e:?}");
    }

    #[test]
    fn with_no_history_it_is_same_as_now() {
        let mut f = Forecaster::new(50);
        f.observe(10, 7.0);
        assert_eq!(f.predict(30).unwrap().0, 7.0);
        assert!(f.predict(30).unwrap().1 >= 1.0);
    }

    #[test]
    fn the_chance_of_a_berth_follows_the_forecast() {
        assert!(chance_of_a_berth(20.0, 3.0) > 0.999);
        assert!(chance_of_a_berth(0.0, 1.0) < 0.35);
        let mid = chance_of_a_berth(0.5, 2.0);
        assert!((mid - 0.5).abs() < 1e-6);
        assert!((normal_cdf(1.0) - 0.841_344_7).abs() < 1e-6);
    }
}
