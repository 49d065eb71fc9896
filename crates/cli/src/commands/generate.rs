//! `citybrain gen`: a deterministic synthetic city with its ground truth, written to a
//! directory; [`with_progress`] is also how `up` makes the demo city.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The same seed gives the same city, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// 1.0 = 20,000 vehicles, about half a million passages.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The directory to write the city to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Probability a camera misses a vehicle.
    #[arg(long, default_value_t = 0.03)]
    miss_rate: f64,
    /// Probability a camera misreads one plate character.
    #[arg(long, default_value_t = 0.02)]
    misread_rate: f64,
    /// A CBEngine road network file (default: the embedded real Hangzhou network).
    #[arg(long)]
    network: Option<PathBuf>,
    /// Each vehicle makes 1 to this many trips in the day (about 10 passages a trip).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    max_trips: u64,
    /// The city profile (citybrain.toml): its first plate prefix is the local one and the
    /// day is a local day in its zone (default: Hangzhou's, 浙A and Asia/Shanghai).
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        seed,
        scale,
        out,
        miss_rate,
        misread_rate,
        network,
        max_trips,
        profile,
    } = args;
    let mut config = citybrain_gen::GenConfig {
        miss_rate,
        misread_rate,
        network,
        max_trips,
        ..citybrain_gen::GenConfig::demo(seed, scale)
    };
    if let Some(path) = profile {
        let city = citybrain_hub::profile::read_profile(&path).map_err(anyhow::Error::msg)?;
        config = config.for_city(&city);
    }
    let truth = with_progress(&config, &out)?;
    println!("{}", serde_json::to_string_pretty(&truth)?);
    println!("wrote the demo city to {}", out.display());
    Ok(())
}

pub fn with_progress(
    config: &citybrain_gen::GenConfig,
    out: &Path,
) -> Result<citybrain_gen::Truth> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("generating vehicles {bar:40} {pos}/{len} {eta}")
            .expect("valid template"),
    );
    let truth = citybrain_gen::generate(config, out, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| {
        format!(
            "generating the city into {} (pass --network PATH if the road network is elsewhere)",
            out.display()
        )
    })?;
    bar.finish_and_clear();
    Ok(truth)
}
