//! Safety, replayed: every second of a run is recorded (signal states and what the
//! detectors saw) and checked afterwards from the outside (`replay::check`: minimum green,
//! yellow, all-red; its own tests show each rule can fail), and a movement with a vehicle
//! waiting at its stop line is not kept at red past the bound. Runs: every policy, with and
//! without emergency requests (some of them from vehicles that never move), on irregular
//! intersections (three and five approaches, shared lanes, yielding turns, a signal index
//! no connection uses) under random demand.

use citybrain_signals::{
    Controller, Edge, EdgeId, Intersection, Lane, LaneId, Link, Network, Observation, Phase,
    PolicyKind, Preempt, Seen, Timing,
};

/// SplitMix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One intersection with `approaches` incoming roads of two lanes (the left lane turns
/// left and goes straight, the right lane goes straight and turns right) and one outgoing
/// road per approach; phases: each approach alone, then opposite pairs with their left
/// turns yielding (`g`). Signal index 0 is unused.
fn junction(approaches: usize) -> Network {
    let mut net = Network::default();
    let lane = |net: &mut Network, name: String, edge: usize, length: f64| {
        let id = LaneId(net.lanes.len() as u32);
        net.lanes.push(Lane {
            name,
            edge: EdgeId(edge as u32),
            length,
            speed: 13.9,
        });
        id
    };
    let mut incoming = Vec::new();
    let mut outgoing = Vec::new();
    for a in 0..approaches {
        let e = net.edges.len();
        let lanes = vec![
            lane(&mut net, format!("in{a}_0"), e, 80.0 + 60.0 * a as f64),
            lane(&mut net, format!("in{a}_1"), e, 80.0 + 60.0 * a as f64),
        ];
        net.edges.push(Edge {
            name: format!("in{a}"),
            lanes: lanes.clone(),
            to_signal: Some(0),
        });
        incoming.push(lanes);
        let e = net.edges.len();
        // Short outgoing roads: spillback matters.
        let out = lane(&mut net, format!("out{a}_0"), e, 40.0 + 30.0 * a as f64);
        net.edges.push(Edge {
            name: format!("out{a}"),
            lanes: vec![out],
            to_signal: None,
        });
        outgoing.push(out);
    }
    let mut links = Vec::new();
    let mut signal = 1; // 0 is unused
    for a in 0..approaches {
        let straight = outgoing[(a + approaches / 2) % approaches];
        let left = outgoing[(a + approaches / 2 + 1) % approaches];
        let right = outgoing[(a + 1) % approaches];
        for (from, to) in [
            (incoming[a][0], left),
            (incoming[a][0], straight),
            (incoming[a][1], straight),
            (incoming[a][1], right),
        ] {
            links.push(Link { from, to, signal });
            signal += 1;
        }
    }
    let signals = signal;
    let approach_of = |s: usize| (s - 1) / 4;
    let mut phases = Vec::new();
    for a in 0..approaches {
        phases.push(Phase {
            green: (0..signals)
                .map(|s| (s > 0 && approach_of(s) == a).then_some('G'))
                .collect(),
        });
    }
    for a in 0..approaches / 2 {
        let b = a + approaches / 2;
        phases.push(Phase {
            green: (0..signals)
                .map(|s| {
                    if s == 0 || (approach_of(s) != a && approach_of(s) != b) {
                        None
                    } else if (s - 1) % 4 == 0 {
                        Some('g') // left turn yields to the opposing straight
                    } else {
                        Some('G')
                    }
                })
                .collect(),
        });
    }
    net.intersections.push(Intersection {
        name: format!("j{approaches}"),
        links,
        signals,
        stop_go: Vec::new(),
        plan_phases: phases.len(),
        phases,
    });
    net.validate().unwrap();
    net.add_approach_phases();
    net
}

struct Record {
    states: Vec<String>,
    /// Per second and link: a vehicle stood at its stop line.
    waiting: Vec<Vec<bool>>,
}

