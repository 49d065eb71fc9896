//! Policies: which green phase an intersection should show next. They only propose; the
//! [`crate::Controller`] and [`crate::Signal`] decide what is safe.
//!
//! - [`FixedTime`]: the plan in the field: each phase in turn for a fixed green.
//! - [`MaxPressure`]: plain max-pressure (Varaiya 2013, as the signal-control literature
//!   runs it): every `interval` seconds, the phase with the largest Σ over its green links of
//!   (vehicles on the incoming lane − vehicles on the outgoing lane).
//! - [`Adaptive`]: citybrain's controller. Three changes to max-pressure, each answering a
//!   known weakness:
//!   1. *Serve a queue until it is gone* (exhaustive service with gap-out): switching costs
//!      the clearance time (5 s of nobody moving), so the current green is kept while its
//!      queue is still discharging or a vehicle is about to reach the stop line, and left as
//!      soon as it runs dry; a fixed decision interval either cuts a platoon or idles.
//!   2. *Count what a green can serve*: vehicles queued or close enough to cross within the
//!      next green, capped at what a lane can discharge, instead of every vehicle on a long
//!      link (a platoon 500 m away gains nothing from green now).
//!   3. *No green into a full link*: a movement whose outgoing lanes are all full of
//!      standing vehicles counts for nothing, which is what makes plain max-pressure
//!      gridlock on short links. (Full means standing: a link a few metres long between
//!      two close junctions has no room for two vehicles even when empty, and the first
//!      version, which asked for room for two, never served the movements into one.)

use crate::{HALTING, Intersection, LaneId, Network, Observation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    FixedTime,
    MaxPressure,
    Adaptive,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::FixedTime => "fixed-time",
            Self::MaxPressure => "max-pressure",
            Self::Adaptive => "citybrain",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::FixedTime, Self::MaxPressure, Self::Adaptive]
            .into_iter()
            .find(|k| k.name() == s)
    }

    /// The policy with its default settings.
    pub fn build(self, _network: &Network) -> Box<dyn Policy> {
        match self {
            Self::FixedTime => Box::new(FixedTime { green_s: 30 }),
            Self::MaxPressure => Box::new(MaxPressure { interval_s: 10 }),
            Self::Adaptive => Box::new(Adaptive::default()),
        }
    }
}

/// What a policy proposes for one intersection.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub phase: usize,
    pub score: f64,
    /// The best other phase and its score (where the controller goes if it must leave).
    pub runner_up_phase: Option<usize>,
    pub runner_up: f64,
}

impl Choice {
    fn keep(phase: usize) -> Self {
        Self {
            phase,
            score: 0.0,
            runner_up_phase: None,
            runner_up: 0.0,
        }
    }
}

pub trait Policy: std::fmt::Debug + Send {
    fn kind(&self) -> PolicyKind;

    /// Proposes a phase for intersection `i`, now showing `current` for `green_for` seconds.
    /// `must_leave`: the maximum green is up; the runner-up will be taken.
    #[allow(clippy::too_many_arguments)]
    fn choose(
        &mut self,
        network: &Network,
        i: usize,
        obs: &Observation,
        current: usize,
        green_for: u32,
        now: u32,
        must_leave: bool,
    ) -> Choice;
}

/// Best and runner-up by score, ties to the current phase, then the lower index.
fn rank(scores: &[f64], current: usize) -> Choice {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then((b == current).cmp(&(a == current)))
            .then(a.cmp(&b))
    });
    let best = order[0];
    let runner = order.iter().copied().find(|&p| p != current);
    Choice {
        phase: best,
        score: scores[best],
        runner_up_phase: runner,
        runner_up: runner.map_or(0.0, |p| scores[p]),
    }
}

#[derive(Debug, Clone)]
pub struct FixedTime {
    pub green_s: u32,
}

impl Policy for FixedTime {
    fn kind(&self) -> PolicyKind {
        PolicyKind::FixedTime
    }

