//! `citybrain indices`: city indices over recorded files; `indices traffic` computes every
//! traffic index over a recorded day of passages in one pass.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow::array::RecordBatch;
use citybrain_hub::{DatasetDef, Format};
use citybrain_indices::{Link, LinkTravel, Outputs, TrafficConfig, TrafficIndices};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Every traffic index (census, vehicles on the road, link travel times, delay index,
    /// congestion ranking) over a recorded day of ANPR passages, in one pass; written as
    /// Parquet files in --out, with a summary printed.
    Traffic {
        /// ANPR passages (ts, checkpoint_id, plate, ...) as NDJSON, CSV or Parquet, in
        /// roughly time order (out of order up to --lateness-s is put right).
        #[arg(long)]
        passages: PathBuf,
        /// The link table (link_id, from_checkpoint, to_checkpoint, length_m, freeflow_s,
        /// and optionally lanes and district) as NDJSON, CSV or Parquet.
        #[arg(long)]
        links: PathBuf,
        /// The directory the index files (Parquet) go to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Records older than the newest by more than this are counted and dropped.
        #[arg(long, default_value_t = 60)]
        lateness_s: i64,
        /// Partitions of plates computed in parallel (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// The city profile (citybrain.toml, as `citybrain init` writes): its time zone
        /// and local plate prefixes (default: the demo city's, Asia/Shanghai and 浙A).
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// Local plates start with this (repeat for several); overrides the profile's.
        #[arg(long = "plate-prefix", value_name = "PREFIX")]
        plate_prefixes: Vec<String>,
        /// Local days and hours in this IANA zone (or +HH:MM); overrides the profile's.
        #[arg(long, value_name = "ZONE")]
        time_zone: Option<String>,
    },
}

pub fn run(args: Args) -> Result<()> {
    let Command::Traffic {
        passages,
        links,
        out,
        lateness_s,
        threads,
        profile,
        plate_prefixes,
        time_zone,
    } = args.command;
    let mut city = match profile {
        Some(path) => citybrain_hub::profile::read_profile(&path).map_err(anyhow::Error::msg)?,
        None => citybrain_core::CityProfile::hangzhou(),
    };
    if !plate_prefixes.is_empty() {
        city.plate_prefixes = plate_prefixes;
    }
    if let Some(zone) = time_zone {
        city.time_zone = citybrain_core::TimeZone::parse(&zone)
            .map_err(|e| anyhow::anyhow!("--time-zone: {e}"))?;
    }
    let config = TrafficConfig {
        lateness_s,
        local_prefixes: city.plate_prefixes,
        zone: city.time_zone,
        ..TrafficConfig::default()
    };
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    traffic(&passages, &links, &out, config, threads)
}

fn definition(name: &str) -> DatasetDef {
    let (file, text) = citybrain_gen::DEFINITIONS
        .iter()
        .chain(citybrain_indices::DEFINITIONS)
        .find(|(f, _)| f.trim_end_matches(".toml") == name)
        .expect("a built-in definition");
    DatasetDef::from_file_text(file, text).expect("built-in definitions are valid")
}

fn format_of(path: &Path) -> Result<Format> {
    Format::from_path(&path.to_string_lossy()).with_context(|| {
        format!(
            "cannot tell the format of {}: name it .ndjson, .csv or .parquet",
            path.display()
        )
    })
}

