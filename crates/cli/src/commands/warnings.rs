//! `citybrain warnings`: risk early warning rules (数据碰撞预警). `check` reads a directory
//! of rule files as `up` reads `DATA/warnings/` and says what each counts, for whom and when
//! it warns; offline, every problem at once.

use std::path::PathBuf;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check a directory of warning rules (every .toml in it) as `up` loads `DATA/warnings/`;
    /// without DIR, the shipped rules.
    Check {
        /// The directory; docs/warnings.md says how to write a rule.
        dir: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Check { dir } => check(dir),
    }
}

fn check(dir: Option<PathBuf>) -> Result<()> {
    let rules = match &dir {
        Some(dir) if !dir.is_dir() => anyhow::bail!(
            "{}: not a directory (give the folder that holds the rule files)",
            dir.display()
        ),
        Some(dir) => citybrain_server::scenes::warnings::load_rules(dir),
        None => Ok(citybrain_warnings::shipped()),
    }
    .map_err(|problems| {
        anyhow::anyhow!(
            "the warning rules do not load:\n  {}\nfix each, then check again",
            problems.join("\n  ")
        )
    })?;
    for r in &rules {
        let floor = citybrain_warnings::judge(r, 0, &[]);
        println!(
            "{:<24} {:<22} every {:?}, baseline of {} periods, warns from {} at the floor baseline {} (alpha {})",
            r.name,
            r.department,
            r.every,
            r.baseline_periods,
            floor.threshold,
            r.baseline_floor,
            r.alpha
        );
    }
    println!(
        "{} warning rules check. Each runs as its department: give it the grants (and linkages) its queries need.",
        rules.len()
    );
    Ok(())
}