fn run(net: &Network, kind: PolicyKind, timing: Timing, seed: u64, emergencies: bool) -> Record {
    let mut rng = Rng(seed);
    let mut c = Controller::new(net, timing, kind.build(net));
    let ix = &net.intersections[0];
    let mut obs = Observation::empty(net);
    let mut record = Record {
        states: Vec::new(),
        waiting: Vec::new(),
    };
    let mut requests: Vec<Preempt> = Vec::new();
    for t in 0..3_000u32 {
        // Demand changes every few seconds: queues, moving vehicles, full outgoing roads.
        if t % 7 == 0 {
            for (l, lane) in net.lanes.iter().enumerate() {
                let n = rng.below(12) as usize;
                obs.lanes[l] = (0..n)
                    .map(|k| Seen {
                        to_stop: (1.0 + 7.5 * k as f64 + rng.below(3) as f64).min(lane.length),
                        speed: if rng.below(3) == 0 { 8.0 } else { 0.0 },
                    })
                    .collect();
            }
        }
        if emergencies && t % 150 == 0 {
            // A vehicle on a random approach wanting a random phase, for 60 s; one in
            // three never moves.
            let stuck = rng.below(3) == 0;
            requests = vec![Preempt {
                intersection: 0,
                phase: rng.below(ix.phases.len() as u64) as usize,
                eta_s: 20.0,
                flush_s: 2.0 * rng.below(8) as f64,
                priority: 1,
                vehicle: format!("amb{t}"),
                stopped_s: u32::from(stuck),
            }];
        }
        for r in &mut requests {
            r.eta_s = (r.eta_s - 1.0).max(0.0);
            if r.stopped_s > 0 {
                r.stopped_s += 1;
            }
        }
        if t % 150 == 60 {
            requests.clear();
        }
        c.step(net, t, &obs, &requests);
        record.states.push(c.states(net)[0].clone());
        record.waiting.push(
            ix.links
                .iter()
                .map(|l| {
                    obs.lanes[l.from.0 as usize]
                        .iter()
                        .any(|v| v.speed < 0.1 && v.to_stop < 15.0)
                })
                .collect(),
        );
    }
    record
}

/// Checks the record with [`citybrain_signals::replay::check`]; returns the longest a
/// link waited at red with a vehicle at its stop line.
fn check(net: &Network, timing: Timing, record: &Record, what: &str) -> u32 {
    let violations = citybrain_signals::replay::check(&timing, &record.states);
    assert!(
        violations.is_empty(),
        "{what}: {:?}",
        &violations[..violations.len().min(5)]
    );
    let ix = &net.intersections[0];
    let green = |t: usize, s: usize| matches!(record.states[t].as_bytes()[s], b'G' | b'g');
    let mut longest = 0;
    for (l, link) in ix.links.iter().enumerate() {
        let mut since = None;
        for t in 0..record.states.len() {
            match (!green(t, link.signal) && record.waiting[t][l], since) {
                (true, None) => since = Some(t),
                (false, Some(_)) => since = None,
                (true, Some(s)) => longest = longest.max((t - s) as u32),
                _ => {}
            }
        }
    }
    longest
}

#[test]
fn every_decision_of_every_policy_keeps_the_safety_rules() {
    let timing = Timing {
        min_green_s: 5,
        max_green_s: 60,
        yellow_s: 3,
        all_red_s: 2,
        max_wait_s: 90,
    };
    let mut checked = 0;
    for approaches in [3, 4, 5] {
        let net = junction(approaches);
        let plan_phases = net.intersections[0].plan_phases as u32;
        let clearance = timing.yellow_s + timing.all_red_s;
        // Two links starving at once in different phases: the second waits for the first
        // one's minimum green and a clearance more, and so on over the phases.
        let bound =
            timing.max_wait_s + (plan_phases - 1) * (timing.min_green_s + clearance) + clearance;
        for kind in [
            PolicyKind::FixedTime,
            PolicyKind::MaxPressure,
            PolicyKind::Adaptive,
        ] {
            for emergencies in [false, true] {
                for seed in 0..3 {
                    let what = format!(
                        "{approaches} approaches, {kind:?}, emergencies {emergencies}, seed {seed}"
                    );
                    let record = run(&net, kind, timing, seed, emergencies);
                    let longest = check(&net, timing, &record, &what);
                    if kind != PolicyKind::FixedTime {
                        assert!(
                            longest <= bound,
                            "{what}: a vehicle waited {longest} s (bound {bound})"
                        );
                    }
                    checked += record.states.len();
                }
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 2 * 3 * 3_000);
}
