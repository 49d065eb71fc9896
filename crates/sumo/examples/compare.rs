//! `citybrain signals compare` without the rest of citybrain, for `bench/signals/run`:
//! the same code (`citybrain_sumo::compare`), built in seconds.
//!
//!     cargo run --release -p citybrain-sumo --example compare -- SUMO NET ROUTES OUT AMBULANCES

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [sumo, net, routes, out, ambulances] = args.as_slice() else {
        eprintln!("usage: compare SUMO NET ROUTES OUT AMBULANCES");
        std::process::exit(2);
    };
    let result = citybrain_sumo::compare::run(&citybrain_sumo::compare::Compare {
        sumo: PathBuf::from(sumo),
        net: PathBuf::from(net),
        routes: PathBuf::from(routes),
        ambulances: ambulances.parse().unwrap_or(0),
        out: PathBuf::from(out),
        max_end_s: 10_800,
        timing: citybrain_signals::Timing::default(),
    });
    match result {
        Ok(comparison) => print!("{}", comparison.table()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
