//! A day of alarms and of grid workers on patrol, and the day played out under two ways of
//! dispatching: the nearest available worker by road with [`crate::dispatch::Dispatcher`]
//! (a minute to acknowledge, then the next), and the seeds' baseline, the alarm's grid's own
//! worker. Both see the same alarms, the same positions and the same answers from each
//! worker; the measure is the share of alarms with someone on site within three minutes.
//!
//! Behaviour (stated, synthetic): workers patrol 07:00–22:00, a new position within 600 m of
//! their grid (its share of the city's disc) every half hour; an alarm comes from a resident's home between 07:00
//! and 22:00; a worker asked answers with probability 0.85, after 8 s plus a log-normal delay
//! (median 20 s; some answer too late), and stays busy for 15 minutes after arriving.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use citybrain_core::rng::Rng;
use citybrain_core::{Date, GeoPoint, TimeZone, Timestamp};
use serde::{Deserialize, Serialize};

use crate::demo::GridRow;
use crate::dispatch::{ACK_S, Alarm, Dispatcher, Roads, SITE_S, StepKind, Workers, travel_s};

const S: i64 = 1_000_000;
const BUSY_AFTER_S: i64 = 15 * 60;

/// A worker's position at an instant (`community.worker_positions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub worker_id: String,
    pub grid: String,
    pub loc: GeoPoint,
    pub on_duty: bool,
    #[serde(with = "citybrain_core::time::as_text")]
    pub at: Timestamp,
}

/// The day.
#[derive(Debug, Clone, Default)]
pub struct AlarmDay {
    pub positions: Vec<Position>,
    pub alarms: Vec<Alarm>,
}

pub fn near(rng: &mut Rng, at: GeoPoint, metres: f64) -> GeoPoint {
    let r = metres * rng.f64().sqrt();
    let a = std::f64::consts::TAU * rng.f64();
    GeoPoint {
        lon: at.lon + r * a.cos() / (111_320.0 * at.lat.to_radians().cos()),
        lat: at.lat + r * a.sin() / 111_320.0,
    }
}

/// Positions every half hour of the patrol (within `patrol_m` of the grid's centre) and
/// `alarms` alarms at `homes`, on `day`.
pub fn generate(
    seed: u64,
    grids: &[GridRow],
    homes: &[GeoPoint],
    day: Date,
    zone: &TimeZone,
    patrol_m: f64,
    alarms: usize,
) -> AlarmDay {
    let mut rng = Rng::new(seed ^ 0x00a1_a2a3);
    let start = zone.day_start(day).0;
    let mut positions = Vec::new();
    for half_hour in 14..=44 {
        let at = Timestamp(start + half_hour * 1_800 * S);
        for g in grids {
            positions.push(Position {
                worker_id: g.worker_id.clone(),
                grid: g.grid.clone(),
                loc: near(&mut rng, g.centre, patrol_m),
                on_duty: half_hour < 44,
                at,
            });
        }
    }
    let kinds = ["smoke", "fall", "water_leak"];
    let mut out: Vec<Alarm> = (0..alarms)
        .map(|i| {
            let home = homes[rng.below(homes.len().max(1) as u64) as usize];
            Alarm {
                alarm_id: format!("AL{:06}", i + 1),
                kind: kinds[rng.below(3) as usize].to_string(),
                loc: home,
                raised_at: Timestamp(start + (7 * 3600 + rng.below(15 * 3600) as i64) * S),
            }
        })
        .collect();
    out.sort_by_key(|a| a.raised_at);
    AlarmDay {
        positions,
        alarms: out,
    }
}

/// Whether and when a worker answers an alarm: the same in both ways of dispatching.
fn answer_s(seed: u64, alarm: &str, worker: &str) -> Option<f64> {
    let mut h: u64 = seed ^ 0xcbf2_9ce4_8422_2325;
    for b in alarm.bytes().chain([0]).chain(worker.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = Rng::new(h);
    (rng.f64() < 0.85).then(|| 8.0 + 20.0 * (0.7 * rng.normal()).exp())
}

/// How dispatching is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The available worker who is there first by road; the next after a minute unanswered.
    Nearest,
    /// The grid's own worker, and only them (the seeds' baseline).
    OwnGrid,
}

/// How a day went.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    pub alarms: usize,
    /// Someone on site within three minutes of the alarm.
    pub within_3_min: usize,
    /// On site at all (late or not).
    pub reached: usize,
    pub median_on_site_s: Option<f64>,
    /// Workers asked, in all (reassignments included).
    pub asked: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Position(usize),
    Alarm(usize),
    Tick,
    Answer(usize, u32),
    Arrive(usize, u32),
    Release(u32),
}

/// Which grid an alarm belongs to: the one whose centre is nearest.
fn grid_of(grids: &[GridRow], at: GeoPoint) -> usize {
    (0..grids.len())
        .min_by(|a, b| {
            at.distance_m(&grids[*a].centre)
                .total_cmp(&at.distance_m(&grids[*b].centre))
        })
        .unwrap_or(0)
}

