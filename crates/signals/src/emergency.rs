//! Emergency preemption (一键护航): the lights ahead of an emergency vehicle turn green in
//! time for it to pass without stopping.
//!
//! For every signal on the vehicle's route ahead, a [`Preempt`] is issued once the vehicle's
//! free-flow arrival is within the time needed to get there safely: finishing the minimum
//! green, the clearance, and flushing the queue standing in front of it on its lanes, plus a
//! margin. The request holds the phase green until the vehicle has left the approach; then
//! it lapses and normal control resumes through the usual clearance. Several vehicles at
//! one intersection: the higher priority, then the earlier arrival, wins
//! ([`crate::Controller::step`]).

use crate::{EdgeId, Network, Observation, Timing};

/// An emergency run: the vehicle, its route (edges in order) and its priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Emergency {
    pub vehicle: String,
    pub route: Vec<EdgeId>,
    /// Higher wins a conflict.
    pub priority: u8,
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
}

/// A request to show `phase` at `intersection` for `vehicle`, arriving in `eta_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct Preempt {
    pub intersection: usize,
    pub phase: usize,
    pub eta_s: f64,
    pub priority: u8,
    pub vehicle: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmergencyPlan {
    /// Seconds per queued vehicle to leave the stop line.
    pub headway_s: f64,
    /// Extra lead, seconds.
    pub margin_s: f64,
}

impl Default for EmergencyPlan {
    fn default() -> Self {
        Self {
            headway_s: 2.0,
            margin_s: 6.0,
        }
    }
}

impl EmergencyPlan {
    /// The requests this vehicle needs now.
    pub fn requests(
        &self,
        network: &Network,
        timing: &Timing,
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
            eta += ahead / lane.speed.max(1.0);
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
            let Some(phase) = (0..intersection.phases.len()).max_by_key(|&p| {
                links
                    .iter()
                    .filter(|&&l| intersection.phases[p].is_green(l))
                    .count()
            }) else {
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
            let lead = f64::from(timing.min_green_s + timing.yellow_s + timing.all_red_s)
                + self.headway_s * queued as f64
                + self.margin_s;
            if eta <= lead {
                out.push(Preempt {
                    intersection: ix,
                    phase,
                    eta_s: eta,
                    priority: run.priority,
                    vehicle: run.vehicle.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::*;

    #[test]
    fn a_request_comes_in_time_and_lapses_once_past() {
        let net = crossing();
        let timing = Timing::default();
        let run = Emergency {
            vehicle: "amb".into(),
            route: vec![EdgeId(1), EdgeId(3)],
            priority: 1,
        };
        let plan = EmergencyPlan::default();
        let mut obs = Observation::empty(&net);
        // 190 m out at 13.9 m/s: 13.7 s, beyond the 16 s lead? No: within it.
        let far = Position {
            route_index: 0,
            in_junction: false,
            lane_pos: 0.0,
        };
        // Lead with no queue: 5 + 3 + 2 + 6 = 16 s; 200 m at 13.9 m/s is 14.4 s.
        let r = plan.requests(&net, &timing, &run, far, &obs);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].intersection, r[0].phase), (0, 1));
        // A longer edge puts it out of range until it comes closer.
        let mut long = net.clone();
        long.lanes[1].length = 1000.0;
        assert!(plan.requests(&long, &timing, &run, far, &obs).is_empty());
        // A queue ahead of it brings the request forward: 30 cars = 60 s more lead.
        queue(&mut obs, 1, 30);
        assert_eq!(plan.requests(&long, &timing, &run, far, &obs).len(), 1);
        // Inside the junction it still holds; on the next edge (no signal) nothing.
        let crossing_now = Position {
            route_index: 0,
            in_junction: true,
            lane_pos: 0.0,
        };
        assert_eq!(
            plan.requests(&net, &timing, &run, crossing_now, &obs).len(),
            1
        );
        let past = Position {
            route_index: 1,
            in_junction: false,
            lane_pos: 5.0,
        };
        assert!(plan.requests(&net, &timing, &run, past, &obs).is_empty());
    }
}
