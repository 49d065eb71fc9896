//! Traffic signals: which movement gets green, decided every second from what detectors see.
//!
//! (This file stays whole, about 960 lines: past the network types, it is the `Controller`,
//! whose bounds, preemption and starvation tracking read one another's state, and about 400
//! lines of its tests; policies, timing, emergency requests and replay already live apart.)
//!
//! The key decision: safety lives in one place. A policy (fixed-time, max-pressure, the
//! adaptive controller, an emergency run) only *asks* for a phase; [`Signal`] grants it
//! only through yellow and all-red clearance and never before the minimum green, and the
//! [`Controller`] adds the bounds no policy may break (maximum green, the longest any
//! movement with a vehicle waiting may stay red). So every policy, including ones written
//! later, is safe by construction, and the rules are tested once, without a simulator.
//!
//! Time is the caller's (seconds from the simulation or the field controller's clock); there
//! is no I/O here: the SUMO connector and the platform feed observations in and read
//! signal states out.
//!
//! Kept whole (about 900 lines): `Controller` is the one place where safety bounds,
//! policies and preemption meet, and its tests (the larger half) read beside it.

pub mod emergency;
pub mod policy;
pub mod replay;
pub mod timing;

pub use emergency::{Emergency, EmergencyPlan, Preempt};
pub use policy::{Adaptive, FixedTime, MaxPressure, Policy, PolicyKind};
pub use timing::{Signal, Stage, Timing};

/// Index of a lane in [`Network::lanes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneId(pub u32);

/// Index of an edge (a road between two nodes) in [`Network::edges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeId(pub u32);

#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub name: String,
    pub edge: EdgeId,
    /// Metres.
    pub length: f64,
    /// Speed limit, m/s.
    pub speed: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub name: String,
    pub lanes: Vec<LaneId>,
    /// The signalised intersection at its downstream end, if any.
    pub to_signal: Option<usize>,
}

/// One signal-controlled connection: from an incoming lane to an outgoing lane, shown by
/// the signal with index `signal`. Several connections may share a signal (SUMO's
/// `linkIndex`), and a signal may control none (SUMO allows indices no connection uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub from: LaneId,
    pub to: LaneId,
    pub signal: usize,
}

/// A green phase: per signal index, whether it is green and the character it shows (`G`
/// priority green, `g` green that yields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub green: Vec<Option<char>>,
}

impl Phase {
    /// Whether signal index `signal` is green.
    pub fn is_green(&self, signal: usize) -> bool {
        self.green[signal].is_some()
    }
    /// Whether this phase lets `link` go.
    pub fn serves(&self, link: &Link) -> bool {
        self.green[link.signal].is_some()
    }
}

/// A signalised intersection: its links (connections), its signals and its green phases.
#[derive(Debug, Clone, PartialEq)]
pub struct Intersection {
    pub name: String,
    pub links: Vec<Link>,
    /// How many signal indices its state string has (at least one past every link's).
    pub signals: usize,
    /// Per signal index: the programme shows `s` there (stop, then go if clear: a right
    /// turn on red) rather than `r`; shown so in every green that does not give it green.
    /// Empty: none.
    pub stop_go: Vec<bool>,
    /// The plan's green phases, then (from `plan_phases` on) one approach-only phase per
    /// incoming road, shown only for an emergency vehicle (see [`Network::add_approach_phases`]).
    pub phases: Vec<Phase>,
    pub plan_phases: usize,
}

