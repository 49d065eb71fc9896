//! Emergency preemption (一键护航): the lights ahead of an emergency vehicle turn green in
//! time for it to pass without stopping.
//!
//! For every signal on the vehicle's route ahead (within a horizon) a [`Preempt`] says which
//! phase it needs, its free-flow arrival time and how long the queue standing in front of it
//! on its lanes takes to leave. The [`crate::Controller`] acts on it only when it must: once
//! the arrival is within the time to get the phase green (what is left of the minimum
//! green, the clearance) plus the queue's flush and a margin; a phase already shown is held
//! once leaving and coming back could no longer be done in time. When the vehicle has left
//! the approach, the request lapses and normal control resumes through the usual clearance. Several vehicles at
//! one intersection: the higher priority, then the earlier arrival, wins
//! ([`crate::Controller::step`]).

use crate::{EdgeId, Network, Observation};

/// An emergency run: the vehicle, its route (edges in order) and its priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Emergency {
    pub vehicle: String,
    pub route: Vec<EdgeId>,
    /// Higher wins a conflict.
    pub priority: u8,
    /// The vehicle's own top speed, m/s (`f64::INFINITY`: the roads' limits): an arrival
    /// estimated at a lane's limit the vehicle cannot reach calls its lights too early and
    /// holds them green longer than it needs.
    pub max_speed: f64,
}

/// Where the vehicle is now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Index into the route of the edge it is on (or has just left, inside a junction).
    pub route_index: usize,
    /// Inside the junction at the end of that edge.
    pub in_junction: bool,
    /// Metres from the start of the edge.
    pub lane_pos: f64,
    /// Seconds it has been standing still (0 while it moves).
    pub stopped_s: u32,
}

/// A request to show `phase` at `intersection` for `vehicle`, arriving in `eta_s`, with
/// `flush_s` needed to clear the queue standing ahead of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Preempt {
    pub intersection: usize,
    pub phase: usize,
    pub eta_s: f64,
    pub flush_s: f64,
    pub priority: u8,
    pub vehicle: String,
    /// Seconds the vehicle has been standing still: a held green that does not move it
    /// is given up ([`crate::Controller::step`]).
    pub stopped_s: u32,
}

/// A vehicle standing this long has no arrival time worth planning on: only the light it
/// is queued at is asked for (to flush the queue it stands in), none further ahead.
pub const STANDING_S: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmergencyPlan {
    /// Seconds per queued vehicle to leave the stop line.
    pub headway_s: f64,
    /// Signals further ahead than this (free-flow seconds) are not told yet.
    pub horizon_s: f64,
}

impl Default for EmergencyPlan {
    fn default() -> Self {
        Self {
            headway_s: 2.0,
            horizon_s: 90.0,
        }
    }
}

