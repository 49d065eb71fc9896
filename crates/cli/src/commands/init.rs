//! `citybrain init`: a data directory for your own city. Writes the city profile
//! (`citybrain.toml`: name, zone, local plates, map, languages) that `citybrain up`, every
//! scene and the offline commands read.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use citybrain_core::CityProfile;
use citybrain_core::city::MapView;
use citybrain_hub::profile::{PROFILE_FILE, parse_profile, profile_text};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example (Zhengzhou):\n  citybrain init --data ./zhengzhou --name Zhengzhou --name-zh 郑州 \\\n    --time-zone Asia/Shanghai --plate-prefix 豫A --centre 113.62,34.75\nthen: citybrain up --data ./zhengzhou"
)]
pub struct Args {
    /// The data directory (created if missing).
    #[arg(long, default_value = "./citybrain-data")]
    data: PathBuf,
    /// The city's name in English.
    #[arg(long)]
    name: String,
    /// The city's name in Chinese.
    #[arg(long)]
    name_zh: Option<String>,
    /// IANA time zone (Asia/Shanghai, Asia/Urumqi, Europe/Berlin) or an offset (+08:00).
    #[arg(long, default_value = "Asia/Shanghai")]
    time_zone: String,
    /// A local plate prefix (豫A); repeat for several (--plate-prefix 渝A --plate-prefix 渝B).
    #[arg(long = "plate-prefix", value_name = "PREFIX")]
    plate_prefixes: Vec<String>,
    /// Where the map opens: LON,LAT.
    #[arg(long, value_name = "LON,LAT")]
    centre: Option<String>,
    /// The city's extent: WEST,SOUTH,EAST,NORTH.
    #[arg(long, value_name = "W,S,E,N", requires = "centre")]
    bounds: Option<String>,
    /// The cockpit's languages, the default first (zh, en).
    #[arg(long = "language", value_name = "zh|en", default_values_t = ["zh".to_string(), "en".to_string()])]
    languages: Vec<String>,
    /// Replace an existing profile.
    #[arg(long)]
    force: bool,
}

fn numbers(text: &str, n: usize, what: &str) -> Result<Vec<f64>> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|v: &Vec<f64>| v.len() == n)
        .with_context(|| format!("{what} takes {n} numbers separated by commas, got '{text}'"))?;
    Ok(values)
}

pub fn run(args: Args) -> Result<()> {
    let time_zone = citybrain_core::TimeZone::parse(&args.time_zone)
        .map_err(|e| anyhow::anyhow!("--time-zone: {e}"))?;
    let map = match &args.centre {
        Some(centre) => {
            let c = numbers(centre, 2, "--centre")?;
            let bounds = match &args.bounds {
                Some(b) => {
                    let b = numbers(b, 4, "--bounds")?;
                    Some([b[0], b[1], b[2], b[3]])
                }
                None => None,
            };
            Some(MapView {
                centre: [c[0], c[1]],
                bounds,
            })
        }
        None => None,
    };
    let profile = CityProfile {
        name: args.name,
        name_zh: args.name_zh,
        time_zone,
        plate_prefixes: args.plate_prefixes,
        languages: args.languages,
        map,
    };
    let problems = profile.check();
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let text = profile_text(&profile);
    // What is written is what `up` will read.
    debug_assert_eq!(parse_profile(&text).ok().as_ref(), Some(&profile));
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating the data directory {}", args.data.display()))?;
    let path = args.data.join(PROFILE_FILE);
    if path.exists() && !args.force {
        bail!(
            "{} exists already: edit it, or pass --force to replace it",
            path.display()
        );
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    println!(
        "next: citybrain up --data {}   (then create departments and datasets; README: \"Your own city\")",
        args.data.display()
    );
    Ok(())
}
