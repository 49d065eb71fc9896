//! The comparison `citybrain signals compare` runs: the network's own plans, plain
//! max-pressure and citybrain's controller on one network and demand, and with emergency
//! runs citybrain with and without preemption; two simulations at a time; the tables
//! printed and `results.json` written. Here rather than in the CLI so that the benchmark
//! can build it without the rest of citybrain (`examples/compare.rs`).

use std::path::PathBuf;
use std::sync::Mutex;

use citybrain_signals::{PolicyKind, Timing};

use crate::{RunConfig, RunResult, SumoError, routes};

/// What a comparison measured.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The route file's name.
    pub flow: String,
    /// One per run, in order: fixed-time, max-pressure, citybrain, then the emergency runs.
    pub results: Vec<RunResult>,
    /// The emergency runs' vehicle ids.
    pub ambulances: Vec<String>,
}

impl Comparison {
    /// The tables (`report::table`).
    pub fn table(&self) -> String {
        crate::report::table(&self.flow, &self.results, &self.ambulances)
    }
}

/// One comparison's settings.
#[derive(Debug, Clone)]
pub struct Compare {
    pub sumo: PathBuf,
    pub net: PathBuf,
    pub routes: PathBuf,
    pub ambulances: usize,
    pub out: PathBuf,
    pub max_end_s: u32,
    pub timing: Timing,
}

/// Runs the network's own plans, plain max-pressure and citybrain's controller on the same
/// network and demand (and, with emergency runs, citybrain with preemption), two at a time,
/// and writes `results.json` into `c.out`. Progress goes to stderr.
pub fn run(c: &Compare) -> Result<Comparison, SumoError> {
    let flow_name = c
        .routes
        .file_name()
        .map_or("routes".into(), |n| n.to_string_lossy().to_string());
    std::fs::create_dir_all(&c.out)?;
    let mut configs: Vec<(String, RunConfig)> = Vec::new();
    let base = RunConfig {
        sumo: c.sumo.clone(),
        net: c.net.clone(),
        routes: vec![c.routes.clone()],
        policy: None,
        timing: c.timing,
        ambulances: Vec::new(),
        preempt: false,
        max_end_s: c.max_end_s,
        out_dir: c.out.clone(),
    };
    for policy in [
        None,
        Some(PolicyKind::MaxPressure),
        Some(PolicyKind::Adaptive),
    ] {
        let name = policy.map_or("fixed-time", |p| p.name()).to_string();
        configs.push((
            name.clone(),
            RunConfig {
                policy,
                out_dir: c.out.join(&name),
                ..base.clone()
            },
        ));
    }
    let mut ambulance_ids = Vec::new();
    if c.ambulances > 0 {
        let text = std::fs::read_to_string(&c.routes)?;
        let demand = routes::demand(&text)?;
        let network = crate::net::parse(&std::fs::read_to_string(&c.net)?)?;
        // Trips and flows carry no route: SUMO's router gives them theirs.
        let routed = crate::route_trips(&c.sumo, &c.net, &c.routes, &c.out)?;
        let runs = routes::pick_ambulances(
            &std::fs::read_to_string(&routed)?,
            &network,
            c.ambulances,
            // Inside what is simulated: a run stops `max_end_s` after the first departure
            // (sumo-rl's scenarios declare flows until 100,000 s; ambulances placed by
            // that window never departed).
            (
                demand.first_depart_s,
                demand
                    .last_depart_s
                    .min(demand.first_depart_s + f64::from(c.max_end_s)),
            ),
        )?;
        ambulance_ids = runs.iter().map(|a| a.id.clone()).collect();
        let file = c.out.join("ambulances.rou.xml");
        std::fs::write(&file, routes::ambulances_xml(&runs))?;
        for (name, preempt) in [
            ("citybrain+ambulances", true),
            ("citybrain+ambulances, no preemption", false),
        ] {
            configs.push((
                name.to_string(),
                RunConfig {
                    policy: Some(PolicyKind::Adaptive),
                    routes: vec![c.routes.clone(), file.clone()],
                    ambulances: runs.clone(),
                    preempt,
                    out_dir: c.out.join(name.replace([' ', ',', '+'], "_")),
                    ..base.clone()
                },
            ));
        }
    }
    eprintln!(
        "Running {} SUMO simulations of {} on {} ({} at a time)...",
        configs.len(),
        flow_name,
        c.net.display(),
        2
    );
    let results: Mutex<Vec<(usize, RunResult)>> = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    let failed: Mutex<Option<SumoError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().expect("lock");
                        *n += 1;
                        *n - 1
                    };
                    let Some((name, config)) = configs.get(i) else {
                        return;
                    };
                    let started = std::time::Instant::now();
                    match crate::run(config) {
                        Ok(mut r) => {
                            r.label = name.clone();
                            eprintln!(
                                "  {name}: mean delay {:.1} s ({:.1} s with entry wait), {} of {} arrived, {} teleports, {} emergency braking ({:.0} s)",
                                r.mean_time_loss_s,
                                r.mean_time_loss_s + r.mean_entry_wait_s,
                                r.arrived,
                                r.loaded,
                                r.teleports,
                                r.emergency_braking,
                                started.elapsed().as_secs_f64()
                            );
                            results.lock().expect("lock").push((i, r));
                        }
                        Err(e) => {
                            eprintln!("  {name}: failed: {e}");
                            *failed.lock().expect("lock") = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("lock") {
        return Err(e);
    }
    let mut results = results.into_inner().expect("lock");
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<RunResult> = results.into_iter().map(|(_, r)| r).collect();
    let json: Vec<serde_json::Value> = results.iter().map(crate::report::to_json).collect();
    std::fs::write(
        c.out.join("results.json"),
        serde_json::to_string_pretty(&json).map_err(|e| SumoError::Protocol(e.to_string()))?,
    )?;
    Ok(Comparison {
        flow: flow_name,
        results,
        ambulances: ambulance_ids,
    })
}
