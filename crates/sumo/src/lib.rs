//! The SUMO connector: citybrain's signal control driving SUMO, the open microscopic traffic
//! simulator, over TraCI. SUMO is the referee: it moves every vehicle and reports each
//! trip's time loss; citybrain only sees what detectors would (each vehicle's lane,
//! position and speed) and sets the lights.
//!
//! [`run`] starts `sumo` on a free port, steps it second by second, and for a controlled
//! run feeds the observations to a [`Controller`] and sends back the changed signal states
//! in the same message as the next step.

pub mod net;
pub mod routes;
pub mod traci;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// Stop here even if vehicles are left (gridlock).
    pub max_end_s: u32,
    /// Where SUMO writes its trip results.
    pub out_dir: PathBuf,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub label: String,
    pub loaded: usize,
    pub arrived: usize,
    pub teleports: u64,
    pub end_s: u32,
    /// Means over the other (non-emergency) vehicles that arrived.
    pub mean_time_loss_s: f64,
    pub mean_travel_s: f64,
    /// Controller time per step (all intersections), µs.
    pub decide_mean_us: f64,
    pub decide_max_us: f64,
    pub decide_p99_us: f64,
    pub ambulances: Vec<AmbulanceResult>,
    pub phase_changes: u64,
}

#[derive(Debug, Clone)]
pub struct AmbulanceResult {
    pub id: String,
    pub travel_s: f64,
    /// Travel time without any loss (SUMO: duration − timeLoss).
    pub free_flow_s: f64,
    pub stops: u32,
}

fn free_port() -> Result<u16, SumoError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Runs SUMO once under the given control.
pub fn run(config: &RunConfig) -> Result<RunResult, SumoError> {
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
    let mut child = Process::new(&config.sumo)
        .arg("-n")
        .arg(&config.net)
        .arg("-r")
        .arg(routes.join(","))
        .args(["--remote-port", &port.to_string()])
        .args(["--step-length", "1", "--begin", "0", "--seed", "42"])
        .args(["--no-step-log", "true", "--no-warnings", "true"])
        .arg("--tripinfo-output")
        .arg(&trips_path)
        .arg("--log")
        .arg(&log_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| SumoError::Start(format!("{}: {e}", config.sumo.display())))?;
    let result = Traci::connect(port, Duration::from_secs(30)).and_then(|sumo| {
        drop(starting);
        drive(config, &network, sumo)
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
    result.loaded = config
        .routes
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(SumoError::Io)
                .and_then(|t| routes::count_vehicles(&t))
        })
        .sum::<Result<usize, _>>()?;
    result.arrived = trips.len();
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
    result.mean_travel_s = others.iter().map(|t| t.duration_s).sum::<f64>() / n;
    result.ambulances = trips
        .iter()
        .filter(|t| amb.contains_key(t.id.as_str()))
        .map(|t| AmbulanceResult {
            id: t.id.clone(),
            travel_s: t.duration_s,
            free_flow_s: t.duration_s - t.time_loss_s,
            stops: t.stops,
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

fn drive(config: &RunConfig, network: &Network, mut sumo: Traci) -> Result<RunResult, SumoError> {
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
    let runs: Vec<Emergency> = config
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
    let mut now: u32 = 0;
    loop {
        let mut commands: Vec<Command> = departed
            .drain(..)
            .map(|v| traci::subscribe(traci::CMD_SUBSCRIBE_VEHICLE_VARIABLE, &v, &VEHICLE_VARS))
            .collect();
        if let Some(c) = controller.as_mut() {
            let started = Instant::now();
            let preempts: Vec<_> = if config.preempt {
                runs.iter()
                    .filter_map(|r| positions.get(&r.vehicle).map(|p| (r, *p)))
                    .flat_map(|(r, p)| plan.requests(network, r, p, &obs))
                    .collect()
            } else {
                Vec::new()
            };
            result.phase_changes += c.step(network, now, &obs, &preempts).len() as u64;
            decide.push(started.elapsed().as_secs_f64() * 1e6);
            let states = c.states(network);
            for (i, state) in states.iter().enumerate() {
                if shown.get(i) != Some(state) {
                    commands.push(traci::set_state(&network.intersections[i].name, state));
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
                    observe(&s, network, &lanes, &mut obs, &mut positions, &runs)
                }
                _ => {}
            }
        }
        if expected == 0 || now >= config.max_end_s {
            break;
        }
    }
    result.end_s = now;
    sumo.close()?;
    if !decide.is_empty() {
        result.decide_mean_us = decide.iter().sum::<f64>() / decide.len() as f64;
        decide.sort_by(f64::total_cmp);
        result.decide_max_us = *decide.last().unwrap_or(&0.0);
        result.decide_p99_us = decide[(decide.len() * 99 / 100).min(decide.len() - 1)];
    }
    Ok(result)
}

fn observe(
    s: &Subscription,
    network: &Network,
    lanes: &HashMap<&str, usize>,
    obs: &mut Observation,
    positions: &mut HashMap<String, Position>,
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
        let route_index = s
            .get(traci::VAR_ROUTE_INDEX)
            .map_or(0, |v| v.as_i64().max(0) as usize);
        positions.insert(
            s.object.clone(),
            Position {
                route_index,
                in_junction: lane.starts_with(':'),
                lane_pos: pos,
            },
        );
    }
}

/// The bundled scenario's files, if `dir` holds a SUMO network and one route file.
pub fn find_scenario(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut net = None;
    let mut rou = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let name = p.file_name()?.to_string_lossy().to_string();
        if name.ends_with(".net.xml") {
            net = Some(p);
        } else if name.ends_with(".rou.xml") {
            rou = Some(p);
        }
    }
    Some((net?, rou?))
}
