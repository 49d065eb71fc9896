//! Scenarios made by SUMO's own tools (from the PyPI install), for tests and demos: a grid of
//! signalised crossings and random demand, so nothing has to be stored in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SumoError;

/// The virtual environment `scripts/install-sumo` makes: `$CITYBRAIN_SUMO_VENV`, else
/// `~/.cache/citybrain-sumo/venv`.
pub fn venv() -> PathBuf {
    std::env::var("CITYBRAIN_SUMO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cache/citybrain-sumo/venv")
        })
}

/// A 4×4 grid of signalised crossings (200 m blocks, two lanes each way, turns that yield)
/// and `seconds` of random trips crossing it, written into `dir`: (network, routes).
pub fn grid(venv: &Path, dir: &Path, seconds: u32) -> Result<(PathBuf, PathBuf), SumoError> {
    let net = dir.join("grid.net.xml");
    let routes = dir.join("grid.rou.xml");
    let run = |cmd: &mut Command, what: &str| -> Result<(), SumoError> {
        let out = cmd
            .output()
            .map_err(|e| SumoError::Start(format!("{what}: {e}")))?;
        if !out.status.success() {
            return Err(SumoError::Start(format!(
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    };
    run(
        Command::new(venv.join("bin/netgenerate"))
            .args(["--grid", "--grid.number", "4", "--grid.length", "200"])
            .args(["--grid.attach-length", "150", "--default.lanenumber", "2"])
            .args(["--tls.guess", "true", "--no-turnarounds", "true", "-o"])
            .arg(&net),
        "netgenerate",
    )?;
    let tool = std::fs::read_dir(venv.join("lib"))?
        .flatten()
        .map(|p| p.path().join("site-packages/sumo/tools/randomTrips.py"))
        .find(|p| p.exists())
        .ok_or_else(|| SumoError::Start("randomTrips.py is not in the venv".into()))?;
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(
        Command::new(venv.join("bin/python"))
            .arg(tool)
            .arg("-n")
            .arg(&net)
            .arg("-r")
            .arg(&routes)
            .args([
                "--seed",
                "7",
                "--end",
                &seconds.to_string(),
                "--period",
                "1.2",
            ])
            .args([
                "--fringe-factor",
                "20",
                "--min-distance",
                "500",
                "--validate",
            ])
            .current_dir(dir)
            .env("PATH", path),
        "randomTrips.py",
    )?;
    Ok((net, routes))
}
