//! citybrain's signal control driving a real SUMO (PyPI eclipse-sumo, installed by
//! scripts/test) on a 4×4 grid SUMO generates itself, with random demand from SUMO's own
//! tools: the connector works on any network, the controller beats the fixed plans and
//! max-pressure there too, and emergency runs cross every light without stopping.

use std::path::{Path, PathBuf};

use citybrain_signals::{PolicyKind, Timing};
use citybrain_sumo::{RunConfig, RunResult, routes};

fn venv() -> PathBuf {
    let venv = citybrain_sumo::scenario::venv();
    assert!(
        venv.join("bin/sumo").exists(),
        "SUMO is not installed at {}: run scripts/test (or scripts/install-sumo)",
        venv.display()
    );
    venv
}

/// A 4×4 grid of signalised crossings (200 m blocks, two lanes) and ten minutes of trips.
fn scenario(dir: &Path) -> (PathBuf, PathBuf) {
    citybrain_sumo::scenario::grid(&venv(), dir, 600).unwrap()
}

/// Replays the states a run showed (`states.tsv`) against the safety rules; at least
/// `min_seconds` light-seconds must have been checked.
fn assert_safe(run_dir: &Path, min_seconds: usize) {
    let log = std::fs::read_to_string(run_dir.join("states.tsv")).unwrap();
    let end = log
        .lines()
        .filter_map(|l| l.split('\t').next()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let (violations, seconds) = citybrain_sumo::replay(&log, &Timing::default(), end);
    assert!(
        violations.is_empty(),
        "{}: {:?}",
        run_dir.display(),
        &violations[..violations.len().min(5)]
    );
    assert!(seconds >= min_seconds, "{seconds} light-seconds checked");
}

fn run(
    dir: &Path,
    net: &Path,
    routes: Vec<PathBuf>,
    policy: Option<PolicyKind>,
    ambulances: &[routes::Ambulance],
    preempt: bool,
    name: &str,
) -> RunResult {
    citybrain_sumo::run(&RunConfig {
        sumo: venv().join("bin/sumo"),
        net: net.to_path_buf(),
        routes,
        policy,
        timing: Timing::default(),
        ambulances: ambulances.to_vec(),
        preempt,
        max_end_s: 3600,
        out_dir: dir.join(name),
    })
    .unwrap()
}

#[test]
fn on_any_network_citybrain_beats_the_plans_and_clears_the_way_for_ambulances() {
    let dir = tempfile::tempdir().unwrap();
    let (net, rou) = scenario(dir.path());
    let fixed = run(
        dir.path(),
        &net,
        vec![rou.clone()],
        None,
        &[],
        false,
        "fixed",
    );
    let mp = run(
        dir.path(),
        &net,
        vec![rou.clone()],
        Some(PolicyKind::MaxPressure),
        &[],
        false,
        "mp",
    );
    let cb = run(
        dir.path(),
        &net,
        vec![rou.clone()],
        Some(PolicyKind::Adaptive),
        &[],
        false,
        "cb",
    );
    // Every second of every light replayed against the safety rules.
    for name in ["mp", "cb"] {
        assert_safe(&dir.path().join(name), 16 * 500);
    }
    // Everyone arrives under citybrain, nobody teleported out of a jam.
    assert!(cb.loaded > 400, "{}", cb.loaded);
    assert_eq!((cb.arrived, cb.teleports), (cb.loaded, 0));
    assert!(cb.phase_changes > 100, "{}", cb.phase_changes);
    assert!(
        cb.mean_time_loss_s < fixed.mean_time_loss_s && cb.mean_time_loss_s < mp.mean_time_loss_s,
        "citybrain {:.1} s, fixed {:.1} s, max-pressure {:.1} s",
        cb.mean_time_loss_s,
        fixed.mean_time_loss_s,
        mp.mean_time_loss_s
    );

    // Six emergency runs, in pairs leaving together.
    let network = citybrain_sumo::net::parse(&std::fs::read_to_string(&net).unwrap()).unwrap();
    let runs = routes::pick_ambulances(
        &std::fs::read_to_string(&rou).unwrap(),
        &network,
        6,
        (0.0, 600.0),
    )
    .unwrap();
    let file = dir.path().join("ambulances.rou.xml");
    std::fs::write(&file, routes::ambulances_xml(&runs)).unwrap();
    let with = run(
        dir.path(),
        &net,
        vec![rou.clone(), file.clone()],
        Some(PolicyKind::Adaptive),
        &runs,
        true,
        "amb",
    );
    let without = run(
        dir.path(),
        &net,
        vec![rou, file],
        Some(PolicyKind::Adaptive),
        &runs,
        false,
        "amb_off",
    );
    assert_eq!(with.ambulances.len(), 6);
    for a in &with.ambulances {
        assert_eq!((a.stops, a.signal_stops), (0, 0), "{a:?}");
        assert!(a.travel_s <= a.free_flow_s * 1.10, "{a:?}");
    }
    // Without preemption the same runs meet red lights: the check above can fail.
    assert!(
        without
            .ambulances
            .iter()
            .map(|a| a.signal_stops)
            .sum::<u32>()
            > 0,
        "{:?}",
        without.ambulances
    );
    // And clearing their way costs the others little. Six runs in ten minutes through a
    // small grid of 200 m blocks is a heavy load (on the Hangzhou benchmark the cost is
    // within its 5% target, docs/benchmarks.md); this guards against a gross regression.
    // (2026-12-04: the controller's reach change cut the others' delay without emergency
    // runs here from 34.8 to 28.6 s, so the same runs cost a larger share, +21%; arrivals
    // estimated at the ambulance's own top speed rather than the road's, so its lights are
    // not called early and held long, brought it back to +13%, 32.3 s.)
    assert!(
        with.mean_time_loss_s <= cb.mean_time_loss_s * 1.15,
        "{:.1} vs {:.1}",
        with.mean_time_loss_s,
        cb.mean_time_loss_s
    );
}

#[test]
fn on_an_irregular_generated_network_everyone_arrives_safely() {
    // A spider's web of five arms and three rings: junctions of three and four roads at
    // odd angles, links from 60 to 160 m, lights where SUMO's heuristics put them.
    let dir = tempfile::tempdir().unwrap();
    let (net, rou) = citybrain_sumo::scenario::generated(
        &venv(),
        dir.path(),
        citybrain_sumo::scenario::Shape::Spider { arms: 5 },
        1,
        600,
        1.6,
    )
    .unwrap();
    let network = citybrain_sumo::net::parse(&std::fs::read_to_string(&net).unwrap()).unwrap();
    assert!(
        network.intersections.len() >= 8,
        "{}",
        network.intersections.len()
    );
    let mp = run(
        dir.path(),
        &net,
        vec![rou.clone()],
        Some(PolicyKind::MaxPressure),
        &[],
        false,
        "mp",
    );
    let cb = run(
        dir.path(),
        &net,
        vec![rou.clone()],
        Some(PolicyKind::Adaptive),
        &[],
        false,
        "cb",
    );
    assert_safe(&dir.path().join("cb"), 8 * 500);
    assert!(cb.loaded > 300, "{}", cb.loaded);
    assert_eq!((cb.arrived, cb.teleports), (cb.loaded, 0));
    assert!(
        cb.mean_time_loss_s + cb.mean_entry_wait_s <= mp.mean_time_loss_s + mp.mean_entry_wait_s,
        "citybrain {:.1} s, max-pressure {:.1} s (entry wait included)",
        cb.mean_time_loss_s + cb.mean_entry_wait_s,
        mp.mean_time_loss_s + mp.mean_entry_wait_s
    );
}
