//! One intersection's signal: green, then yellow and all-red clearance, then the next green.
//!
//! The only way to change phase is [`Signal::switch`], which refuses within the minimum
//! green and always passes through clearance: links green in both phases stay green, links
//! losing green show yellow, then red for the all-red time, and only then do the new links
//! get green. An emergency may send a clearance already under way to another phase
//! ([`Signal::retarget`]): the links it keeps green must stay green in the new phase, and
//! the others still wait out the yellow and the all-red.

use crate::Intersection;

/// Timing bounds, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub min_green_s: u32,
    pub max_green_s: u32,
    pub yellow_s: u32,
    pub all_red_s: u32,
    /// The longest a movement with a vehicle waiting at its stop line may stay red.
    pub max_wait_s: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            min_green_s: 5,
            max_green_s: 60,
            yellow_s: 3,
            all_red_s: 2,
            max_wait_s: 120,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Green {
        phase: usize,
        since: u32,
    },
    /// `via`: the phase the clearance set out for, which fixes the links it keeps green
    /// (green in both `from` and `via`); `to` is where it ends, `via` unless retargeted.
    Yellow {
        from: usize,
        to: usize,
        via: usize,
        since: u32,
    },
    AllRed {
        from: usize,
        to: usize,
        via: usize,
        since: u32,
    },
}

#[derive(Debug, Clone)]
pub struct Signal {
    timing: Timing,
    stage: Stage,
}

impl Signal {
    pub fn new(timing: Timing, phase: usize, now: u32) -> Self {
        Self {
            timing,
            stage: Stage::Green { phase, since: now },
        }
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Seconds the current green has lasted (0 in clearance).
    pub fn green_for(&self, now: u32) -> u32 {
        match self.stage {
            Stage::Green { since, .. } => now.saturating_sub(since),
            _ => 0,
        }
    }

    /// Whether a switch would be granted now.
    pub fn may_switch(&self, now: u32) -> bool {
        matches!(self.stage, Stage::Green { .. }) && self.green_for(now) >= self.timing.min_green_s
    }

    /// Starts the change to `to`; refused (false) within the minimum green or in clearance.
    pub fn switch(&mut self, now: u32, to: usize) -> bool {
        let Stage::Green { phase, .. } = self.stage else {
            return false;
        };
        if to == phase || !self.may_switch(now) {
            return false;
        }
        self.stage = if self.timing.yellow_s > 0 {
            Stage::Yellow {
                from: phase,
                to,
                via: to,
                since: now,
            }
        } else {
            Stage::AllRed {
                from: phase,
                to,
                via: to,
                since: now,
            }
        };
        true
    }

    /// Ends the clearance under way in phase `to` instead; refused (false) outside a
    /// clearance, or when a link the clearance keeps green is not green in `to` (it would
    /// lose its green without a yellow). Links the clearance is stopping get `to`'s green
    /// only once the yellow and the all-red are over, as for any switch.
    pub fn retarget(&mut self, ix: &Intersection, to: usize) -> bool {
        let (from, via) = match self.stage {
            Stage::Green { .. } => return false,
            Stage::Yellow { from, via, .. } | Stage::AllRed { from, via, .. } => (from, via),
        };
        let keeps_green = (0..ix.signals).all(|l| {
            !(ix.phases[from].is_green(l) && ix.phases[via].is_green(l))
                || ix.phases[to].is_green(l)
        });
        if !keeps_green {
            return false;
        }
        match &mut self.stage {
            Stage::Yellow { to: end, .. } | Stage::AllRed { to: end, .. } => *end = to,
            Stage::Green { .. } => {}
        }
        true
    }

    /// Seconds until the clearance under way ends (0 in a green).
    pub fn clearance_left(&self, now: u32) -> u32 {
        let t = &self.timing;
        match self.stage {
            Stage::Green { .. } => 0,
            Stage::Yellow { since, .. } => (since + t.yellow_s + t.all_red_s).saturating_sub(now),
            Stage::AllRed { since, .. } => (since + t.all_red_s).saturating_sub(now),
        }
    }

    /// Moves clearance on by the clock.
    pub fn tick(&mut self, now: u32) {
        loop {
            self.stage = match self.stage {
                Stage::Yellow {
                    from,
                    to,
                    via,
                    since,
                } if now >= since + self.timing.yellow_s => Stage::AllRed {
                    from,
                    to,
                    via,
                    since: since + self.timing.yellow_s,
                },
                Stage::AllRed { to, since, .. } if now >= since + self.timing.all_red_s => {
                    Stage::Green {
                        phase: to,
                        since: since + self.timing.all_red_s,
                    }
                }
                _ => return,
            }
        }
    }

    /// Whether signal index `signal` shows green now.
    pub fn is_green(&self, ix: &Intersection, signal: usize) -> bool {
        match self.stage {
            Stage::Green { phase, .. } => ix.phases[phase].is_green(signal),
            Stage::Yellow { from, via, .. } | Stage::AllRed { from, via, .. } => {
                ix.phases[from].is_green(signal) && ix.phases[via].is_green(signal)
            }
        }
    }

    /// The state string SUMO shows: `G`/`g` green, `y` yellow, `r` red, one per signal
    /// index.
    pub fn state(&self, ix: &Intersection) -> String {
        (0..ix.signals)
            .map(|l| match self.stage {
                Stage::Green { phase, .. } => ix.phases[phase].green[l].unwrap_or(
                    if ix.stop_go.get(l).copied().unwrap_or(false) {
                        's'
                    } else {
                        'r'
                    },
                ),
                Stage::Yellow { from, via, .. } => {
                    match (ix.phases[from].green[l], ix.phases[via].green[l]) {
                        (Some(c), Some(_)) => c,
                        (Some(_), None) => 'y',
                        _ => 'r',
                    }
                }
                Stage::AllRed { from, via, .. } => {
                    match (ix.phases[from].green[l], ix.phases[via].green[l]) {
                        (Some(c), Some(_)) => c,
                        _ => 'r',
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Phase;
    use crate::testnet::crossing;

    #[test]
    fn a_retargeted_clearance_never_takes_a_green_away_without_a_yellow() {
        // Three signals: phase 0 greens 0 and 1, phase 1 greens 1 and 2, phase 2 greens
        // only 2, phase 3 greens 0 and 1 again.
        let mut ix = crossing().intersections.remove(0);
        ix.signals = 3;
        let phase = |g: [bool; 3]| Phase {
            green: g.iter().map(|&on| on.then_some('G')).collect(),
        };
        ix.phases = vec![
            phase([true, true, false]),
            phase([false, true, true]),
            phase([false, false, true]),
            phase([true, true, false]),
        ];
        let mut s = Signal::new(Timing::default(), 0, 0);
        assert!(!s.retarget(&ix, 2), "not in a clearance");
        assert!(s.switch(10, 1));
        assert_eq!(s.state(&ix), "yGr");
        // Signal 1 stays green through this clearance: phase 2 would drop it at once.
        assert!(!s.retarget(&ix, 2));
        // Back to phase 0 keeps it; signal 0 still waits out its yellow and all-red.
        assert!(s.retarget(&ix, 0));
        assert_eq!(s.clearance_left(10), 5);
        s.tick(13);
        assert_eq!(s.state(&ix), "rGr");
        s.tick(15);
        assert_eq!(
            s.stage(),
            Stage::Green {
                phase: 0,
                since: 15
            }
        );
        assert_eq!(s.state(&ix), "GGr");
    }
}
