//! Scenarios made by SUMO's own tools (from the PyPI install), for tests and demos: grids,
//! spider webs and random networks with random demand, so nothing has to be stored in the
//! repository.

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

/// The shape of a generated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A 4×4 grid of signalised crossings, 200 m blocks.
    Grid,
    /// A spider's web: `arms` radial roads crossing three rings 160 m apart, no centre;
    /// junctions of three and four roads at irregular angles, links of varied length.
    Spider { arms: u32 },
    /// A random planar network (`netgenerate --rand`, 40 iterations, roads 120–300 m).
    Random,
}

/// A 4×4 grid of signalised crossings (200 m blocks, two lanes each way, turns that yield)
/// and `seconds` of random trips crossing it, written into `dir`: (network, routes).
pub fn grid(venv: &Path, dir: &Path, seconds: u32) -> Result<(PathBuf, PathBuf), SumoError> {
    generated(venv, dir, Shape::Grid, 7, seconds, 1.2)
}

/// A network of the given shape (two lanes each way, lights where SUMO's heuristics put
/// them, `seed` for the random parts) and `seconds` of random trips, one every `period_s`
/// seconds, at least 500 m long, written into `dir`: (network, routes).
pub fn generated(
    venv: &Path,
    dir: &Path,
    shape: Shape,
    seed: u32,
    seconds: u32,
    period_s: f64,
) -> Result<(PathBuf, PathBuf), SumoError> {
    let name = match shape {
        Shape::Grid => "grid".to_string(),
        Shape::Spider { arms } => format!("spider{arms}_{seed}"),
        Shape::Random => format!("rand_{seed}"),
    };
    let net = dir.join(format!("{name}.net.xml"));
    let routes = dir.join(format!("{name}.rou.xml"));
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
    let shape_args: Vec<String> = match shape {
        Shape::Grid => ["--grid", "--grid.number", "4", "--grid.length", "200"]
            .iter()
            .chain(&["--grid.attach-length", "150"])
            .map(|s| s.to_string())
            .collect(),
        Shape::Spider { arms } => vec![
            "--spider".into(),
            "--spider.arm-number".into(),
            arms.to_string(),
            "--spider.circle-number".into(),
            "3".into(),
            "--spider.space-radius".into(),
            "160".into(),
            "--spider.omit-center".into(),
            "true".into(),
        ],
        Shape::Random => [
            "--rand",
            "--rand.iterations",
            "40",
            "--rand.min-distance",
            "120",
            "--rand.max-distance",
            "300",
            "--rand.min-angle",
            "45",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    run(
        Command::new(venv.join("bin/netgenerate"))
            .args(&shape_args)
            .args(["--seed", &seed.to_string(), "--default.lanenumber", "2"])
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
            .args(["--seed", &seed.to_string(), "--end", &seconds.to_string()])
            .args(["--period", &period_s.to_string()])
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
