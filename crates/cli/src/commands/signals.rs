//! `citybrain signals`: signal control proven in SUMO (`compare`, `cityflow-routes`), and
//! where the sumo binary is (`find_sumo`, which `up --signals-net` uses too).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use citybrain_sumo::routes;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Runs a SUMO scenario under the network's own fixed-time plans, plain max-pressure and
    /// citybrain's controller (and, with --ambulances, emergency runs with and without
    /// preemption) and prints average delay (SUMO timeLoss), travel time, completion and
    /// teleports. SUMO comes from PyPI: `bench/signals/run` installs it.
    Compare {
        /// A SUMO network (.net.xml) with traffic lights.
        #[arg(long)]
        net: PathBuf,
        /// A SUMO route file (.rou.xml); convert CityFlow flows with `cityflow-routes`.
        #[arg(long)]
        routes: PathBuf,
        /// Emergency runs to add (in pairs leaving together, from different origins).
        #[arg(long, default_value_t = 0)]
        ambulances: usize,
        /// The sumo binary (default: $SUMO_HOME/bin/sumo, the venv bench/signals/run makes,
        /// or sumo on the PATH).
        #[arg(long)]
        sumo: Option<PathBuf>,
        /// Where SUMO's outputs and results.json go.
        #[arg(long, default_value = "target/signals")]
        out: PathBuf,
        /// Stop a run here even with vehicles left (a gridlock shows as vehicles not arrived).
        #[arg(long, default_value_t = 10_800)]
        max_end_s: u32,
        /// The shortest green citybrain's controller gives a phase.
        #[arg(long, default_value_t = 5)]
        min_green_s: u32,
        /// The longest green before it must serve another phase.
        #[arg(long, default_value_t = 60)]
        max_green_s: u32,
        /// Yellow after every green.
        #[arg(long, default_value_t = 3)]
        yellow_s: u32,
        /// All-red after the yellow, before the next green.
        #[arg(long, default_value_t = 2)]
        all_red_s: u32,
        /// The longest a movement with a vehicle waiting may stay red.
        #[arg(long, default_value_t = 120)]
        max_wait_s: u32,
    },
    /// Converts a CityFlow flow file (JSON) to a SUMO route file.
    CityflowRoutes {
        /// The CityFlow flow file (JSON).
        flow: PathBuf,
        /// The SUMO route file to write (.rou.xml).
        out: PathBuf,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Compare {
            net,
            routes,
            ambulances,
            sumo,
            out,
            max_end_s,
            min_green_s,
            max_green_s,
            yellow_s,
            all_red_s,
            max_wait_s,
        } => compare(&citybrain_sumo::compare::Compare {
            sumo: find_sumo(sumo),
            net,
            routes,
            ambulances,
            out,
            max_end_s,
            timing: citybrain_signals::Timing {
                min_green_s,
                max_green_s,
                yellow_s,
                all_red_s,
                max_wait_s,
            },
        }),
        Command::CityflowRoutes { flow, out } => cityflow_routes(&flow, &out),
    }
}

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
fn compare(c: &citybrain_sumo::compare::Compare) -> Result<()> {
    let out = c.out.join("results.json");
    let comparison = citybrain_sumo::compare::run(c)
        .with_context(|| format!("comparing on {}", c.net.display()))?;
    print!("{}", comparison.table());
    println!("(results in {})", out.display());
    Ok(())
}

/// Converts a CityFlow flow file to a SUMO route file.
fn cityflow_routes(input: &Path, output: &Path) -> Result<()> {
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
