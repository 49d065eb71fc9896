//! One emergency route, many departure times: does the ambulance stop whenever it leaves?
//! A live run (`POST /api/v1/signals/emergency`) leaves whenever it is asked to, so one
//! departure time that stops it is a stop some caller will see.
//!
//!     cargo run --release -p citybrain-sumo --example ambulance_sweep -- \
//!         SUMO NET ROUTES OUT FIRST_S LAST_S STEP_S EDGE...
//!
//! Runs one simulation per offset in 0..SPACING_S (by STEP_S), each with ambulances leaving
//! every SPACING_S (200 s) from FIRST_S + offset to LAST_S, far enough apart not to meet.
//! Prints every run that halted, with its departure. `CITYBRAIN_TRACE_EMERGENCY=1` traces
//! what the lights ahead of each ambulance showed.

use citybrain_signals::PolicyKind;
use citybrain_sumo::{Ambulance, RunConfig, routes};
use std::path::PathBuf;

const SPACING_S: u32 = 200;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 8 {
        eprintln!("usage: ambulance_sweep SUMO NET ROUTES OUT FIRST_S LAST_S STEP_S EDGE...");
        std::process::exit(2);
    }
    let num = |i: usize| -> u32 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!(
                "argument {} ({:?}) is not a number of seconds",
                i + 1,
                args[i]
            );
            std::process::exit(2)
        })
    };
    let (first, last, step) = (num(4), num(5), num(6).max(1));
    let edges: Vec<String> = args[7..].to_vec();
    let out = PathBuf::from(&args[3]);
    let (mut runs_total, mut halted) = (0, 0);
    for offset in (0..SPACING_S).step_by(step as usize) {
        let runs: Vec<Ambulance> = (first + offset..=last)
            .step_by(SPACING_S as usize)
            .map(|t| Ambulance {
                id: format!("ambulance_{t}"),
                depart_s: t,
                edges: edges.clone(),
                priority: 1,
            })
            .collect();
        let dir = out.join(format!("offset_{offset}"));
        std::fs::create_dir_all(&dir).expect("the output directory can be made");
        let file = dir.join("ambulances.rou.xml");
        std::fs::write(&file, routes::ambulances_xml(&runs)).expect("writable");
        let result = citybrain_sumo::run(&RunConfig {
            sumo: PathBuf::from(&args[0]),
            net: PathBuf::from(&args[1]),
            routes: vec![PathBuf::from(&args[2]), file],
            policy: Some(PolicyKind::Adaptive),
            timing: citybrain_signals::Timing::default(),
            ambulances: runs.clone(),
            preempt: true,
            max_end_s: last + 600,
            out_dir: dir,
        });
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("offset {offset}: {e}");
                std::process::exit(1);
            }
        };
        for a in &result.ambulances {
            runs_total += 1;
            if a.stops > 0 {
                halted += 1;
                println!(
                    "{}: {} halts ({} at signals), {:.0} s against {:.0} s free flow",
                    a.id, a.stops, a.signal_stops, a.travel_s, a.free_flow_s
                );
            }
        }
    }
    println!("{halted} of {runs_total} runs halted");
}
