//! The SUMO connector: citybrain's signal control driving SUMO, the open microscopic traffic
//! simulator, over TraCI. SUMO is the referee: it moves every vehicle and reports each
//! trip's time loss; citybrain only sees what detectors would (each vehicle's lane,
//! position and speed) and sets the lights.
//!
//! (This file stays whole, about 810 lines: it is one run, start SUMO, step it, observe,
//! decide, collect its results, whose pieces share the run's state; TraCI, networks, routes,
//! maps, reports and comparison already live in their own modules.)
//!
//! [`run`] starts `sumo` on a free port, steps it second by second, and for a controlled
//! run feeds the observations to a [`Controller`] and sends back the changed signal states
//! in the same message as the next step.

pub mod compare;
pub mod map;
pub mod net;
pub mod report;
pub mod routes;
pub mod scenario;
pub mod traci;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use citybrain_signals::{
    Controller, Emergency, EmergencyPlan, Network, Observation, PolicyKind, Seen, Timing,
    emergency::Position,
};

pub use routes::{Ambulance, Trip};
use traci::{Command, Subscription, Traci};

#[derive(Debug, thiserror::Error)]
pub enum SumoError {
    #[error("cannot start SUMO ({0}): install it with bench/signals/run, or pass --sumo PATH")]
    Start(String),
    #[error("cannot connect to SUMO at {0}")]
    Connect(String),
    #[error("SUMO refused command 0x{command:02x}: {message}")]
    Refused { command: u8, message: String },
    #[error("TraCI protocol: {0}")]
    Protocol(String),
    #[error("network file: {0}")]
    Net(String),
    #[error("routes: {0}")]
    Routes(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub sumo: PathBuf,
    pub net: PathBuf,
    pub routes: Vec<PathBuf>,
    /// `None`: the network's own fixed-time plans, untouched.
    pub policy: Option<PolicyKind>,
    pub timing: Timing,
    /// Emergency runs in the routes (ids and routes), and whether to clear their path.
    pub ambulances: Vec<Ambulance>,
    pub preempt: bool,
    /// Stop this many seconds after the first departure even if vehicles are left
    /// (gridlock).
    pub max_end_s: u32,
    /// Where SUMO writes its trip results.
    pub out_dir: PathBuf,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub label: String,
    /// Vehicles SUMO loaded from the route files (it counts flows and trips itself).
    pub loaded: usize,
    pub arrived: usize,
    /// Vehicles SUMO moved ahead out of a jam (stuck 300 s), from its statistics.
    pub teleports: u64,
    /// Safety events SUMO counted (its statistics): decelerations harder than a vehicle's
    /// comfortable maximum, and collisions.
    pub emergency_braking: u64,
    pub emergency_stops: u64,
    pub collisions: u64,
    /// The simulation's first second (the first departure in the route files).
    pub begin_s: u32,
    pub end_s: u32,
    /// The last arrival, seconds after `begin_s`.
    pub last_arrival_s: f64,
    /// Means over the other (non-emergency) vehicles that arrived.
    pub mean_time_loss_s: f64,
    /// Time waiting to enter the network (SUMO's departDelay), not in `timeLoss`.
    pub mean_entry_wait_s: f64,
    pub mean_travel_s: f64,
    /// Controller time per step (all intersections), µs.
    pub decide_mean_us: f64,
    pub decide_max_us: f64,
    pub decide_p99_us: f64,
    pub decide_p999_us: f64,
    pub ambulances: Vec<AmbulanceResult>,
    pub phase_changes: u64,
    /// Per emergency vehicle: its halts on lanes leading to a signal.
    pub signal_stops: HashMap<String, u32>,
    /// Per emergency vehicle: those of its halts at signals where the light had just
    /// acted for another emergency vehicle ([`Controller::served`]).
    pub yielded_stops: HashMap<String, u32>,
}

#[derive(Debug, Clone)]
pub struct AmbulanceResult {
    pub id: String,
    pub travel_s: f64,
    /// Travel time without any loss (SUMO: duration − timeLoss).
    pub free_flow_s: f64,
    /// Halts anywhere (SUMO's `waitingCount`: behind the network's entry too).
    pub stops: u32,
    /// Halts on a lane leading to a signal (at its red or in the queue before it).
    pub signal_stops: u32,
    /// Of those, halts where the light had just acted for another emergency vehicle.
    pub yielded_stops: u32,
}

/// A run driven while it goes (the live signal scene): emergency runs come in, events go
/// out, and the simulation keeps to the wall clock.
pub struct Live<'a> {
    pub inbox: &'a std::sync::mpsc::Receiver<LiveCommand>,
    pub on_event: &'a mut dyn FnMut(LiveEvent),
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    pub stop: &'a std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Live<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("speed", &self.speed).finish()
    }
}

