//! One intersection's signal: green, then yellow and all-red clearance, then the next green.
//!
//! The only way to change phase is [`Signal::switch`], which refuses within the minimum
//! green and always passes through clearance: links green in both phases stay green, links
//! losing green show yellow, then red for the all-red time, and only then do the new links
//! get green.

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
    Green { phase: usize, since: u32 },
    Yellow { from: usize, to: usize, since: u32 },
    AllRed { from: usize, to: usize, since: u32 },
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
                since: now,
            }
        } else {
            Stage::AllRed {
                from: phase,
                to,
                since: now,
            }
        };
        true
    }

    /// Moves clearance on by the clock.
    pub fn tick(&mut self, now: u32) {
        loop {
            self.stage = match self.stage {
                Stage::Yellow { from, to, since } if now >= since + self.timing.yellow_s => {
                    Stage::AllRed {
                        from,
                        to,
                        since: since + self.timing.yellow_s,
                    }
                }
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
            Stage::Yellow { from, to, .. } | Stage::AllRed { from, to, .. } => {
                ix.phases[from].is_green(signal) && ix.phases[to].is_green(signal)
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
                Stage::Yellow { from, to, .. } => {
                    match (ix.phases[from].green[l], ix.phases[to].green[l]) {
                        (Some(c), Some(_)) => c,
                        (Some(_), None) => 'y',
                        _ => 'r',
                    }
                }
                Stage::AllRed { from, to, .. } => {
                    match (ix.phases[from].green[l], ix.phases[to].green[l]) {
                        (Some(c), Some(_)) => c,
                        _ => 'r',
                    }
                }
            })
            .collect()
    }
}