    fn choose(
        &mut self,
        network: &Network,
        i: usize,
        _obs: &Observation,
        current: usize,
        green_for: u32,
        _now: u32,
        _must_leave: bool,
    ) -> Choice {
        if green_for >= self.green_s {
            Choice::keep((current + 1) % network.intersections[i].plan_phases)
        } else {
            Choice::keep(current)
        }
    }
}

#[derive(Debug, Clone)]
pub struct MaxPressure {
    /// Seconds between decisions (the green's minimum length in the literature's runs).
    pub interval_s: u32,
}

/// Plain max-pressure scores: Σ over green links of (count in − count out).
pub fn pressures(ix: &Intersection, obs: &Observation) -> Vec<f64> {
    let link_pressure: Vec<f64> = ix
        .links
        .iter()
        .map(|l| obs.count(l.from) as f64 - obs.count(l.to) as f64)
        .collect();
    ix.plan()
        .iter()
        .map(|p| {
            (0..ix.links.len())
                .filter(|&l| p.serves(&ix.links[l]))
                .map(|l| link_pressure[l])
                .sum()
        })
        .collect()
}

impl Policy for MaxPressure {
    fn kind(&self) -> PolicyKind {
        PolicyKind::MaxPressure
    }

    fn choose(
        &mut self,
        network: &Network,
        i: usize,
        obs: &Observation,
        current: usize,
        green_for: u32,
        _now: u32,
        must_leave: bool,
    ) -> Choice {
        if !must_leave && !green_for.is_multiple_of(self.interval_s) {
            return Choice::keep(current);
        }
        rank(&pressures(&network.intersections[i], obs), current)
    }
}

#[derive(Debug, Clone)]
pub struct Adaptive {
    /// How long a green is planned for, seconds: with the headway, the most vehicles a
    /// lane counts for (30 s / 2 s = 15, half a maximum green).
    pub horizon_s: f64,
    /// A moving vehicle counts for its lane's phase only if it reaches the stop line within
    /// this many seconds at the lane's speed: about when a green called now would start
    /// (yellow and all-red, 5 s) and a little more. Standing vehicles count wherever they
    /// stand. (It was the horizon, 20 s, until 2026-12-04: a phase whose vehicles were still
    /// far away took the green from a queue that was there; over the 15 networks of
    /// `bench/signals/run` the geometric mean of delay against max-pressure went from 0.62
    /// to 0.48, RESCO's grid4x4 from 1.24 to 0.56.)
    pub reach_s: f64,
    /// Saturation headway: seconds per vehicle leaving a queue, per lane.
    pub headway_s: f64,
    /// A vehicle this many seconds from the stop line keeps the green (gap-out).
    pub gap_s: f64,
    /// Leave a green with demand left only if a rival is this many times heavier.
    pub rival_ratio: f64,
    /// Vehicle length plus gap, metres (room on a lane).
    pub spacing_m: f64,
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            horizon_s: 30.0,
            reach_s: 8.0,
            headway_s: 2.0,
            gap_s: 4.0,
            rival_ratio: 3.0,
            spacing_m: 7.5,
        }
    }
}

impl Adaptive {
    /// Vehicles on `lane` a green starting now would serve: those standing on it and those
    /// moving within the reach, at most what the lane discharges in the horizon. On a lane
    /// shorter than the reach, the queue goes on upstream: the lanes feeding it count too
    /// (within what is left of the reach, two lanes back at most).
    fn servable(&self, network: &Network, obs: &Observation, lane: LaneId) -> f64 {
        let speed = network.lanes[lane.0 as usize].speed.max(1.0);
        let reach = speed * self.reach_s;
        let cap = self.horizon_s / self.headway_s;
        let mut n = 0.0;
        // (lane, metres from the stop line to this lane's end, depth)
        let mut todo = vec![(lane, 0.0, 0)];
        while let Some((l, offset, depth)) = todo.pop() {
            // Here a standing vehicle counts wherever it stands (the queue it is in will
            // move); upstream only within reach (it may stand at another light).
            n += obs.lanes[l.0 as usize]
                .iter()
                .filter(|v| offset + v.to_stop <= reach || (depth == 0 && v.speed < HALTING))
                .count() as f64;
            let end = offset + network.lanes[l.0 as usize].length;
            if end < reach
                && depth < 2
                && let Some(ups) = network.upstream.get(l.0 as usize)
            {
                todo.extend(ups.iter().map(|u| (*u, end, depth + 1)));
            }
        }
        n.min(cap)
    }