#[derive(Debug)]
pub enum LiveCommand {
    /// Send an emergency vehicle along `edges` now; the reply says whether SUMO took it.
    Emergency {
        id: String,
        edges: Vec<String>,
        priority: u8,
        reply: std::sync::mpsc::Sender<Result<(), String>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A phase change and why.
    Decision {
        t: u32,
        intersection: String,
        phase: usize,
        /// The phase's signal state, one character per link (`G`, `g`, `r`).
        state: String,
        reason: String,
    },
    /// An emergency vehicle's second: where it is, the next light and its arrival there.
    Progress {
        id: String,
        t: u32,
        edge: String,
        speed: f64,
        next_light: Option<String>,
        eta_s: Option<f64>,
        stops: u32,
    },
    /// It has arrived.
    Arrived {
        id: String,
        t: u32,
        departed: u32,
        stops: u32,
    },
}

/// An emergency run being followed live.
#[derive(Debug)]
struct Following {
    departed: Option<u32>,
    stopped: bool,
    stops: u32,
}

fn describe(reason: &citybrain_signals::Reason) -> String {
    use citybrain_signals::Reason;
    match reason {
        Reason::Policy { score, runner_up } => {
            format!("policy: this phase's demand {score:.1} against the next best {runner_up:.1}")
        }
        Reason::MinGreen => "minimum green".into(),
        Reason::MaxGreen => "maximum green reached".into(),
        Reason::Starvation { link, waited_s } => {
            format!("starvation bound: link {link} waited {waited_s} s")
        }
        Reason::Emergency { vehicle } => format!("emergency vehicle {vehicle}"),
        Reason::Clearance => "clearance".into(),
    }
}

fn free_port() -> Result<u16, SumoError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Runs SUMO once under the given control.
pub fn run(config: &RunConfig) -> Result<RunResult, SumoError> {
    run_with(config, None)
}

/// Runs SUMO under the given control, live if `live` is given (until its stop flag).
pub fn run_with(config: &RunConfig, live: Option<Live<'_>>) -> Result<RunResult, SumoError> {
    let network = net::parse(&std::fs::read_to_string(&config.net)?)?;
    std::fs::create_dir_all(&config.out_dir)?;
    let trips_path = config.out_dir.join("tripinfo.xml");
    let log_path = config.out_dir.join("sumo.log");
    // One run at a time between picking a free port and connecting to the SUMO listening on
    // it: two runs picking the same port would connect to one SUMO and leave the other
    // waiting forever.
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port()?;
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut demand = routes::Demand::default();
    for p in &config.routes {
        demand = demand.and(routes::demand(&std::fs::read_to_string(p)?)?);
    }
    // The simulation starts with the first departure (RESCO's demand starts at 25,200 s or
    // 57,600 s: no point stepping through an empty night).
    let begin_s = demand.first_depart_s.max(0.0).floor() as u32;
    let stats_path = config.out_dir.join("statistics.xml");
    let mut child = Process::new(&config.sumo)
        .arg("-n")
        .arg(&config.net)
        .arg("-r")
        .arg(routes.join(","))
        .args(["--remote-port", &port.to_string()])
        .args(["--step-length", "1", "--seed", "42"])
        .args(["--begin", &begin_s.to_string()])
        // Warnings (teleports, emergency braking) go to the log; the counts come from the
        // statistics.
        .args(["--no-step-log", "true"])
        .arg("--tripinfo-output")
        .arg(&trips_path)
        .arg("--statistic-output")
        .arg(&stats_path)
        .arg("--log")
        .arg(&log_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| SumoError::Start(format!("{}: {e}", config.sumo.display())))?;
    let result = Traci::connect(port, Duration::from_secs(30)).and_then(|sumo| {
        drop(starting);
        drive(config, &network, sumo, live, begin_s, demand.last_depart_s)
    });
    let status = child.wait()?;
    let mut result = result.map_err(|e| match e {
        SumoError::Io(_) | SumoError::Connect(_) => SumoError::Start(format!(
            "{e}; SUMO exited with {status}; see {}",
            log_path.display()
        )),
        e => e,
    })?;
    let trips = routes::read_trips(&std::fs::read_to_string(&trips_path)?)?;
    let stats = read_statistics(&std::fs::read_to_string(&stats_path)?)?;
    result.loaded = stats.loaded;
    result.teleports = stats.teleports;
    result.emergency_braking = stats.emergency_braking;
    result.emergency_stops = stats.emergency_stops;
    result.collisions = stats.collisions;
    result.begin_s = begin_s;
    result.arrived = trips.len();
    result.last_arrival_s = trips
        .iter()
        .map(|t| t.arrival_s - f64::from(begin_s))
        .fold(0.0, f64::max);
    let amb: HashMap<&str, &Ambulance> = config
        .ambulances
        .iter()
        .map(|a| (a.id.as_str(), a))
        .collect();
    let others: Vec<&Trip> = trips
        .iter()
        .filter(|t| !amb.contains_key(t.id.as_str()))
        .collect();
    let n = others.len().max(1) as f64;
    result.mean_time_loss_s = others.iter().map(|t| t.time_loss_s).sum::<f64>() / n;
    result.mean_entry_wait_s = others.iter().map(|t| t.entry_wait_s).sum::<f64>() / n;
    result.mean_travel_s = others.iter().map(|t| t.duration_s).sum::<f64>() / n;
    result.ambulances = trips
        .iter()
        .filter(|t| amb.contains_key(t.id.as_str()))
        .map(|t| AmbulanceResult {
            id: t.id.clone(),
            travel_s: t.duration_s,
            free_flow_s: t.duration_s - t.time_loss_s,
            stops: t.stops,
            signal_stops: result.signal_stops.get(&t.id).copied().unwrap_or(0),
            yielded_stops: result.yielded_stops.get(&t.id).copied().unwrap_or(0),
        })
        .collect();
    Ok(result)
}

const VEHICLE_VARS: [u8; 4] = [
    traci::VAR_LANE_ID,
    traci::VAR_LANEPOSITION,
    traci::VAR_SPEED,
    traci::VAR_ROUTE_INDEX,
];

/// Replays a controlled run's recorded signal states (`states.tsv` in its `out_dir`)
/// against the safety rules ([`citybrain_signals::replay::check`]), every light from its
/// first state to `end_s`; returns each violation with its light. Also the number of
/// seconds checked.
pub fn replay(
    states_tsv: &str,
    timing: &Timing,
    end_s: u32,
) -> (Vec<(String, citybrain_signals::replay::Violation)>, usize) {
    let mut lights: Vec<(String, Vec<(u32, String)>)> = Vec::new();
    for line in states_tsv.lines() {
        let mut f = line.split('\t');
        let (Some(t), Some(light), Some(state)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(t) = t.parse::<u32>() else { continue };
        match lights.iter_mut().find(|(l, _)| l == light) {
            Some((_, changes)) => changes.push((t, state.to_string())),
            None => lights.push((light.to_string(), vec![(t, state.to_string())])),
        }
    }
    let mut violations = Vec::new();
    let mut seconds = 0;
    for (light, changes) in lights {
        let mut per_second = Vec::new();
        for (k, (t, state)) in changes.iter().enumerate() {
            let until = changes.get(k + 1).map_or(end_s, |c| c.0);
            for _ in *t..until.max(*t + 1) {
                per_second.push(state.clone());
            }
        }
        seconds += per_second.len();
        violations.extend(
            citybrain_signals::replay::check(timing, &per_second)
                .into_iter()
                .map(|v| (light.clone(), v)),
        );
    }
    (violations, seconds)
}

/// SUMO's end-of-run statistics (`--statistic-output`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Statistics {
    pub loaded: usize,
    pub teleports: u64,
    pub emergency_braking: u64,
    pub emergency_stops: u64,
    pub collisions: u64,
}

pub fn read_statistics(xml: &str) -> Result<Statistics, SumoError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| SumoError::Routes(e.to_string()))?;
    let get = |tag: &str, attr: &str| -> Result<u64, SumoError> {
        doc.descendants()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.attribute(attr))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| SumoError::Routes(format!("statistics without {tag} {attr}")))
    };
    Ok(Statistics {
        loaded: get("vehicles", "loaded")? as usize,
        teleports: get("teleports", "total")?,
        emergency_braking: get("safety", "emergencyBraking")?,
        emergency_stops: get("safety", "emergencyStops")?,
        collisions: get("safety", "collisions")?,
    })
}