/// Plays the day out under `policy`.
pub fn simulate(
    roads: &Roads,
    grids: &[GridRow],
    day: &AlarmDay,
    policy: Policy,
    seed: u64,
) -> Outcome {
    let mut workers = Workers::default();
    let mut queue: BinaryHeap<Reverse<(i64, Event)>> = BinaryHeap::new();
    for (i, p) in day.positions.iter().enumerate() {
        queue.push(Reverse((p.at.0, Event::Position(i))));
    }
    for (i, a) in day.alarms.iter().enumerate() {
        queue.push(Reverse((a.raised_at.0, Event::Alarm(i))));
    }
    let by_id: HashMap<&str, usize> = day
        .alarms
        .iter()
        .enumerate()
        .map(|(i, a)| (a.alarm_id.as_str(), i))
        .collect();
    let mut dispatcher = Dispatcher::default();
    let mut outcome = Outcome {
        alarms: day.alarms.len(),
        ..Outcome::default()
    };
    let mut on_site_s = Vec::new();
    let mut done: HashSet<usize> = HashSet::new();
    // Each assignment: when the worker answers, if they do.
    let ask = |queue: &mut BinaryHeap<Reverse<(i64, Event)>>,
               workers: &Workers,
               alarm: usize,
               w: u32,
               at: Timestamp| {
        if let Some(delay) = answer_s(seed, &day.alarms[alarm].alarm_id, &workers.get(w).id)
            && delay < ACK_S as f64
        {
            queue.push(Reverse((
                at.0 + (delay * 1e6) as i64,
                Event::Answer(alarm, w),
            )));
        }
        queue.push(Reverse((at.0 + ACK_S * S, Event::Tick)));
    };
    while let Some(Reverse((t, event))) = queue.pop() {
        let now = Timestamp(t);
        match event {
            Event::Position(i) => {
                let p = &day.positions[i];
                let busy = workers
                    .index_of(&p.worker_id)
                    .is_some_and(|w| workers.get(w).busy);
                if !busy {
                    workers.set(roads, &p.worker_id, &p.grid, p.loc, p.on_duty);
                }
            }
            Event::Alarm(i) => {
                let alarm = day.alarms[i].clone();
                queue.push(Reverse((alarm.raised_at.0 + SITE_S * S, Event::Tick)));
                match policy {
                    Policy::Nearest => {
                        for step in dispatcher.raise(roads, &mut workers, alarm, now) {
                            if let (StepKind::Assigned { .. }, Some(w)) = (&step.kind, &step.worker)
                            {
                                outcome.asked += 1;
                                let w = workers.index_of(w).expect("assigned");
                                ask(&mut queue, &workers, i, w, step.at);
                            }
                        }
                    }
                    Policy::OwnGrid => {
                        let own = &grids[grid_of(grids, alarm.loc)].worker_id;
                        if let Some(w) = workers.index_of(own)
                            && workers.get(w).on_duty
                            && !workers.get(w).busy
                        {
                            outcome.asked += 1;
                            workers.set_busy(w, true);
                            // Unanswered in a minute: nobody else is asked.
                            match answer_s(seed, &alarm.alarm_id, own) {
                                Some(delay) if delay < ACK_S as f64 => {
                                    queue.push(Reverse((
                                        t + (delay * 1e6) as i64,
                                        Event::Answer(i, w),
                                    )));
                                }
                                _ => queue.push(Reverse((t + ACK_S * S, Event::Release(w)))),
                            }
                        }
                    }
                }
            }
            Event::Tick => {
                if policy == Policy::Nearest {
                    for step in dispatcher.tick(roads, &mut workers, now) {
                        if let (StepKind::Assigned { .. }, Some(w)) = (&step.kind, &step.worker) {
                            outcome.asked += 1;
                            let i = by_id[step.alarm_id.as_str()];
                            let w = workers.index_of(w).expect("assigned");
                            ask(&mut queue, &workers, i, w, step.at);
                        }
                    }
                }
            }
            Event::Answer(i, w) => {
                let still_asked = match policy {
                    Policy::Nearest => dispatcher
                        .acknowledge(&workers, &day.alarms[i].alarm_id, w, now)
                        .is_ok(),
                    Policy::OwnGrid => true,
                };
                if still_asked {
                    let travel = travel_s(roads, workers.get(w), day.alarms[i].loc);
                    match travel {
                        Some(s) => queue.push(Reverse((t + (s * 1e6) as i64, Event::Arrive(i, w)))),
                        None => queue.push(Reverse((t, Event::Release(w)))),
                    }
                }
            }
            Event::Arrive(i, w) => {
                if policy == Policy::Nearest {
                    let _ = dispatcher.on_site(&mut workers, &day.alarms[i].alarm_id, w, now);
                }
                workers.set_busy(w, true);
                queue.push(Reverse((t + BUSY_AFTER_S * S, Event::Release(w))));
                if done.insert(i) {
                    let took = (t - day.alarms[i].raised_at.0) as f64 / 1e6;
                    outcome.reached += 1;
                    if took <= SITE_S as f64 {
                        outcome.within_3_min += 1;
                    }
                    on_site_s.push(took);
                }
            }
            Event::Release(w) => workers.set_busy(w, false),
        }
    }
    on_site_s.sort_by(f64::total_cmp);
    outcome.median_on_site_s = on_site_s.get(on_site_s.len() / 2).copied();
    outcome
}
