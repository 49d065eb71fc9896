//! `citybrain ingest`: a file of records (NDJSON, CSV or Parquet) sent to a dataset on a
//! running server in batches, several in flight at once, with a progress bar.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use citybrain_core::DatasetName;
use citybrain_hub::Format;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{ServerArgs, request_with};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset to add to, e.g. transport.anpr_passages.
    dataset: String,
    /// The records; the format follows the name's ending (.ndjson, .csv, .parquet).
    file: PathBuf,
    /// Records per request (NDJSON and CSV are split; Parquet is sent whole).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Store the valid records and dead-letter the rest.
    #[arg(long)]
    skip_bad: bool,
    /// Requests in flight at once (the hub decodes one while another waits for its fsync).
    #[arg(long, default_value_t = 2)]
    in_flight: usize,
    /// Read the file through this feed mapping of the dataset (its column names, time
    /// format and zone; `citybrain datasets show NAME` lists them). NDJSON and CSV.
    #[arg(long, value_name = "NAME")]
    mapping: Option<String>,
    /// Send each batch with an idempotency key made of KEY and the batch's first line
    /// (KEY alone for Parquet): run the same command again after an interruption and the
    /// batches already stored are not stored twice (the hub remembers keys for a day).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        dataset,
        file,
        batch,
        skip_bad,
        in_flight,
        mapping,
        key,
        server,
    } = args;
    if let Some(key) = &key {
        // The longest batch suffix is "-" and a line number.
        citybrain_hub::check_key(&format!("{key}-{}", u64::MAX))
            .map_err(|e| anyhow::anyhow!("--key '{key}': {e}"))?;
    }
    ingest_file(
        &server,
        &dataset,
        &file,
        batch,
        skip_bad,
        in_flight,
        (mapping.as_deref(), key.as_deref()),
    )
}

fn ingest_file(
    server: &ServerArgs,
    dataset: &str,
    file: &Path,
    batch: usize,
    skip_bad: bool,
    in_flight: usize,
    (mapping, key): (Option<&str>, Option<&str>),
) -> Result<()> {
    let name = DatasetName::parse(dataset)?;
    if let Some(m) = mapping
        && (m.is_empty()
            || !m
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        anyhow::bail!("--mapping '{m}': mapping names use letters, digits, '_' and '-'");
    }
    let format = Format::from_path(&file.to_string_lossy()).with_context(|| {
        format!(
            "cannot tell the format of {}: name it .ndjson, .csv or .parquet",
            file.display()
        )
    })?;
    let mut query = Vec::new();
    if skip_bad {
        query.push("on_error=skip".to_string());
    }
    if let Some(m) = mapping {
        // Mapping names are letters, digits, '_' and '-' (checked with the definition).
        query.push(format!("mapping={m}"));
    }
    let path = format!(
        "/api/v1/datasets/{name}/records{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let total_bytes = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let bar = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template(
            "ingesting {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template"),
    );
    let accepted = std::sync::atomic::AtomicU64::new(0);
    let rejected = std::sync::atomic::AtomicU64::new(0);
    // Records of batches the hub already held under their key (a run sent again).
    let replayed = std::sync::atomic::AtomicU64::new(0);
    // Batches whose request failed: (first line, last line, error).
    let failed = std::sync::Mutex::new(Vec::<(u64, u64, anyhow::Error)>::new());
    let send = |chunk: Vec<u8>, lines: (u64, u64)| {
        let len = chunk.len() as u64;
        let batch_key = key.map(|k| match format {
            Format::Parquet => k.to_string(),
            _ => format!("{k}-{}", lines.0),
        });
        let headers: Vec<(&str, &str)> = batch_key
            .as_deref()
            .map(|k| vec![("Idempotency-Key", k)])
            .unwrap_or_default();
        let outcome = request_with(
            server,
            "POST",
            &path,
            Some((format.content_type(), chunk)),
            &headers,
        )
        .and_then(|bytes| Ok(serde_json::from_slice::<serde_json::Value>(&bytes)?));
        match outcome {
            Ok(report) => {
                use std::sync::atomic::Ordering::Relaxed;
                let counted = report["accepted"].as_u64().unwrap_or(0);
                if report["replayed"].as_bool() == Some(true) {
                    replayed.fetch_add(counted, Relaxed);
                } else {
                    accepted.fetch_add(counted, Relaxed);
                    rejected.fetch_add(report["rejected"].as_u64().unwrap_or(0), Relaxed);
                }
                bar.inc(len);
            }
            Err(error) => failed
                .lock()
                .expect("failed lock")
                .push((lines.0, lines.1, error)),
        }
    };
    if format == Format::Parquet {
        send(std::fs::read(file)?, (1, 0));
    } else {
        // Requests in flight at once: while the hub decodes one batch (on both cores) and
        // waits for its fsync, the next is already on its way.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, (u64, u64))>(in_flight);
        let rx = std::sync::Mutex::new(rx);
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..in_flight.max(1) {
                scope.spawn(|| {
                    loop {
                        let next = rx.lock().expect("queue lock").recv();
                        let Ok((chunk, lines)) = next else { return };
                        send(chunk, lines);
                    }
                });
            }
            let mut reader = std::io::BufReader::new(std::fs::File::open(file)?);
            let mut header = Vec::new();
            let mut line = 1u64;
            if format == Format::Csv {
                reader.read_until(b'\n', &mut header)?;
                bar.inc(header.len() as u64);
                line += 1;
            }
            loop {
                // After a refused batch no more are sent; those in flight finish.
                if !failed.lock().expect("failed lock").is_empty() {
                    break;
                }
                let mut chunk = header.clone();
                let mut lines = 0;
                while lines < batch && reader.read_until(b'\n', &mut chunk)? > 0 {
                    lines += 1;
                }
                if lines == 0 {
                    break;
                }
                let range = (line, line + lines as u64 - 1);
                line += lines as u64;
                if tx.send((chunk, range)).is_err() {
                    break;
                }
            }
            drop(tx);
            Ok(())
        })?;
    }
    let (accepted, rejected, replayed) = (
        accepted.into_inner(),
        rejected.into_inner(),
        replayed.into_inner(),
    );
    let mut failed = failed.into_inner().expect("failed lock");
    if !failed.is_empty() {
        bar.finish_and_clear();
        failed.sort_by_key(|f| f.0);
        let (first, last, error) = failed.remove(0);
        let which = if format == Format::Parquet {
            "the file".to_string()
        } else {
            format!("the batch of lines {first}–{last}")
        };
        let others = failed
            .iter()
            .map(|(a, b, _)| format!("{a}–{b}"))
            .collect::<Vec<_>>();
        let also = if others.is_empty() {
            String::new()
        } else {
            format!(" (also refused: lines {})", others.join(", "))
        };
        return Err(error.context(format!(
            "{which} of {} was refused{also}; every other batch sent was stored ({accepted} records). \
             Fix those lines and send just them, or use --skip-bad to store the valid records and dead-letter the rest",
            file.display()
        )));
    }
    bar.finish_and_clear();
    if replayed > 0 {
        println!(
            "{name}: {accepted} records accepted, {rejected} rejected; {replayed} already stored under their key (not stored again)"
        );
    } else {
        println!("{name}: {accepted} records accepted, {rejected} rejected");
    }
    Ok(())
}
