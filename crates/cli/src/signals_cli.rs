//! `citybrain signals ...`: signal control proven in SUMO.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use citybrain_signals::{PolicyKind, Timing};
use citybrain_sumo::{RunConfig, RunResult, routes};

/// Where `sumo` is: the flag, else `$SUMO_HOME/bin/sumo`, else the venv `bench/signals/run`
/// makes, else `sumo` on the PATH.
pub fn find_sumo(flag: Option<PathBuf>) -> PathBuf {
    if let Some(p) = flag {
        return p;
    }
    if let Ok(home) = std::env::var("SUMO_HOME") {
        let p = Path::new(&home).join("bin/sumo");
        if p.exists() {
            return p;
        }
    }
    let p = citybrain_sumo::scenario::venv().join("bin/sumo");
    if p.exists() {
        return p;
    }
    PathBuf::from("sumo")
}

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
/// and prints the comparison.
pub fn compare(c: &Compare) -> Result<()> {
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
    if c.ambulances > 0 {
        let runs =
            routes::pick_ambulances(&std::fs::read_to_string(&c.routes)?, c.ambulances, 3600)?;
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
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
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
                    match citybrain_sumo::run(config) {
                        Ok(mut r) => {
                            r.label = name.clone();
                            eprintln!(
                                "  {name}: mean delay {:.1} s, {} of {} arrived, {} teleports ({:.0} s)",
                                r.mean_time_loss_s,
                                r.arrived,
                                r.loaded,
                                r.teleports,
                                started.elapsed().as_secs_f64()
                            );
                            results.lock().expect("lock").push((i, r));
                        }
                        Err(e) => {
                            *failed.lock().expect("lock") =
                                Some(anyhow::Error::new(e).context(format!("the {name} run")));
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
    print_table(&flow_name, &results);
    let json: Vec<serde_json::Value> = results.iter().map(to_json).collect();
    std::fs::write(
        c.out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("(results in {})", c.out.join("results.json").display());
    Ok(())
}

fn to_json(r: &RunResult) -> serde_json::Value {
    serde_json::json!({
        "controller": r.label, "vehicles": r.loaded, "arrived": r.arrived,
        "teleports": r.teleports, "end_s": r.end_s,
        "mean_delay_s": r.mean_time_loss_s, "mean_travel_s": r.mean_travel_s,
        "decide_mean_us": r.decide_mean_us, "decide_p99_us": r.decide_p99_us,
        "decide_max_us": r.decide_max_us, "phase_changes": r.phase_changes,
        "ambulances": r.ambulances.iter().map(|a| serde_json::json!({
            "id": a.id, "travel_s": a.travel_s, "free_flow_s": a.free_flow_s, "stops": a.stops,
        })).collect::<Vec<_>>(),
    })
}

fn print_table(flow: &str, results: &[RunResult]) {
    println!("\n{flow}: average over the vehicles that arrived (SUMO tripinfo)");
    println!(
        "{:<38} {:>9} {:>9} {:>11} {:>9} {:>10} {:>16}",
        "controller", "delay s", "travel s", "arrived", "teleport", "end s", "decide µs mean/max"
    );
    let mp = results
        .iter()
        .find(|r| r.label == PolicyKind::MaxPressure.name())
        .map(|r| r.mean_time_loss_s);
    for r in results {
        println!(
            "{:<38} {:>9.1} {:>9.1} {:>5}/{:<5} {:>9} {:>10} {:>8.0}/{:<8.0}",
            r.label,
            r.mean_time_loss_s,
            r.mean_travel_s,
            r.arrived,
            r.loaded,
            r.teleports,
            r.end_s,
            r.decide_mean_us,
            r.decide_max_us
        );
    }
    if let (Some(mp), Some(cb)) = (
        mp,
        results
            .iter()
            .find(|r| r.label == PolicyKind::Adaptive.name())
            .map(|r| r.mean_time_loss_s),
    ) {
        println!("citybrain / max-pressure delay: {:.3}", cb / mp);
    }
    let base = results
        .iter()
        .find(|r| r.label == PolicyKind::Adaptive.name())
        .map(|r| r.mean_time_loss_s);
    for r in results.iter().filter(|r| !r.ambulances.is_empty()) {
        println!("\n{}:", r.label);
        for a in &r.ambulances {
            println!(
                "  {:<14} travel {:>6.1} s, free-flow {:>6.1} s ({:+.1}%), stops {}",
                a.id,
                a.travel_s,
                a.free_flow_s,
                (a.travel_s / a.free_flow_s - 1.0) * 100.0,
                a.stops
            );
        }
        if let Some(base) = base {
            println!(
                "  other vehicles' mean delay {:.1} s vs {:.1} s without emergency runs ({:+.1}%)",
                r.mean_time_loss_s,
                base,
                (r.mean_time_loss_s / base - 1.0) * 100.0
            );
        }
    }
}

/// Converts a CityFlow flow file to a SUMO route file.
pub fn cityflow_routes(input: &Path, output: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let xml = routes::cityflow_to_sumo(&text)?;
    let n = routes::count_vehicles(&xml)?;
    if n == 0 {
        bail!("{}: no vehicles", input.display());
    }
    std::fs::write(output, xml).with_context(|| format!("writing {}", output.display()))?;
    println!("{n} vehicles written to {}", output.display());
    Ok(())
}