impl Intersection {
    /// The phases a policy may choose from.
    pub fn plan(&self) -> &[Phase] {
        &self.phases[..self.plan_phases]
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Network {
    pub lanes: Vec<Lane>,
    pub edges: Vec<Edge>,
    pub intersections: Vec<Intersection>,
    /// Per lane, the lanes feeding it (any connection, signalised or not; empty when not
    /// known): a queue at a light on a short lane stands on these too.
    pub upstream: Vec<Vec<LaneId>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignalsError {
    #[error("intersection {intersection}: {reason}")]
    BadIntersection {
        intersection: String,
        reason: String,
    },
    #[error("unknown edge {0:?}")]
    UnknownEdge(String),
}

impl Network {
    /// Checks what the controller relies on: every phase covers every link, and there are
    /// at least two phases to choose from.
    pub fn validate(&self) -> Result<(), SignalsError> {
        for ix in &self.intersections {
            let bad = |reason: String| SignalsError::BadIntersection {
                intersection: ix.name.clone(),
                reason,
            };
            if ix.plan_phases == 0 || ix.plan_phases > ix.phases.len() {
                return Err(bad("no green phase".into()));
            }
            for (p, phase) in ix.phases.iter().enumerate() {
                if phase.green.len() != ix.signals {
                    return Err(bad(format!(
                        "phase {p} has {} signals, the intersection {}",
                        phase.green.len(),
                        ix.signals
                    )));
                }
            }
            for link in &ix.links {
                if link.signal >= ix.signals {
                    return Err(bad(format!(
                        "a link with signal {} of {}",
                        link.signal, ix.signals
                    )));
                }
                for lane in [link.from, link.to] {
                    if lane.0 as usize >= self.lanes.len() {
                        return Err(bad(format!("link to unknown lane {}", lane.0)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds to every intersection one phase per incoming road giving all its links
    /// protected green (`G`) and every other link red. An emergency vehicle gets this phase:
    /// a left turn that only yields (`g`) in the plan's phases would stop it for oncoming
    /// traffic, and links of one approach never conflict with each other.
    pub fn add_approach_phases(&mut self) {
        for ix in &mut self.intersections {
            ix.phases.truncate(ix.plan_phases);
            let mut edges: Vec<EdgeId> = Vec::new();
            for link in &ix.links {
                let edge = self.lanes[link.from.0 as usize].edge;
                if !edges.contains(&edge) {
                    edges.push(edge);
                }
            }
            for edge in edges {
                let mut green = vec![None; ix.signals];
                for l in &ix.links {
                    if self.lanes[l.from.0 as usize].edge == edge {
                        green[l.signal] = Some('G');
                    }
                }
                // A signal shared with a link from another road stays red.
                for l in &ix.links {
                    if self.lanes[l.from.0 as usize].edge != edge {
                        green[l.signal] = None;
                    }
                }
                ix.phases.push(Phase { green });
            }
        }
    }

    pub fn edge_by_name(&self, name: &str) -> Option<EdgeId> {
        self.edges
            .iter()
            .position(|e| e.name == name)
            .map(|i| EdgeId(i as u32))
    }
}

/// One vehicle as a detector sees it on a lane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// Metres to the stop line.
    pub to_stop: f64,
    /// m/s.
    pub speed: f64,
}

/// What the detectors saw this second, per lane (indexed by [`LaneId`]).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub lanes: Vec<Vec<Seen>>,
}

/// Seconds of slack when calling a phase for an emergency vehicle: drivers start braking
/// for a red a few seconds before the stop line.
pub const PREEMPT_MARGIN_S: f64 = 6.0;

/// Below this speed a vehicle counts as queued (SUMO's halting threshold).
pub const HALTING: f64 = 0.1;

impl Observation {
    pub fn empty(network: &Network) -> Self {
        Self {
            lanes: vec![Vec::new(); network.lanes.len()],
        }
    }
    pub fn count(&self, lane: LaneId) -> usize {
        self.lanes[lane.0 as usize].len()
    }
    pub fn halting(&self, lane: LaneId) -> usize {
        self.lanes[lane.0 as usize]
            .iter()
            .filter(|v| v.speed < HALTING)
            .count()
    }
}

/// Why an intersection shows what it shows: the decisions explain themselves.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The policy chose this phase (its score and the runner-up's).
    Policy { score: f64, runner_up: f64 },
    /// Still within the minimum green.
    MinGreen,
    /// The maximum green ran out.
    MaxGreen,
    /// A movement had waited longer than the bound.
    Starvation { link: usize, waited_s: u32 },
    /// Held or switched for an emergency vehicle.
    Emergency { vehicle: String },
    /// In clearance (yellow, all-red).
    Clearance,
}

/// A decision taken this second, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub intersection: usize,
    pub phase: usize,
    pub reason: Reason,
}

impl Decision {
    /// Intersection `intersection` goes to the phase `p` asks for, for its vehicle.
    fn emergency(intersection: usize, p: &Preempt) -> Self {
        Self {
            intersection,
            phase: p.phase,
            reason: Reason::Emergency {
                vehicle: p.vehicle.clone(),
            },
        }
    }
}

/// Every intersection's signal, a policy, and the bounds no policy may break.
#[derive(Debug)]
pub struct Controller {
    pub signals: Vec<Signal>,
    policy: Box<dyn Policy>,
    /// Per intersection and link: since when a vehicle has been waiting unserved (at red,
    /// or standing at a green that yields).
    waiting_since: Vec<Vec<Option<u32>>>,
    /// Whether the bounds (max green, starvation) apply: a fixed-time plan is its own bound.
    bounded: bool,
    /// Per intersection: since when emergency requests have been acting on it.
    preempted_since: Vec<Option<u32>>,
    /// Per intersection: vehicles whose requests are ignored until the given time, after
    /// their hold ran out or did not move them.
    lapsed: Vec<Vec<(String, u32)>>,
    /// Per intersection: the emergency vehicles it acted for lately, each with the last
    /// time (kept for one maximum green).
    served: Vec<Vec<(String, u32)>>,
    /// Per intersection: whether the clearance under way was the policy's choice, which an
    /// emergency may redirect; one for the starvation bound, the maximum green or another
    /// emergency keeps its course.
    redirectable: Vec<bool>,
}

impl Controller {
    pub fn new(network: &Network, timing: Timing, policy: Box<dyn Policy>) -> Self {
        let bounded = policy.kind() != PolicyKind::FixedTime;
        Self {
            signals: network
                .intersections
                .iter()
                .map(|_| Signal::new(timing, 0, 0))
                .collect(),
            waiting_since: network
                .intersections
                .iter()
                .map(|ix| vec![None; ix.links.len()])
                .collect(),
            policy,
            bounded,
            preempted_since: vec![None; network.intersections.len()],
            lapsed: vec![Vec::new(); network.intersections.len()],
            redirectable: vec![false; network.intersections.len()],
            served: vec![Vec::new(); network.intersections.len()],
        }
    }

    /// The emergency vehicles intersection `i` held or called a phase for lately, each
    /// with the last time it did: a vehicle that stops at a light just served for another
    /// was held back by it (two runs crossing one light within a clearance and a minimum
    /// green of each other: one must wait).
    pub fn served(&self, i: usize) -> impl Iterator<Item = (&str, u32)> {
        self.served[i].iter().map(|(v, t)| (v.as_str(), *t))
    }

    fn note_served(&mut self, i: usize, vehicle: &str, now: u32) {
        let keep = self.signals[i].timing().max_green_s;
        let served = &mut self.served[i];
        served.retain(|(v, t)| v != vehicle && now.saturating_sub(*t) <= keep);
        served.push((vehicle.to_string(), now));
    }

    pub fn policy(&self) -> PolicyKind {
        self.policy.kind()
    }

    /// The signal states to show at `now` (one character per link, SUMO's alphabet).
    pub fn states(&self, network: &Network) -> Vec<String> {
        self.signals
            .iter()
            .zip(&network.intersections)
            .map(|(s, ix)| s.state(ix))
            .collect()
    }

    /// Advances every intersection to `now` (whole seconds) given what the detectors see
    /// and the preemptions in force; returns the decisions that changed a phase.
    pub fn step(
        &mut self,
        network: &Network,
        now: u32,
        obs: &Observation,
        preempts: &[Preempt],
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for (i, ix) in network.intersections.iter().enumerate() {
            self.signals[i].tick(now);
            self.track_waiting(i, ix, now, obs);
            let signal = self.signals[i].clone();
            let phase = match signal.stage() {
                Stage::Green { phase, .. } => phase,
                // A clearance that set out before an emergency vehicle came into view (it
                // entered the network close by, or a request arrived late) ends in its
                // phase instead, when going on to `to` and back would be too late.
                Stage::Yellow { to, .. } | Stage::AllRed { to, .. } => {
                    if !self.redirectable[i] {
                        continue;
                    }
                    // Only when it must: without the margin a switch gets, so that traffic
                    // the clearance set out to serve is turned back as rarely as can be.
                    let t = signal.timing();
                    let lead = signal.clearance_left(now);
                    let back = f64::from(lead + t.min_green_s + t.yellow_s + t.all_red_s);
                    if let Some(p) = self.emergency_soon(i, to, now, preempts, lead)
                        && p.eta_s <= back + p.flush_s
                        && self.signals[i].retarget(ix, p.phase)
                    {
                        self.note_served(i, &p.vehicle, now);
                        self.redirectable[i] = false;
                        decisions.push(Decision::emergency(i, p));
                    }
                    continue;
                }
            };
            // The starvation bound first: no emergency request outranks it, so an
            // ambulance stuck in a queue cannot keep a movement at red past the bound.
            if self.bounded
                && signal.may_switch(now)
                && let Some((link, since)) = self.most_starved(i, now)
                && now - since >= signal.timing().max_wait_s
            {
                let waited_s = now - since;
                let to = starved_phase(ix, link, &self.waiting_since[i]);
                if to != phase && self.signals[i].switch(now, to) {
                    self.preempted_since[i] = None;
                    self.redirectable[i] = false;
                    decisions.push(Decision {
                        intersection: i,
                        phase: to,
                        reason: Reason::Starvation { link, waited_s },
                    });
                    continue;
                }
            }
            if let Some(p) = self.emergency_request(i, phase, now, preempts) {
                self.note_served(i, &p.vehicle, now);
                if p.phase != phase && self.signals[i].switch(now, p.phase) {
                    self.redirectable[i] = false;
                    decisions.push(Decision::emergency(i, p));
                }
                continue;
            }
            if !signal.may_switch(now) {
                continue;
            }
            let must_leave = self.bounded && signal.green_for(now) >= signal.timing().max_green_s;
            let choice = self.policy.choose(
                network,
                i,
                obs,
                phase,
                signal.green_for(now),
                now,
                must_leave,
            );
            let to = if must_leave && choice.phase == phase {
                choice.runner_up_phase.unwrap_or(phase)
            } else {
                choice.phase
            };
            // A switch commits the light to a clearance and a minimum green: not to a
            // phase other than the one an emergency vehicle will need before both are over.
            let soon = (to != phase)
                .then(|| {
                    let t = signal.timing();
                    self.emergency_soon(i, to, now, preempts, t.yellow_s + t.all_red_s)
                })
                .flatten();
            let to = soon.map_or(to, |p| p.phase);
            if let Some(p) = soon {
                self.note_served(i, &p.vehicle, now);
            }
            if to != phase && self.signals[i].switch(now, to) {
                self.redirectable[i] = soon.is_none() && !must_leave;
                decisions.push(Decision {
                    intersection: i,
                    phase: to,
                    reason: if let Some(p) = soon {
                        Reason::Emergency {
                            vehicle: p.vehicle.clone(),
                        }
                    } else if must_leave {
                        Reason::MaxGreen
                    } else {
                        Reason::Policy {
                            score: choice.score,
                            runner_up: choice.runner_up,
                        }
                    },
                });
            }
        }
        decisions
    }

    /// The emergency request intersection `i` (showing green `phase`) should follow now,
    /// if any. A request is acted on only when needed: a shown phase is held once leaving
    /// and coming back (a minimum green and two clearances) would be too late; another is
    /// called once what is left of this green and the clearance would only just do, the
    /// queue standing ahead of the vehicle and a margin included. One the current green
    /// serves and that is already too close to stop (within the clearance time) keeps it;
    /// otherwise the earlier arrival (the later one is served one clearance after it), and
    /// arrivals closer than that go by priority.
    ///
    /// Two bounds keep preemption from jamming the network. Emergency requests act on an
    /// intersection for at most the maximum green in a row, and a green shown for a vehicle
    /// that stands still (longer than its queue takes to start moving) is given up: the
    /// vehicle is held back by something a green here cannot clear. Either way its requests
    /// here are then ignored for one maximum green, so the others get served.
    fn emergency_request<'p>(
        &mut self,
        i: usize,
        phase: usize,
        now: u32,
        preempts: &'p [Preempt],
    ) -> Option<&'p Preempt> {
        let signal = &self.signals[i];
        let t = *signal.timing();
        let clearance = f64::from(t.yellow_s + t.all_red_s);
        let to_leave_and_return = f64::from(t.min_green_s) + 2.0 * clearance;
        let to_switch = f64::from(t.min_green_s.saturating_sub(signal.green_for(now))) + clearance;
        self.lapsed[i].retain(|(_, until)| *until > now);
        let lapsed = &self.lapsed[i];
        let here: Vec<&Preempt> = preempts
            .iter()
            .filter(|p| p.intersection == i)
            .filter(|p| !lapsed.iter().any(|(v, _)| *v == p.vehicle))
            .filter(|p| {
                let needed = if p.phase == phase {
                    to_leave_and_return
                } else {
                    to_switch
                };
                p.eta_s <= needed + p.flush_s + PREEMPT_MARGIN_S
            })
            .collect();
        let committed = here
            .iter()
            .filter(|p| p.phase == phase && p.eta_s <= clearance && p.stopped_s == 0)
            .min_by(|a, b| a.eta_s.total_cmp(&b.eta_s));
        let first = committed.or_else(|| {
            let earliest = here.iter().map(|p| p.eta_s).fold(f64::INFINITY, f64::min);
            here.iter()
                .filter(|p| p.eta_s <= earliest + clearance)
                .min_by(|a, b| {
                    b.priority
                        .cmp(&a.priority)
                        .then(a.eta_s.total_cmp(&b.eta_s))
                })
        });
        let Some(p) = first.copied() else {
            self.preempted_since[i] = None;
            return None;
        };
        let since = *self.preempted_since[i].get_or_insert(now);
        let held_too_long = now - since >= t.max_green_s;
        // A queue starts moving about one headway per vehicle after its green; the flush
        // time is that, plus a few seconds.
        let standing = f64::from(p.stopped_s.min(signal.green_for(now)));
        let not_moving = p.phase == phase && standing >= p.flush_s + 5.0;
        if held_too_long || not_moving {
            let until = now.saturating_add(t.max_green_s);
            self.lapsed[i].extend(
                here.iter()
                    .filter(|q| q.phase == p.phase || q.vehicle == p.vehicle)
                    .map(|q| (q.vehicle.clone(), until)),
            );
            self.preempted_since[i] = None;
            return None;
        }
        Some(p)
    }

    /// The emergency request at intersection `i` that going to phase `to` (green in
    /// `lead_s`: a clearance for a switch now) would leave unserved in time: one for another
    /// phase, arriving before the light could get from `to` to it (`lead_s`, the minimum
    /// green, a clearance), its queue and the margin included. The earliest such arrival,
    /// the higher priority first when they are within a clearance of each other.
    fn emergency_soon<'p>(
        &self,
        i: usize,
        to: usize,
        now: u32,
        preempts: &'p [Preempt],
        lead_s: u32,
    ) -> Option<&'p Preempt> {
        let t = *self.signals[i].timing();
        let clearance = f64::from(t.yellow_s + t.all_red_s);
        let through = f64::from(lead_s + t.min_green_s) + clearance;
        let lapsed = &self.lapsed[i];
        let soon: Vec<&Preempt> = preempts
            .iter()
            .filter(|p| p.intersection == i && p.phase != to)
            .filter(|p| {
                !lapsed
                    .iter()
                    .any(|(v, until)| *v == p.vehicle && *until > now)
            })
            .filter(|p| p.eta_s <= through + p.flush_s + PREEMPT_MARGIN_S)
            .collect();
        let earliest = soon.iter().map(|p| p.eta_s).fold(f64::INFINITY, f64::min);
        soon.into_iter()
            .filter(|p| p.eta_s <= earliest + clearance)
            .min_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.eta_s.total_cmp(&b.eta_s))
            })
    }

    fn track_waiting(&mut self, i: usize, ix: &Intersection, now: u32, obs: &Observation) {
        let signal = &self.signals[i];
        let shown = match signal.stage() {
            Stage::Green { phase, .. } => Some(&ix.phases[phase]),
            _ => None,
        };
        for (l, link) in ix.links.iter().enumerate() {
            let green = signal.is_green(ix, link.signal);
            // A green that yields ('g': a turn across oncoming traffic) serves nobody while
            // the oncoming stream leaves no gap: a vehicle standing there waits as at red,
            // when a phase of the plan would give its movement priority. (Otherwise a left
            // turn behind a steady oncoming stream waited until SUMO teleported it: RESCO's
            // cologne3, 300 s.)
            let unserved = !green
                || (shown.is_some_and(|p| p.green[link.signal] == Some('g'))
                    && ix.plan().iter().any(|p| p.green[link.signal] == Some('G')));
            // Waiting: with a vehicle stopped near the stop line of its lane.
            let waiting = unserved
                && obs.lanes[link.from.0 as usize]
                    .iter()
                    .any(|v| v.speed < HALTING && v.to_stop < 15.0);
            let slot = &mut self.waiting_since[i][l];
            match (waiting, *slot) {
                (true, None) => *slot = Some(now),
                (false, Some(_)) => *slot = None,
                _ => {}
            }
        }
    }

    fn most_starved(&self, i: usize, _now: u32) -> Option<(usize, u32)> {
        self.waiting_since[i]
            .iter()
            .enumerate()
            .filter_map(|(l, s)| s.map(|s| (l, s)))
            .min_by_key(|(_, s)| *s)
    }
}