impl EmergencyPlan {
    /// The requests this vehicle needs now.
    pub fn requests(
        &self,
        network: &Network,
        run: &Emergency,
        at: Position,
        obs: &Observation,
    ) -> Vec<Preempt> {
        let mut out = Vec::new();
        let mut eta = 0.0;
        for k in at.route_index..run.route.len() {
            let edge = &network.edges[run.route[k].0 as usize];
            let lane = &network.lanes[edge.lanes[0].0 as usize];
            let ahead = if k == at.route_index {
                if at.in_junction {
                    0.0
                } else {
                    (lane.length - at.lane_pos).max(0.0)
                }
            } else {
                lane.length
            };
            eta += ahead / lane.speed.min(run.max_speed).max(1.0);
            let (Some(ix), Some(next)) = (edge.to_signal, run.route.get(k + 1)) else {
                continue;
            };
            let intersection = &network.intersections[ix];
            let next_lanes = &network.edges[next.0 as usize].lanes;
            let links: Vec<usize> = intersection
                .links
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    network.lanes[l.from.0 as usize].edge == run.route[k]
                        && next_lanes.contains(&l.to)
                })
                .map(|(i, _)| i)
                .collect();
            // Every movement of the lanes it may use: a vehicle ahead of it on a shared lane
            // (a straight-on car in a right-and-straight lane) waits for its own movement's
            // green, and the ambulance behind it with it.
            let lane_links: Vec<usize> = intersection
                .links
                .iter()
                .enumerate()
                .filter(|(_, l)| links.iter().any(|&k| intersection.links[k].from == l.from))
                .map(|(i, _)| i)
                .collect();
            let flushes = |p: usize| {
                lane_links
                    .iter()
                    .filter(|&&l| intersection.phases[p].serves(&intersection.links[l]))
                    .count()
            };
            // A phase giving all its links protected green (`G`) and serving every movement
            // of its lanes if one does, a plan phase before its approach's own phase
            // (nothing opposing: a yielding `g` turn would stop it), the one that lets most
            // other traffic go too; else the plan phase serving it best.
            let protected = |p: usize| {
                !links.is_empty()
                    && links.iter().all(|&l| {
                        intersection.phases[p].green[intersection.links[l].signal] == Some('G')
                    })
            };
            let green_links = |p: usize| {
                intersection.phases[p]
                    .green
                    .iter()
                    .filter(|g| g.is_some())
                    .count()
            };
            let serves = |p: usize| {
                links
                    .iter()
                    .filter(|&&l| intersection.phases[p].serves(&intersection.links[l]))
                    .count()
            };
            let Some(phase) = (0..intersection.phases.len())
                .filter(|&p| protected(p))
                .max_by_key(|&p| (flushes(p), p < intersection.plan_phases, green_links(p)))
                .or_else(|| (0..intersection.plan_phases).max_by_key(|&p| serves(p)))
            else {
                continue;
            };
            // Vehicles standing ahead of it on the lanes it may use.
            let mut queued = 0;
            for &l in &links {
                let from = intersection.links[l].from;
                let before = if k == at.route_index { ahead } else { f64::MAX };
                queued = queued.max(
                    obs.lanes[from.0 as usize]
                        .iter()
                        .filter(|v| v.to_stop < before)
                        .count(),
                );
            }
            if eta > self.horizon_s {
                break;
            }
            out.push(Preempt {
                intersection: ix,
                phase,
                eta_s: eta,
                flush_s: if queued > 0 {
                    self.headway_s * (queued as f64 + 1.0)
                } else {
                    0.0
                },
                priority: run.priority,
                vehicle: run.vehicle.clone(),
                stopped_s: at.stopped_s,
            });
            if at.stopped_s >= STANDING_S {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::*;
    use crate::{LaneId, Link};

    #[test]
    fn the_phase_asked_for_lets_a_shared_lanes_other_movement_go_too() {
        // North's one lane goes straight (link 0) and turns right to the west (link 2).
        // Phase 0 gives the right turn with east's movements (three links green), phase 1
        // north's whole approach. An ambulance turning right behind a car going straight
        // would stand behind it under phase 0.
        let mut net = crossing();
        let ix = &mut net.intersections[0];
        ix.links.push(Link {
            from: LaneId(0),
            to: LaneId(3),
            signal: 2,
        });
        ix.links.push(Link {
            from: LaneId(1),
            to: LaneId(2),
            signal: 3,
        });
        ix.signals = 4;
        ix.phases = vec![
            crate::Phase {
                green: vec![None, Some('G'), Some('G'), Some('G')],
            },
            crate::Phase {
                green: vec![Some('G'), None, Some('G'), None],
            },
        ];
        net.validate().unwrap();
        let run = Emergency {
            vehicle: "amb".into(),
            route: vec![EdgeId(0), EdgeId(3)],
            priority: 1,
            max_speed: f64::INFINITY,
        };
        let at = Position {
            route_index: 0,
            in_junction: false,
            lane_pos: 100.0,
            stopped_s: 0,
        };
        let r = EmergencyPlan::default().requests(&net, &run, at, &Observation::empty(&net));
        assert_eq!((r[0].intersection, r[0].phase), (0, 1));
    }

    #[test]
    fn requests_name_the_phase_the_arrival_and_the_queue_and_lapse_once_past() {
        let net = crossing();
        let run = Emergency {
            vehicle: "amb".into(),
            route: vec![EdgeId(1), EdgeId(3)],
            priority: 1,
            max_speed: f64::INFINITY,
        };
        let plan = EmergencyPlan::default();
        let mut obs = Observation::empty(&net);
        let far = Position {
            route_index: 0,
            in_junction: false,
            lane_pos: 0.0,
            stopped_s: 0,
        };
        let r = plan.requests(&net, &run, far, &obs);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].intersection, r[0].phase), (0, 1));
        assert!((r[0].eta_s - 200.0 / 13.9).abs() < 0.01);
        assert_eq!(r[0].flush_s, 0.0);
        // Beyond the horizon: nothing yet.
        let mut long = net.clone();
        long.lanes[1].length = 2000.0;
        assert!(plan.requests(&long, &run, far, &obs).is_empty());
        // A queue ahead of it: time to flush it.
        queue(&mut obs, 1, 5);
        assert_eq!(plan.requests(&net, &run, far, &obs)[0].flush_s, 12.0);
        // Inside the junction it still holds; on the next edge (no signal) nothing.
        let crossing_now = Position {
            route_index: 0,
            in_junction: true,
            lane_pos: 0.0,
            stopped_s: 0,
        };
        assert_eq!(plan.requests(&net, &run, crossing_now, &obs)[0].eta_s, 0.0);
        let past = Position {
            route_index: 1,
            in_junction: false,
            lane_pos: 5.0,
            stopped_s: 0,
        };
        assert!(plan.requests(&net, &run, past, &obs).is_empty());
    }
}