    /// Free room on `lane`, in vehicles.
    fn room(&self, network: &Network, obs: &Observation, lane: LaneId) -> f64 {
        let length = network.lanes[lane.0 as usize].length;
        length / self.spacing_m - obs.count(lane) as f64
    }

    /// Whether a green lane is still discharging: its first vehicle moves and a vehicle is
    /// within the gap of the stop line. (The first version also kept a green for a vehicle
    /// standing near the line; at a green that is a turn waiting to yield or a road ahead
    /// full, and a shared lane with a yielding left turn held its green to the maximum:
    /// RESCO's cologne8 went from 1.9× max-pressure's delay to 0.91× with this change.)
    fn active(&self, obs: &Observation, lane: LaneId) -> bool {
        let vehicles = &obs.lanes[lane.0 as usize];
        let Some(head) = vehicles
            .iter()
            .min_by(|a, b| a.to_stop.total_cmp(&b.to_stop))
        else {
            return false;
        };
        if head.speed < HALTING {
            // Standing at a green: a queue just starting (within the minimum green), or a
            // lane blocked by a turn that yields or by a full road ahead. Either way no
            // reason to hold the green for it.
            return false;
        }
        vehicles.iter().any(|v| {
            v.speed >= HALTING && v.to_stop <= v.speed.max(2.0) * self.gap_s + self.spacing_m
        })
    }

    /// Per phase: what its green would serve; the incoming lanes it serves (distinct).
    fn scores(&self, network: &Network, ix: &Intersection, obs: &Observation) -> Vec<f64> {
        ix.plan()
            .iter()
            .map(|p| {
                let mut lanes: Vec<(LaneId, Vec<LaneId>)> = Vec::new();
                for link in &ix.links {
                    if !p.serves(link) {
                        continue;
                    }
                    match lanes.iter_mut().find(|(from, _)| *from == link.from) {
                        Some((_, outs)) => outs.push(link.to),
                        None => lanes.push((link.from, vec![link.to])),
                    }
                }
                lanes
                    .iter()
                    .map(|(from, outs)| {
                        // Spillback: every lane it could go to is full and standing. A
                        // short lane (a few metres between two close junctions) is not
                        // full while its vehicles move on.
                        let blocked = outs
                            .iter()
                            .all(|o| self.room(network, obs, *o) < 1.0 && obs.halting(*o) > 0);
                        if blocked {
                            return 0.0;
                        }
                        let queued_out = outs.iter().map(|o| obs.halting(*o) as f64).sum::<f64>()
                            / outs.len() as f64;
                        (self.servable(network, obs, *from) - queued_out).max(0.0)
                    })
                    .sum()
            })
            .collect()
    }
}

impl Policy for Adaptive {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Adaptive
    }

    fn choose(
        &mut self,
        network: &Network,
        i: usize,
        obs: &Observation,
        current: usize,
        _green_for: u32,
        _now: u32,
        must_leave: bool,
    ) -> Choice {
        let ix = &network.intersections[i];
        let scores = self.scores(network, ix, obs);
        let mut choice = rank(&scores, current);
        if must_leave || current >= ix.plan_phases {
            // Out of an emergency's approach phase: back to the plan's best.
            return choice;
        }
        // Lanes only this phase serves (a lane green in every phase never gaps out).
        let own_active = ix.links.iter().any(|link| {
            ix.phases[current].serves(link)
                && !ix.plan().iter().all(|p| p.serves(link))
                && self.active(obs, link.from)
        });
        let rival = choice.runner_up;
        let keep = if own_active {
            rival <= self.rival_ratio * scores[current].max(1.0)
        } else {
            rival <= 0.0
        };
        if keep {
            choice.phase = current;
            choice.score = scores[current];
        } else if let Some(p) = choice.runner_up_phase {
            choice.phase = p;
            choice.score = scores[p];
        }
        choice
    }
}