/// The phase serving a starved link, with priority if a phase gives it priority, that also
/// serves the most other waiting links.
fn starved_phase(ix: &Intersection, link: usize, waiting: &[Option<u32>]) -> usize {
    let signal = ix.links[link].signal;
    ix.plan()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.serves(&ix.links[link]))
        .max_by_key(|(_, p)| {
            let others = waiting
                .iter()
                .enumerate()
                .filter(|(l, w)| w.is_some() && p.serves(&ix.links[*l]))
                .count();
            (p.green[signal] == Some('G'), others)
        })
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
pub(crate) mod testnet {
    //! A small deterministic crossing for tests: two approaches (north–south, east–west),
    //! one lane each way in, one out, two phases.
    use super::*;

    pub fn crossing() -> Network {
        let lane = |name: &str, edge: u32| Lane {
            name: name.into(),
            edge: EdgeId(edge),
            length: 200.0,
            speed: 13.9,
        };
        let lanes = vec![
            lane("n_in_0", 0),
            lane("e_in_0", 1),
            lane("s_out_0", 2),
            lane("w_out_0", 3),
        ];
        let edge = |name: &str, lane: u32, sig: Option<usize>| Edge {
            name: name.into(),
            lanes: vec![LaneId(lane)],
            to_signal: sig,
        };
        Network {
            lanes,
            edges: vec![
                edge("n_in", 0, Some(0)),
                edge("e_in", 1, Some(0)),
                edge("s_out", 2, None),
                edge("w_out", 3, None),
            ],
            intersections: vec![Intersection {
                name: "x".into(),
                links: vec![
                    Link {
                        from: LaneId(0),
                        to: LaneId(2),
                        signal: 0,
                    },
                    Link {
                        from: LaneId(1),
                        to: LaneId(3),
                        signal: 1,
                    },
                ],
                signals: 2,
                stop_go: Vec::new(),
                phases: vec![
                    Phase {
                        green: vec![Some('G'), None],
                    },
                    Phase {
                        green: vec![None, Some('G')],
                    },
                ],
                plan_phases: 2,
            }],
            upstream: Vec::new(),
        }
    }