/// Routes a route file's `<trip>`s and `<flow>`s with SUMO's own router (`duarouter`, next
/// to `sumo`), so that emergency runs can be picked from real routes; returns the routed
/// file (in `out_dir`). Trips it cannot route are dropped from the copy, not the runs.
pub fn route_trips(
    sumo: &std::path::Path,
    net: &std::path::Path,
    routes: &std::path::Path,
    out_dir: &std::path::Path,
) -> Result<PathBuf, SumoError> {
    let duarouter = sumo.with_file_name("duarouter");
    let out = out_dir.join("routed.rou.xml");
    let result = Process::new(&duarouter)
        .arg("-n")
        .arg(net)
        .arg("--route-files")
        .arg(routes)
        .arg("-o")
        .arg(&out)
        .args(["--ignore-errors", "true", "--no-step-log", "true"])
        .args(["--no-warnings", "true", "--seed", "42"])
        .output()
        .map_err(|e| SumoError::Start(format!("{}: {e}", duarouter.display())))?;
    if !result.status.success() {
        return Err(SumoError::Routes(format!(
            "duarouter: {}",
            String::from_utf8_lossy(&result.stderr)
        )));
    }
    Ok(out)
}

fn drive(
    config: &RunConfig,
    network: &Network,
    mut sumo: Traci,
    mut live: Option<Live<'_>>,
    begin_s: u32,
    last_depart_s: f64,
) -> Result<RunResult, SumoError> {
    let started = Instant::now();
    let mut following: HashMap<String, Following> = HashMap::new();
    let lanes: HashMap<&str, usize> = network
        .lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    let mut controller = config.policy.map(|kind| {
        let timing = if kind == PolicyKind::MaxPressure {
            // Plain max-pressure as published: no maximum green, no starvation bound.
            Timing {
                max_green_s: u32::MAX,
                max_wait_s: u32::MAX,
                ..config.timing
            }
        } else {
            config.timing
        };
        Controller::new(network, timing, kind.build(network))
    });
    let mut runs: Vec<Emergency> = config
        .ambulances
        .iter()
        .map(|a| {
            Ok(Emergency {
                vehicle: a.id.clone(),
                route: a
                    .edges
                    .iter()
                    .map(|e| {
                        network
                            .edge_by_name(e)
                            .ok_or_else(|| SumoError::Routes(format!("{}: unknown edge {e}", a.id)))
                    })
                    .collect::<Result<_, SumoError>>()?,
                priority: a.priority,
                max_speed: routes::AMBULANCE_MAX_SPEED_MPS,
            })
        })
        .collect::<Result<_, SumoError>>()?;
    let plan = EmergencyPlan::default();
    sumo.send(&[traci::subscribe(
        traci::CMD_SUBSCRIBE_SIM_VARIABLE,
        "",
        &[
            traci::VAR_DEPARTED_VEHICLES_IDS,
            traci::VAR_TELEPORT_STARTING_VEHICLES_NUMBER,
            traci::VAR_MIN_EXPECTED_VEHICLES,
        ],
    )])?;
    let mut result = RunResult {
        label: config
            .policy
            .map_or("fixed-time (the network's plans)", |k| k.name())
            .to_string(),
        ..RunResult::default()
    };
    let mut shown: Vec<String> = Vec::new();
    let mut departed: Vec<String> = Vec::new();
    let mut decide: Vec<f64> = Vec::new();
    let mut obs = Observation::empty(network);
    let mut positions: HashMap<String, Position> = HashMap::new();
    let mut speeds: HashMap<String, f64> = HashMap::new();
    let mut halts = Halts::default();
    // Every state shown, when it changed: `t<TAB>light<TAB>state` (see [`replay`]).
    let mut state_log = String::new();
    let mut now: u32 = begin_s;
    // Each second of every emergency run on stderr: where it is, what it asks, what the
    // lights show (why an ambulance stopped).
    let trace = config.preempt && std::env::var_os("CITYBRAIN_TRACE_EMERGENCY").is_some();
    let max_end_s = begin_s.saturating_add(config.max_end_s);
    loop {
        if let Some(live) = live.as_mut() {
            if live.stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            // Keep to the wall clock.
            let due = started + Duration::from_secs_f64(f64::from(now) / live.speed.max(0.01));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            while let Ok(LiveCommand::Emergency {
                id,
                edges,
                priority,
                reply,
            }) = live.inbox.try_recv()
            {
                let outcome = add_emergency(&mut sumo, network, &id, &edges).map(|route| {
                    runs.push(Emergency {
                        vehicle: id.clone(),
                        route,
                        priority,
                        max_speed: routes::AMBULANCE_MAX_SPEED_MPS,
                    });
                    following.insert(
                        id,
                        Following {
                            departed: None,
                            stopped: false,
                            stops: 0,
                        },
                    );
                });
                let _ = reply.send(outcome);
            }
        }
        let mut commands: Vec<Command> = departed
            .drain(..)
            .map(|v| traci::subscribe(traci::CMD_SUBSCRIBE_VEHICLE_VARIABLE, &v, &VEHICLE_VARS))
            .collect();
        if let Some(c) = controller.as_mut() {
            // Halts at signals since the last step: held back for another emergency run
            // when the light acted for another within a minimum green and two clearances.
            let t = config.timing;
            let recent = t.min_green_s + 2 * (t.yellow_s + t.all_red_s);
            for (vehicle, ix) in halts.new_at_signals.drain(..) {
                if c.served(ix)
                    .any(|(v, at)| v != vehicle && now.saturating_sub(at) <= recent)
                {
                    *result.yielded_stops.entry(vehicle).or_insert(0) += 1;
                }
            }
            let started = Instant::now();
            let preempts: Vec<_> = if config.preempt {
                runs.iter()
                    .filter_map(|r| positions.get(&r.vehicle).map(|p| (r, *p)))
                    .flat_map(|(r, p)| plan.requests(network, r, p, &obs))
                    .collect()
            } else {
                Vec::new()
            };
            let decisions = c.step(network, now, &obs, &preempts);
            result.phase_changes += decisions.len() as u64;
            if trace {
                trace_emergencies(network, now, &runs, &positions, &preempts, &decisions, c);
            }
            if let Some(live) = live.as_mut() {
                for d in &decisions {
                    (live.on_event)(LiveEvent::Decision {
                        t: now,
                        intersection: network.intersections[d.intersection].name.clone(),
                        phase: d.phase,
                        state: network.intersections[d.intersection].phases[d.phase]
                            .green
                            .iter()
                            .map(|g| g.unwrap_or('r'))
                            .collect(),
                        reason: describe(&d.reason),
                    });
                }
                for (id, f) in following.iter_mut() {
                    let Some(run) = runs.iter().find(|r| &r.vehicle == id) else {
                        continue;
                    };
                    let Some(at) = positions.get(id) else {
                        continue;
                    };
                    let next = plan.requests(network, run, *at, &obs).into_iter().next();
                    let speed = speeds.get(id).copied().unwrap_or(0.0);
                    if f.departed.is_some() {
                        if speed < citybrain_signals::HALTING && !f.stopped {
                            f.stops += 1;
                        }
                        f.stopped = speed < citybrain_signals::HALTING;
                    }
                    (live.on_event)(LiveEvent::Progress {
                        id: id.clone(),
                        t: now,
                        edge: network.edges
                            [run.route[at.route_index.min(run.route.len() - 1)].0 as usize]
                            .name
                            .clone(),
                        speed,
                        next_light: next
                            .as_ref()
                            .map(|p| network.intersections[p.intersection].name.clone()),
                        eta_s: next.map(|p| p.eta_s),
                        stops: f.stops,
                    });
                }
            }
            decide.push(started.elapsed().as_secs_f64() * 1e6);
            let states = c.states(network);
            for (i, state) in states.iter().enumerate() {
                if shown.get(i) != Some(state) {
                    commands.push(traci::set_state(&network.intersections[i].name, state));
                    if live.is_none() {
                        let _ = writeln!(
                            state_log,
                            "{now}\t{}\t{state}",
                            network.intersections[i].name
                        );
                    }
                }
            }
            shown = states;
        }
        let subs = sumo.step(commands)?;
        now += 1;
        for l in obs.lanes.iter_mut() {
            l.clear();
        }
        positions.clear();
        speeds.clear();
        let mut expected = 1;
        for s in subs {
            match s.response {
                traci::RESPONSE_SUBSCRIBE_SIM_VARIABLE => {
                    if let Some(v) = s.get(traci::VAR_DEPARTED_VEHICLES_IDS) {
                        departed.extend(v.as_list().iter().cloned());
                    }
                    if let Some(v) = s.get(traci::VAR_TELEPORT_STARTING_VEHICLES_NUMBER) {
                        result.teleports += v.as_i64().max(0) as u64;
                    }
                    if let Some(v) = s.get(traci::VAR_MIN_EXPECTED_VEHICLES) {
                        expected = v.as_i64();
                    }
                }
                traci::RESPONSE_SUBSCRIBE_VEHICLE_VARIABLE => {
                    observe(
                        &s,
                        network,
                        &lanes,
                        &mut obs,
                        &mut positions,
                        &mut halts,
                        &runs,
                    );
                    if following.contains_key(&s.object)
                        && let Some(v) = s.get(traci::VAR_SPEED)
                    {
                        speeds.insert(s.object.clone(), v.as_f64());
                    }
                }
                _ => {}
            }
        }
        if let Some(live) = live.as_mut() {
            // Departures and arrivals of the emergency runs being followed.
            let mut arrived = Vec::new();
            for (id, f) in following.iter_mut() {
                match (f.departed, positions.contains_key(id)) {
                    (None, true) => f.departed = Some(now),
                    (Some(departed), false) => arrived.push((id.clone(), departed, f.stops)),
                    _ => {}
                }
            }
            for (id, departed, stops) in arrived {
                following.remove(&id);
                runs.retain(|r| r.vehicle != id);
                (live.on_event)(LiveEvent::Arrived {
                    id,
                    t: now,
                    departed,
                    stops,
                });
            }
            continue;
        }
        // SUMO loads route files ahead by a window: nobody expected does not mean the
        // demand is over until its last departure has passed.
        if (expected == 0 && f64::from(now) > last_depart_s) || now >= max_end_s {
            break;
        }
    }
    result.end_s = now;
    result.signal_stops = halts.at_signals;
    sumo.close()?;
    if controller.is_some() && live.is_none() {
        std::fs::write(config.out_dir.join("states.tsv"), &state_log)?;
    }
    if !decide.is_empty() {
        result.decide_mean_us = decide.iter().sum::<f64>() / decide.len() as f64;
        decide.sort_by(f64::total_cmp);
        result.decide_max_us = *decide.last().unwrap_or(&0.0);
        result.decide_p99_us = decide[(decide.len() * 99 / 100).min(decide.len() - 1)];
        result.decide_p999_us = decide[(decide.len() * 999 / 1000).min(decide.len() - 1)];
    }
    Ok(result)
}