/// Reads a whole (small) file of `dataset` records into one batch; bad records are an error
/// naming the line and field.
fn read_small(path: &Path, dataset: &str) -> Result<RecordBatch> {
    let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let decoded = citybrain_hub::decode::decode(&definition(dataset), format_of(path)?, &body)
        .with_context(|| format!("reading {}", path.display()))?;
    if let Some(bad) = decoded.rejected.first() {
        bail!(
            "{} line {}: {}",
            path.display(),
            bad.line,
            bad.problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(decoded.batch)
}

fn read_links(path: &Path) -> Result<Vec<Link>> {
    let batch = read_small(path, "transport.links")?;
    citybrain_indices::links_from_batch(&batch).map_err(anyhow::Error::msg)
}

/// Where decoded batches of passages go.
type Sink<'a> = dyn FnMut(&RecordBatch) -> Result<()> + 'a;

/// Streams the passages file through the operators with a progress bar over its bytes.
fn run_passages(feed: &mut Sink<'_>, path: &Path) -> Result<u64> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("computing indices {bar:40} {bytes}/{total_bytes} {eta}")
            .expect("valid template"),
    );
    let mut rows = 0u64;
    match format_of(path)? {
        Format::Parquet => {
            let file = File::open(path)?;
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
            let total = builder.metadata().file_metadata().num_rows() as u64;
            let mask = parquet::arrow::ProjectionMask::columns(
                builder.parquet_schema(),
                ["ts", "checkpoint_id", "plate"],
            );
            let reader = builder
                .with_projection(mask)
                .with_batch_size(65_536)
                .build()?;
            for batch in reader {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                feed(&batch)?;
                bar.set_position(size * rows / total.max(1));
            }
        }
        format => {
            let def = definition("transport.anpr_passages");
            let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
            let mut header = Vec::new();
            if format == Format::Csv {
                reader.read_until(b'\n', &mut header)?;
            }
            let mut line_base = 0u64;
            loop {
                // About 32 MiB per chunk, cut at a line end.
                let mut chunk = header.clone();
                (&mut reader).take(32 << 20).read_to_end(&mut chunk)?;
                if chunk.len() == header.len() {
                    break;
                }
                reader.read_until(b'\n', &mut chunk)?;
                bar.inc((chunk.len() - header.len()) as u64);
                let decoded = citybrain_hub::decode::decode(&def, format, &chunk)?;
                if let Some(bad) = decoded.rejected.first() {
                    bail!(
                        "{} line {}: {}",
                        path.display(),
                        line_base + bad.line,
                        bad.problems
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                }
                line_base += decoded.total() as u64;
                rows += decoded.batch.num_rows() as u64;
                feed(&decoded.batch)?;
            }
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// Rows as a batch typed by the index dataset's definition, through the hub's own decoder (so
/// the rows are checked against it).
fn rows_batch<T: serde::Serialize>(dataset: &str, rows: &[T]) -> Result<RecordBatch> {
    let def = definition(dataset);
    let decoded =
        citybrain_hub::decode::decode(&def, Format::Ndjson, &citybrain_indices::to_ndjson(rows))?;
    if let Some(bad) = decoded.rejected.first() {
        bail!(
            "internal: an index row does not fit {dataset}: {:?}",
            bad.problems
        );
    }
    Ok(decoded.batch)
}

/// The link bins, column by column. They are most of the output (400,000 rows for a city of
/// 6,000 links): through text, as [`rows_batch`] goes, they took half a second more.
fn link_travel_batch(rows: &[LinkTravel]) -> Result<RecordBatch> {
    use arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    let schema = citybrain_hub::decode::data_schema(&definition("indices.link_travel"));
    let bins = rows.iter().map(|r| r.bin.0).collect::<Vec<i64>>();
    let ints = |f: fn(&LinkTravel) -> i64| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    let floats = |f: fn(&LinkTravel) -> f64| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Float64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(bins).with_timezone("UTC")),
        ints(|r| r.link_id),
        ints(|r| r.from_checkpoint),
        ints(|r| r.to_checkpoint),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.district),
        )),
        ints(|r| r.traversals as i64),
        floats(|r| r.median_s),
        floats(|r| r.p25_s),
        floats(|r| r.p75_s),
        floats(|r| r.freeflow_s),
        floats(|r| r.delay_index),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Writes rows of `dataset` through [`rows_batch`] and [`write_parquet`].
fn write_rows<T: serde::Serialize>(dir: &Path, dataset: &str, rows: &[T]) -> Result<()> {
    write_parquet(dir, dataset, &rows_batch(dataset, rows)?)
}

/// Writes a batch of `dataset` as `<dir>/<name without "indices.">.parquet`.
fn write_parquet(dir: &Path, dataset: &str, batch: &RecordBatch) -> Result<()> {
    let path = dir.join(format!(
        "{}.parquet",
        dataset.trim_start_matches("indices.")
    ));
    let file = File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    Ok(())
}

/// This process's peak resident memory (Linux `VmHWM`), in MiB; None elsewhere.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One pass split across `threads` partitions of plates (see `citybrain_indices::split`).
fn run_parallel(
    config: &TrafficConfig,
    links: Vec<Link>,
    passages: &Path,
    threads: usize,
) -> Result<(u64, Outputs, citybrain_indices::Counters)> {
    let mut pass = citybrain_indices::SplitPass::new(config.clone(), links, threads);
    let rows = run_passages(
        &mut |batch| pass.push_batch(batch).map_err(anyhow::Error::msg),
        passages,
    )?;
    let (outputs, counters) = pass.finish();
    Ok((rows, outputs, counters))
}

fn traffic(
    passages: &Path,
    links: &Path,
    out: &Path,
    config: TrafficConfig,
    threads: usize,
) -> Result<()> {
    let started = Instant::now();
    let min = config.ranking_min_traversals;
    let bin_s = config.bin_s;
    let links = read_links(links)?;
    let (rows, outputs, counters) = if threads > 1 {
        run_parallel(&config, links, passages, threads)?
    } else {
        let mut indices = TrafficIndices::new(config, links);
        let rows = run_passages(
            &mut |batch| indices.push_batch(batch).map_err(anyhow::Error::msg),
            passages,
        )?;
        let (outputs, counters) = indices.finish();
        (rows, outputs, counters)
    };
    let computed = started.elapsed();
    // The ranking covers everything computed: first bin to the end of the last.
    let bins = outputs.link_travel.iter().map(|r| r.bin);
    let ranking = match (bins.clone().min(), bins.max()) {
        (Some(first), Some(last)) => {
            let end = citybrain_core::Timestamp(last.0 + bin_s * 1_000_000);
            citybrain_indices::rank(
                &outputs.link_travel,
                &first.to_string(),
                &end.to_string(),
                min,
            )
        }
        _ => Vec::new(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The link bins are most of the bytes: written on their own thread, the rest on this one.
    std::thread::scope(|scope| -> Result<()> {
        let travel = scope.spawn(|| {
            let batch = link_travel_batch(&outputs.link_travel)?;
            write_parquet(out, "indices.link_travel", &batch)
        });
        write_rows(out, "indices.census_daily", &outputs.census_days)?;
        write_rows(out, "indices.census_hourly", &outputs.census_hours)?;
        write_rows(out, "indices.census_so_far", &outputs.census_so_far)?;
        write_rows(out, "indices.on_road", &outputs.on_road)?;
        write_rows(out, "indices.delay", &outputs.delay)?;
        write_rows(out, "indices.ranking", &ranking)?;
        travel.join().expect("writing link bins panicked")
    })?;
    let city: Vec<_> = outputs
        .delay
        .iter()
        .filter(|d| d.district == citybrain_indices::CITY)
        .collect();
    let traversals: u64 = city.iter().map(|d| d.traversals).sum();
    let day_delay = city
        .iter()
        .map(|d| d.delay_index * d.traversals as f64)
        .sum::<f64>()
        / traversals.max(1) as f64;
    let summary = serde_json::json!({
        "passages": rows,
        "counters": counters,
        "census": outputs.census_days,
        "city_delay_index": day_delay,
        "link_bins": outputs.link_travel.len(),
        "most_congested_links": ranking.iter().filter(|r| r.kind == "link").take(5).collect::<Vec<_>>(),
        "seconds": computed.as_secs_f64(),
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!(
        "{rows} passages in {:.2} s; indices written to {}",
        computed.as_secs_f64(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct path writes exactly what the definition-checked text path would.
    #[test]
    fn link_bins_batch_equals_the_decoded_rows() {
        let row = |link_id: i64, bin: &str, district: &str| LinkTravel {
            bin: citybrain_core::Timestamp::parse(bin).unwrap(),
            link_id,
            from_checkpoint: link_id * 10,
            to_checkpoint: link_id * 10 + 1,
            district: district.into(),
            traversals: 42,
            median_s: 61.5,
            p25_s: 50.25,
            p75_s: 80.0,
            freeflow_s: 45.0,
            delay_index: 61.5 / 45.0,
        };
        let rows = vec![
            row(1, "2026-11-22T08:00:00+08:00", "上城区"),
            row(2, "2026-11-22T00:15:00Z", "西湖区"),
        ];
        assert_eq!(
            link_travel_batch(&rows).unwrap(),
            rows_batch("indices.link_travel", &rows).unwrap()
        );
        // A bin that is not a time cannot be built any more: `LinkTravel::bin` is a
        // `Timestamp`.
    }
}
