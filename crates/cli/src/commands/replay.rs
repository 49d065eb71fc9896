//! `citybrain replay`: a recorded file of passages sent to a running server at a chosen
//! speed, one batch per tick of data time, as cameras would send them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use citybrain_core::DatasetName;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{ServerArgs, request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recorded passages (NDJSON, one record a line, in time order).
    file: PathBuf,
    /// The dataset to send to.
    #[arg(long, default_value = "transport.anpr_passages")]
    dataset: String,
    /// Data seconds per wall second, e.g. 60 (or 60x): an hour of data in a minute.
    #[arg(long, default_value = "60")]
    speed: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        file,
        dataset,
        speed,
        server,
    } = args;
    let speed: f64 = speed
        .trim_end_matches('x')
        .parse()
        .ok()
        .filter(|s: &f64| *s > 0.0)
        .with_context(|| format!("--speed '{speed}' is not a positive number like 60 or 60x"))?;
    replay(&server, &dataset, &file, speed)
}

/// The `ts` of an NDJSON passage line, found without parsing the whole record.
fn line_ts(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?;
    let start = text.find("\"ts\":\"")? + 6;
    let end = start + text[start..].find('"')?;
    citybrain_core::Timestamp::parse(&text[start..end])
        .ok()
        .map(|t| t.0)
}

/// Sends the file in one batch per wall-clock tick of data time, paced by `speed`.
fn replay(server: &ServerArgs, dataset: &str, file: &Path, speed: f64) -> Result<()> {
    let name = DatasetName::parse(dataset)?;
    let path = format!("/api/v1/datasets/{name}/records");
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let Some(first) = lines.iter().find_map(|l| line_ts(l)) else {
        bail!("{} has no records with a \"ts\" field", file.display());
    };
    let last = lines.iter().rev().find_map(|l| line_ts(l)).unwrap_or(first);
    let bar = ProgressBar::new(((last - first) / 1_000_000).max(1) as u64).with_style(
        ProgressStyle::with_template("replaying {bar:40} {msg} data time, {pos}/{len} s")
            .expect("valid template"),
    );
    let started = std::time::Instant::now();
    // One request per 200 ms of wall time.
    let tick_us = (0.2 * speed * 1e6) as i64;
    let mut batch: Vec<u8> = Vec::new();
    let mut window_end = first + tick_us;
    let mut sent = 0u64;
    let send = |batch: &mut Vec<u8>, data_time: i64| -> Result<()> {
        if !batch.is_empty() {
            request(
                server,
                "POST",
                &path,
                Some(("application/x-ndjson", std::mem::take(batch))),
            )?;
        }
        let due = (data_time - first) as f64 / 1e6 / speed;
        let wait = due - started.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(wait));
        }
        bar.set_position(((data_time - first) / 1_000_000).max(0) as u64);
        bar.set_message(citybrain_core::Timestamp(data_time).to_string());
        Ok(())
    };
    for line in lines {
        let ts = line_ts(line).unwrap_or(window_end);
        while ts >= window_end {
            send(&mut batch, window_end)?;
            window_end += tick_us;
        }
        batch.extend_from_slice(line);
        batch.push(b'\n');
        sent += 1;
    }
    send(&mut batch, window_end)?;
    bar.finish_and_clear();
    println!(
        "replayed {sent} records into {name} in {:.1} s ({speed}x)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