    /// `n` vehicles queued at the stop line of `lane`.
    pub fn queue(obs: &mut Observation, lane: u32, n: usize) {
        obs.lanes[lane as usize] = (0..n)
            .map(|k| Seen {
                to_stop: 1.0 + 7.5 * k as f64,
                speed: 0.0,
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::testnet::*;
    use super::*;

    fn timing() -> Timing {
        Timing {
            min_green_s: 5,
            max_green_s: 40,
            yellow_s: 3,
            all_red_s: 2,
            max_wait_s: 90,
        }
    }

    /// Runs `secs` seconds with a fixed observation; returns each second's state string.
    fn run(
        c: &mut Controller,
        net: &Network,
        obs: &Observation,
        from: u32,
        secs: u32,
    ) -> Vec<String> {
        (from..from + secs)
            .map(|t| {
                c.step(net, t, obs, &[]);
                c.states(net)[0].clone()
            })
            .collect()
    }

    #[test]
    fn a_conflicting_green_always_follows_yellow_then_all_red() {
        let net = crossing();
        net.validate().unwrap();
        for kind in [
            PolicyKind::MaxPressure,
            PolicyKind::Adaptive,
            PolicyKind::FixedTime,
        ] {
            let mut c = Controller::new(&net, timing(), kind.build(&net));
            let mut obs = Observation::empty(&net);
            // Demand alternates between the approaches every 20 s.
            let mut states = Vec::new();
            for t in 0..400 {
                if t % 40 == 0 {
                    queue(&mut obs, 0, 8);
                    queue(&mut obs, 1, 0);
                } else if t % 40 == 20 {
                    queue(&mut obs, 0, 0);
                    queue(&mut obs, 1, 8);
                }
                c.step(&net, t, &obs, &[]);
                states.push(c.states(&net)[0].clone());
            }
            for link in 0..2 {
                let chars: Vec<char> = states.iter().map(|s| s.as_bytes()[link] as char).collect();
                for w in chars.windows(2) {
                    // Green ends only in yellow; yellow only in red.
                    if w[0] == 'G' {
                        assert!(w[1] == 'G' || w[1] == 'y', "{kind:?} {w:?}");
                    }
                    if w[0] == 'y' {
                        assert!(w[1] == 'y' || w[1] == 'r', "{kind:?} {w:?}");
                    }
                }
                // Yellow lasts exactly its time.
                let runs = runs_of(&chars, 'y');
                assert!(
                    runs.iter().all(|r| *r == 3),
                    "{kind:?} yellow runs {runs:?}"
                );
            }
            // Never both green; between one approach's green and the other's, the clearance.
            for (t, s) in states.iter().enumerate() {
                assert_ne!(s, "GG", "{kind:?} at {t}");
            }
            let first_switch = states.iter().position(|s| s.contains('y'));
            assert!(first_switch.is_some(), "{kind:?} never switched");
            let all_red = states.iter().filter(|s| *s == "rr").count();
            assert!(all_red >= 2, "{kind:?}");
        }
    }

    fn runs_of(chars: &[char], c: char) -> Vec<usize> {
        let mut runs = Vec::new();
        let mut n = 0;
        for &x in chars {
            if x == c {
                n += 1;
            } else if n > 0 {
                runs.push(n);
                n = 0;
            }
        }
        runs
    }

    #[test]
    fn min_green_holds_even_when_the_other_approach_is_heavier() {
        let net = crossing();
        // The adaptive policy would leave a dry green at once: only the minimum keeps it.
        let mut c = Controller::new(&net, timing(), PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 0, 1);
        let _ = run(&mut c, &net, &obs, 0, 30);
        // Phase 0 holds; now east is swamped the second it turns green.
        queue(&mut obs, 1, 20);
        let states = run(&mut c, &net, &obs, 30, 30);
        let green_e = states.iter().position(|s| s == "rG").unwrap();
        queue(&mut obs, 1, 0);
        queue(&mut obs, 0, 20);
        let after = run(&mut c, &net, &obs, 30 + green_e as u32 + 1, 4);
        assert!(after.iter().all(|s| s == "rG"), "{after:?}");
    }

    #[test]
    fn no_movement_with_a_waiting_vehicle_stays_red_past_the_bound() {
        let net = crossing();
        let mut t = timing();
        t.max_green_s = 1000; // only the starvation bound can end the heavy green
        let mut c = Controller::new(&net, t, PolicyKind::MaxPressure.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 0, 30); // heavy
        queue(&mut obs, 1, 1); // one car waits
        let states = run(&mut c, &net, &obs, 0, 200);
        let first_e = states
            .iter()
            .position(|s| s == "rG")
            .expect("east got green");
        // The car began waiting at 0; the bound is 90 s, plus clearance.
        assert!(first_e as u32 <= 90 + 5 + 1, "east waited {first_e} s");
        assert!(first_e as u32 >= 90, "east got green early: {first_e}");
    }

    #[test]
    fn a_turn_that_yields_without_a_gap_gets_its_protected_phase_within_the_bound() {
        // East may go in phase 0 only by yielding (`g`), say to the heavy north stream; in
        // phase 1 it has priority. Its car stands at the line through the yielding green.
        let mut net = crossing();
        net.intersections[0].phases[0].green[1] = Some('g');
        let mut t = timing();
        t.max_green_s = 1000; // only the starvation bound can end the heavy green
        let mut c = Controller::new(&net, t, PolicyKind::MaxPressure.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 0, 30);
        queue(&mut obs, 1, 1);
        let states = run(&mut c, &net, &obs, 0, 200);
        assert_eq!(states[0], "Gg");
        let protected = states
            .iter()
            .position(|s| s == "rG")
            .expect("east got its protected phase");
        assert!(protected as u32 <= 90 + 5 + 1, "east waited {protected} s");
    }

    #[test]
    fn max_green_ends_a_green_even_with_demand_left() {
        let net = crossing();
        let mut t = timing();
        t.max_wait_s = 1000;
        let mut c = Controller::new(&net, t, PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 0, 30);
        queue(&mut obs, 1, 1);
        let states = run(&mut c, &net, &obs, 0, 100);
        let first_e = states
            .iter()
            .position(|s| s == "rG")
            .expect("east got green");
        assert!(first_e as u32 <= 40 + 5 + 1, "{first_e}");
    }

    #[test]
    fn an_emergency_gets_its_phase_and_control_resumes_through_clearance() {
        let net = crossing();
        let mut c = Controller::new(&net, timing(), PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 0, 10);
        let _ = run(&mut c, &net, &obs, 0, 19);
        assert_eq!(c.states(&net)[0], "Gr");
        // An ambulance comes from the east: its phase is 1.
        let mut p = Preempt {
            intersection: 0,
            phase: 1,
            eta_s: 30.0,
            flush_s: 0.0,
            priority: 1,
            vehicle: "amb".into(),
            stopped_s: 0,
        };
        // Far off (30 s), it is not acted on yet: the clearance and the margin (11 s) are enough.
        assert!(c.step(&net, 19, &obs, std::slice::from_ref(&p)).is_empty());
        let mut states = Vec::new();
        for t in 20..40 {
            // Arriving in 8 s (within the clearance, 5 s, and the 6 s margin: now), then crossing.
            p.eta_s = (8.0 - f64::from(t - 20)).max(0.0);
            let d = c.step(&net, t, &obs, std::slice::from_ref(&p));
            if t == 20 {
                assert!(matches!(d[0].reason, Reason::Emergency { .. }));
            }
            states.push(c.states(&net)[0].clone());
        }
        assert_eq!(&states[..4], ["yr", "yr", "yr", "rr"]);
        // Held green for it, though north has the queue.
        assert!(states[6..].iter().all(|s| s == "rG"), "{states:?}");
        // It has passed: control resumes, north gets back through yellow.
        let after = run(&mut c, &net, &obs, 40, 10);
        assert_eq!(after[0], "ry");
        assert!(after.contains(&"Gr".to_string()));
    }

    fn request(phase: usize, eta_s: f64, stopped_s: u32) -> Preempt {
        Preempt {
            intersection: 0,
            phase,
            eta_s,
            flush_s: 0.0,
            priority: 1,
            vehicle: "amb".into(),
            stopped_s,
        }
    }

    /// Runs `secs` seconds with a fixed observation and the request `at(t)`; returns each
    /// second's state string.
    fn run_with(
        c: &mut Controller,
        net: &Network,
        obs: &Observation,
        secs: u32,
        at: impl Fn(u32) -> Vec<Preempt>,
    ) -> Vec<String> {
        (0..secs)
            .map(|t| {
                c.step(net, t, obs, &at(t));
                c.states(net)[0].clone()
            })
            .collect()
    }

    #[test]
    fn a_clearance_under_way_ends_in_the_phase_an_ambulance_coming_into_view_needs() {
        // East has the queue, so north's green ends at its minimum. During that yellow an
        // ambulance comes into view on north's approach, 7 s away: the rest of the
        // clearance, east's minimum green and a clearance back would take 14 s. The clearance ends in north's green
        // instead, after its yellow and all-red, and breaks no rule of the replay.
        let net = crossing();
        let mut c = Controller::new(&net, timing(), PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 1, 10);
        let (mut states, mut yellow_at, mut reasons) = (Vec::new(), None, Vec::new());
        for t in 0..30u32 {
            let p: Vec<Preempt> = yellow_at
                .map(|t0: u32| vec![request(0, (8.0 - f64::from(t - t0)).max(0.0), 0)])
                .unwrap_or_default();
            reasons.extend(c.step(&net, t, &obs, &p).into_iter().map(|d| (t, d.reason)));
            let shown = c.states(&net)[0].clone();
            if yellow_at.is_none() && shown == "yr" {
                yellow_at = Some(t);
            }
            states.push(shown);
        }
        let t0 = yellow_at.expect("north's green ends") as usize;
        assert_eq!(&states[t0..t0 + 5], ["yr", "yr", "yr", "rr", "rr"]);
        assert!(
            states[t0 + 5..=t0 + 8].iter().all(|s| s == "Gr"),
            "{states:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|(t, r)| *t as usize == t0 + 1 && matches!(r, Reason::Emergency { .. })),
            "{reasons:?}"
        );
        assert_eq!(replay::check(&timing(), &states), vec![]);
    }

    #[test]
    fn a_green_held_for_an_emergency_ends_within_the_maximum_green() {
        // The ambulance seems forever about to cross (moving, two seconds away): the hold
        // still ends at the maximum green (40 s), though east waits with a queue.
        let net = crossing();
        let mut t = timing();
        t.max_wait_s = 1000;
        let mut c = Controller::new(&net, t, PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 1, 20);
        let states = run_with(&mut c, &net, &obs, 200, |_| vec![request(0, 2.0, 0)]);
        let first_e = states.iter().position(|s| s == "rG").expect("east green");
        assert!((40..=46).contains(&first_e), "east green at {first_e}");
        // And the vehicle's requests lapse for a while: east is served, not bounced back
        // after its minimum green.
        assert!(
            states[first_e..first_e + 20].iter().all(|s| s == "rG"),
            "{:?}",
            &states[first_e..first_e + 20]
        );
        // Without the ambulance the same controller leaves north at once (min green).
        let mut c = Controller::new(&net, t, PolicyKind::Adaptive.build(&net));
        let states = run_with(&mut c, &net, &obs, 30, |_| vec![]);
        assert_eq!(states.iter().position(|s| s == "rG"), Some(10));
    }

    #[test]
    fn a_green_held_for_an_ambulance_that_does_not_move_is_given_up() {
        // Stuck 70 m before the line, standing since 0 with nothing ahead on its lane: a
        // green here does not move it. The hold ends after 5 s (the flush time, 0, plus 5).
        let net = crossing();
        let mut c = Controller::new(&net, timing(), PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 1, 20);
        let states = run_with(&mut c, &net, &obs, 60, |t| vec![request(0, 5.0, t)]);
        let first_e = states.iter().position(|s| s == "rG").expect("east green");
        assert_eq!(first_e, 10, "{states:?}");
        // The same ambulance moving keeps its green.
        let mut c = Controller::new(&net, timing(), PolicyKind::Adaptive.build(&net));
        let states = run_with(&mut c, &net, &obs, 30, |_| vec![request(0, 5.0, 0)]);
        assert!(states.iter().all(|s| s == "Gr"), "{states:?}");
    }

    /// The crossing with a third approach (west, lane 4) and a phase of its own.
    fn three_phases() -> Network {
        let mut net = crossing();
        net.lanes.push(Lane {
            name: "w_in_0".into(),
            edge: EdgeId(4),
            length: 200.0,
            speed: 13.9,
        });
        net.edges.push(Edge {
            name: "w_in".into(),
            lanes: vec![LaneId(4)],
            to_signal: Some(0),
        });
        let ix = &mut net.intersections[0];
        ix.links.push(Link {
            from: LaneId(4),
            to: LaneId(2),
            signal: 2,
        });
        ix.signals = 3;
        ix.phases = (0..3)
            .map(|p| Phase {
                green: (0..3).map(|s| (s == p).then_some('G')).collect(),
            })
            .collect();
        ix.plan_phases = 3;
        net
    }

    #[test]
    fn no_switch_to_a_third_phase_an_ambulance_would_then_wait_behind() {
        let net = three_phases();
        net.validate().unwrap();
        let mut c = Controller::new(&net, timing(), PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        // West's queue draws the green from north (phase 0, empty) at the minimum green.
        queue(&mut obs, 4, 10);
        // An ambulance from the east (phase 1) arrives at 19 s: not yet needing a switch at
        // 5 s (14 s away; a clearance and the margin take 11), but a switch to west then
        // would hold the light (clearance, minimum green, clearance) until 20 s.
        let states = run_with(&mut c, &net, &obs, 25, |t| {
            if t < 20 {
                vec![request(1, f64::from(19 - t), 0)]
            } else {
                Vec::new()
            }
        });
        assert_eq!(states[4], "Grr");
        assert_eq!(states[5], "yrr", "{states:?}");
        // East's green from 10 s, through its arrival.
        assert!(states[10..20].iter().all(|s| s == "rGr"), "{states:?}");
    }

    #[test]
    fn the_starvation_bound_comes_before_an_emergency_hold() {
        let net = crossing();
        let mut t = timing();
        t.max_green_s = 1000; // only the starvation bound (90 s) can end the hold
        let mut c = Controller::new(&net, t, PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 1, 1);
        let states = run_with(&mut c, &net, &obs, 200, |_| vec![request(0, 2.0, 0)]);
        let first_e = states.iter().position(|s| s == "rG").expect("east green");
        assert!((90..=96).contains(&first_e), "east green at {first_e}");
    }

    #[test]
    fn the_queue_ahead_of_an_ambulance_gets_green_in_time_to_flush() {
        // East has green; an ambulance comes from the north on a 600 m lane at 13.9 m/s
        // with ten vehicles queued at the line ahead of it. Its light must turn green at
        // least the flush time (2 s a vehicle, 22 s) before it arrives, not just the
        // clearance before.
        let mut net = crossing();
        net.lanes[0].length = 600.0;
        let plan = EmergencyPlan::default();
        let run = Emergency {
            vehicle: "amb".into(),
            route: vec![EdgeId(0), EdgeId(2)],
            priority: 1,
            max_speed: f64::INFINITY,
        };
        let mut c = Controller::new(&net, timing(), PolicyKind::Adaptive.build(&net));
        let mut obs = Observation::empty(&net);
        queue(&mut obs, 1, 20);
        for t in 0..30 {
            c.step(&net, t, &obs, &[]);
        }
        assert_eq!(c.states(&net)[0], "rG");
        queue(&mut obs, 0, 10);
        let mut green_at = None;
        for t in 30..80u32 {
            let at = emergency::Position {
                route_index: 0,
                in_junction: false,
                lane_pos: 13.9 * f64::from(t - 30),
                stopped_s: 0,
            };
            // Up to the queue's tail (the test's queue stands still).
            if at.lane_pos >= 600.0 - 70.0 {
                break;
            }
            let requests = plan.requests(&net, &run, at, &obs);
            assert_eq!(requests[0].flush_s, 22.0);
            c.step(&net, t, &obs, &requests);
            if green_at.is_none() && c.states(&net)[0] == "Gr" {
                green_at = Some(t);
            }
        }
        let arrival = 30.0 + 600.0 / 13.9;
        let green_at = f64::from(green_at.expect("north got green"));
        assert!(
            arrival - green_at >= 22.0,
            "green at {green_at}, arrival {arrival:.1}"
        );
    }
}