/// Adds a route and an emergency vehicle on it, leaving now at full speed.
fn add_emergency(
    sumo: &mut Traci,
    network: &Network,
    id: &str,
    edges: &[String],
) -> Result<Vec<citybrain_signals::EdgeId>, String> {
    let route = edges
        .iter()
        .map(|e| {
            network
                .edge_by_name(e)
                .ok_or_else(|| format!("unknown edge {e:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if route.is_empty() {
        return Err("the route has no edges".into());
    }
    let route_id = format!("route_{id}");
    let mut vehicle = Command::new(traci::CMD_SET_VEHICLE_VARIABLE)
        .u8(traci::ADD_FULL)
        .string(id)
        .u8(traci::TYPE_COMPOUND)
        .i32(14);
    for value in [
        route_id.as_str(),
        "ambulance",
        "now",
        "best",
        "base",
        "max",
        "current",
        "max",
        "current",
        "",
        "",
        "",
    ] {
        vehicle = vehicle.typed_string(value);
    }
    vehicle = vehicle
        .u8(traci::TYPE_INTEGER)
        .i32(0)
        .u8(traci::TYPE_INTEGER)
        .i32(0);
    let mut add_route = Command::new(traci::CMD_SET_ROUTE_VARIABLE)
        .u8(traci::ADD)
        .string(&route_id)
        .u8(traci::TYPE_STRINGLIST)
        .i32(edges.len() as i32);
    for e in edges {
        add_route = add_route.string(e);
    }
    sumo.send(&[add_route, vehicle])
        .map_err(|e| e.to_string())?;
    Ok(route)
}

/// One line per emergency run in progress (`CITYBRAIN_TRACE_EMERGENCY`): time, vehicle,
/// edge, metres along it, seconds standing; per request, light, phase asked, arrival,
/// flush time and what the light shows; decisions at those lights.
fn trace_emergencies(
    network: &Network,
    now: u32,
    runs: &[Emergency],
    positions: &HashMap<String, Position>,
    preempts: &[citybrain_signals::Preempt],
    decisions: &[citybrain_signals::Decision],
    c: &Controller,
) {
    let states = c.states(network);
    for r in runs {
        let Some(at) = positions.get(&r.vehicle) else {
            continue;
        };
        let edge = &network.edges[r.route[at.route_index.min(r.route.len() - 1)].0 as usize];
        let mut line = format!(
            "{now} {} {}{} {:.0} stood {}",
            r.vehicle,
            edge.name,
            if at.in_junction { "(in junction)" } else { "" },
            at.lane_pos,
            at.stopped_s
        );
        for p in preempts.iter().filter(|p| p.vehicle == r.vehicle).take(2) {
            let ix = &network.intersections[p.intersection];
            let want: String = ix.phases[p.phase]
                .green
                .iter()
                .map(|g| g.unwrap_or('r'))
                .collect();
            let _ = write!(
                line,
                " | {} wants {} ({want}) eta {:.1} flush {:.1} shows {}",
                ix.name, p.phase, p.eta_s, p.flush_s, states[p.intersection]
            );
            for d in decisions
                .iter()
                .filter(|d| d.intersection == p.intersection)
            {
                let _ = write!(line, " -> {} {:?}", d.phase, d.reason);
            }
        }
        eprintln!("{line}");
    }
}

/// Per emergency vehicle: seconds it has been standing still, and its halts at signals.
#[derive(Default)]
struct Halts {
    standing: HashMap<String, u32>,
    at_signals: HashMap<String, u32>,
    /// Halts at signals not yet classified: vehicle, intersection.
    new_at_signals: Vec<(String, usize)>,
}

fn observe(
    s: &Subscription,
    network: &Network,
    lanes: &HashMap<&str, usize>,
    obs: &mut Observation,
    positions: &mut HashMap<String, Position>,
    halts: &mut Halts,
    runs: &[Emergency],
) {
    let (Some(lane), Some(pos), Some(speed)) = (
        s.get(traci::VAR_LANE_ID),
        s.get(traci::VAR_LANEPOSITION),
        s.get(traci::VAR_SPEED),
    ) else {
        return;
    };
    let lane = lane.as_str();
    let pos = pos.as_f64();
    if let Some(&i) = lanes.get(lane) {
        obs.lanes[i].push(Seen {
            to_stop: (network.lanes[i].length - pos).max(0.0),
            speed: speed.as_f64(),
        });
    }
    if runs.iter().any(|r| r.vehicle == s.object) {
        let stopped_s = if speed.as_f64() < citybrain_signals::HALTING {
            let n = halts.standing.entry(s.object.clone()).or_insert(0);
            *n += 1;
            // A new halt on a lane that ends at a light: a stop at a signal (its red, or
            // the queue its red holds).
            let at_signal = lanes
                .get(lane)
                .and_then(|&i| network.edges[network.lanes[i].edge.0 as usize].to_signal);
            if let (1, Some(ix)) = (*n, at_signal) {
                *halts.at_signals.entry(s.object.clone()).or_insert(0) += 1;
                halts.new_at_signals.push((s.object.clone(), ix));
            }
            *n
        } else {
            halts.standing.remove(&s.object);
            0
        };
        let route_index = s
            .get(traci::VAR_ROUTE_INDEX)
            .map_or(0, |v| v.as_i64().max(0) as usize);
        positions.insert(
            s.object.clone(),
            Position {
                route_index,
                in_junction: lane.starts_with(':'),
                lane_pos: pos,
                stopped_s,
            },
        );
    }
}
