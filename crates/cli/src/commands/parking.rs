//! `citybrain parking`: the parking scene's offline commands (`forecast-eval`, the free-berth
//! forecast scored on a recorded occupancy series).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use citybrain_parking::{Evaluation, evaluate};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Scores the free-berth forecast against "same as now" 15, 30 and 60 minutes ahead on
    /// a car-park occupancy series (timestamp,poiID,capacity,free; '-' reads stdin, e.g.
    /// `zcat malaga_carparks_occupancy.csv.gz | citybrain parking forecast-eval -`).
    ForecastEval {
        /// The occupancy series (CSV), or '-' for stdin.
        occupancy: PathBuf,
        /// Days at the start of each car park's series used only to learn.
        #[arg(long, default_value_t = 28)]
        warmup_days: i64,
        /// Also print each car park's errors.
        #[arg(long)]
        per_lot: bool,
    },
}

pub fn run(args: Args) -> Result<()> {
    let Command::ForecastEval {
        occupancy,
        warmup_days,
        per_lot,
    } = args.command;
    forecast_eval(&occupancy, warmup_days, per_lot)
}

/// Minutes since 1970-01-01 of a naive local `YYYY-MM-DD HH:MM[:SS]` (the series' own clock:
/// its daily profile is in local time).
fn naive_minutes(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (h, min) = (t.next()?.ok()?, t.next()?.ok()?);
    let days = i64::from(citybrain_core::Date::from_ymd(y, m as u32, day as u32).0);
    Some(days * 1440 + h * 60 + min)
}

/// Evaluates the free-berth forecast against "same as now" on a car-park occupancy series
/// (`timestamp,poiID,capacity,free`, e.g. Málaga's), prequentially: every forecast is made
/// before the observation it predicts is learned.
fn forecast_eval(occupancy: &Path, warmup_days: i64, per_lot: bool) -> Result<()> {
    let reader: Box<dyn Read> = if occupancy == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(occupancy)
                .with_context(|| format!("opening {}", occupancy.display()))?,
        )
    };
    // Per lot: capacity and (slot, free), the last reading in each 15-minute slot.
    let mut lots: BTreeMap<String, (u32, BTreeMap<i64, f64>)> = BTreeMap::new();
    let mut lines = BufReader::new(reader).lines();
    let header = lines.next().context("the file is empty")??;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .with_context(|| format!("no '{name}' column in the header ({header})"))
    };
    let (c_ts, c_lot, c_cap, c_free) = (
        col("timestamp")?,
        col("poiID")?,
        col("capacity")?,
        col("free")?,
    );
    let (mut rows, mut skipped) = (0usize, 0usize);
    for (n, line) in lines.enumerate() {
        let line = line?;
        let cells: Vec<&str> = line.split(',').collect();
        let cell = |i: usize, field: &str| {
            cells
                .get(i)
                .map(|c| c.trim())
                .with_context(|| format!("line {}: no {field}", n + 2))
        };
        let minutes = naive_minutes(cell(c_ts, "timestamp")?)
            .with_context(|| format!("line {}: timestamp is not YYYY-MM-DD HH:MM:SS", n + 2))?;
        // The real series has gaps: capacity 'None' (unknown, taken as the largest free
        // count seen) and free -1 (no reading, skipped and counted).
        let capacity: Option<u32> = cell(c_cap, "capacity")?.parse().ok();
        let Some(free) = cell(c_free, "free")?
            .parse::<f64>()
            .ok()
            .filter(|f| *f >= 0.0)
        else {
            skipped += 1;
            continue;
        };
        let entry = lots.entry(cell(c_lot, "poiID")?.to_string()).or_default();
        entry.0 = entry.0.max(capacity.unwrap_or(0)).max(free as u32);
        entry.1.insert(minutes.div_euclid(15), free);
        rows += 1;
    }
    if lots.is_empty() {
        bail!("no readings in {}", occupancy.display());
    }
    let mut total = Evaluation::default();
    let mut table = Vec::new();
    for (lot, (capacity, series)) in &lots {
        let series: Vec<(i64, f64)> = series.iter().map(|(s, f)| (*s, *f)).collect();
        let score_from = series[0].0 + warmup_days * 96;
        let mut one = Evaluation::default();
        evaluate(&series, *capacity, score_from, &mut one);
        evaluate(&series, *capacity, score_from, &mut total);
        one.finish();
        table.push((lot.clone(), *capacity, series.len(), one));
    }
    total.finish();
    println!(
        "{rows} readings ({skipped} without a count skipped), {} car parks; the first {warmup_days} days of each only train",
        lots.len()
    );
    if per_lot {
        println!(
            "{:>6} {:>8} {:>7}  MAE model / naive at 15, 30, 60 min",
            "lot", "capacity", "slots"
        );
        for (lot, capacity, slots, e) in &table {
            let cells: Vec<String> = (0..e.horizons_min.len())
                .map(|i| format!("{:6.2} / {:6.2}", e.mae_model[i], e.mae_naive[i]))
                .collect();
            println!("{lot:>6} {capacity:>8} {slots:>7}  {}", cells.join("   "));
        }
    }
    println!("horizon  forecasts  MAE model  MAE same-as-now  change");
    for i in 0..total.horizons_min.len() {
        println!(
            "{:>4} min {:>10} {:>10.2} {:>16.2} {:>+7.1}%",
            total.horizons_min[i],
            total.forecasts[i],
            total.mae_model[i],
            total.mae_naive[i],
            100.0 * (total.mae_model[i] / total.mae_naive[i] - 1.0)
        );
    }
    Ok(())
}
