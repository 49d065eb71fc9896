//! `citybrain signals ...`: signal control proven in SUMO.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use citybrain_sumo::routes;

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

/// Runs the network's own plans, plain max-pressure and citybrain's controller on the same
/// network and demand (and, with emergency runs, citybrain with preemption), two at a time,
/// and prints the comparison (`citybrain_sumo::compare`).
pub fn compare(c: &citybrain_sumo::compare::Compare) -> Result<()> {
    let out = c.out.join("results.json");
    let comparison = citybrain_sumo::compare::run(c)
        .with_context(|| format!("comparing on {}", c.net.display()))?;
    print!("{}", comparison.table());
    println!("(results in {})", out.display());
    Ok(())
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
