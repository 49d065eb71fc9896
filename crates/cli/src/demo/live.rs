//! The demo city alive. Its day is today in the city's zone (or `--demo-day`); what happened
//! before now is loaded at start, and the rest of the day's passages, gate reads and sensor
//! messages arrive as the day goes on (`--demo-speed` times faster, from `--demo-from`), so
//! the cockpit's live view moves. A past day is loaded whole, as a recording.
//!
//! Nothing is stored twice across restarts and crashes: after each batch, `demo/replayed.json`
//! keeps, per dataset, the newest time sent and the feed position the hub answered with. A
//! crash between a batch being stored and that file being written leaves the hub ahead of
//! the file; at the next start the rows stored after the file's position (read back from the
//! change feed) move the mark to where the hub really is.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use citybrain_core::{DatasetName, Date, Timestamp};
use citybrain_hub::{Format, Hub, OnError, Position, Positions};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// The generated files that carry time: dataset, file, and the time field each line starts
/// with.
pub const TIMED: &[(&str, &str, &str)] = &[
    ("transport.anpr_passages", "anpr_passages.ndjson", "ts"),
    ("parking.gate_events", "parking_gate_events.ndjson", "ts"),
    (
        "parking.sensor_events",
        "parking_sensor_events.ndjson",
        "ts",
    ),
    // The village map's sensors (`citybrain_gen::village`), an hourly reading each.
    (
        "environment.air_quality",
        "village_air_quality.ndjson",
        "date_observed",
    ),
    (
        "environment.water_quality",
        "village_water_quality.ndjson",
        "date_observed",
    ),
    ("environment.noise", "village_noise.ndjson", "date_observed"),
    (
        "meteorology.weather",
        "village_weather.ndjson",
        "date_observed",
    ),
    (
        "urban_management.waste_containers",
        "village_waste.ndjson",
        "date_observed",
    ),
];

const MARKS: &str = "replayed.json";

/// How far each timed dataset has been sent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Mark {
    /// The newest event time sent (µs).
    ts: i64,
    /// The feed position of the batch that carried it.
    position: i64,
}

/// The demo's clock: the day, where it starts, how fast it runs.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub day: Date,
    /// The demo time (µs) when the server starts: everything up to it is loaded at once.
    pub start: i64,
    /// Demo seconds per second.
    pub speed: f64,
}

impl Clock {
    /// Today runs from now; a past day is a recording, loaded whole; `from` (seconds after
    /// the day's local midnight) starts the clock there instead.
    pub fn choose(
        day: Date,
        zone: &citybrain_core::TimeZone,
        now: Timestamp,
        from: Option<u32>,
        speed: f64,
    ) -> Self {
        let today = zone.local_day(now);
        let start = match from {
            Some(secs) => zone.day_start(day).0 + i64::from(secs) * 1_000_000,
            None if day == today => now.0,
            None if day < today => i64::MAX,
            None => zone.day_start(day).0,
        };
        Self {
            day,
            start,
            speed: speed.max(0.001),
        }
    }

    /// Whether anything is left to arrive after the start.
    pub fn is_live(&self) -> bool {
        self.start != i64::MAX
    }
}

/// The rest of the day, to be sent as its time comes.
pub struct Replay {
    queues: Vec<(DatasetName, VecDeque<(i64, String)>)>,
    marks: BTreeMap<String, Mark>,
    marks_path: PathBuf,
    clock: Clock,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let left: usize = self.queues.iter().map(|(_, q)| q.len()).sum();
        write!(f, "Replay({left} records left)")
    }
}

/// The event time of a generated line, which starts `{"<field>":"..."`.
fn line_ts(line: &str, field: &str) -> Option<i64> {
    let rest = line.split_once(&format!("\"{field}\":\""))?.1;
    let text = &rest[..rest.find('"')?];
    Timestamp::parse(text).ok().map(|t| t.0)
}

fn write_marks(path: &Path, marks: &BTreeMap<String, Mark>) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(marks)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The newest `field` among rows stored in `dataset` after `position` (a batch whose mark
/// was never written).
fn newest_after(
    hub: &Hub,
    dataset: &DatasetName,
    field: &str,
    position: i64,
) -> Result<Option<i64>> {
    let from = Positions::from([(dataset.clone(), Position(position))]);
    let mut subscription = hub.subscribe(std::slice::from_ref(dataset), &from)?;
    let mut newest = None;
    while subscription.catching_up() > 0 {
        let Some(change) = subscription.try_recv() else {
            break;
        };
        for batch in &change.batches {
            if let Some(ts) = batch.column_by_name(field) {
                let ts = ts.as_primitive::<TimestampMicrosecondType>();
                for i in 0..ts.len() {
                    if ts.is_valid(i) {
                        newest = newest.max(Some(ts.value(i)));
                    }
                }
            }
        }
    }
    Ok(newest)
}

/// Sends `lines` (one NDJSON body) to `dataset` and moves its mark to `ts`.
fn send(
    hub: &Hub,
    dataset: &DatasetName,
    body: &[u8],
    ts: i64,
    marks: &mut BTreeMap<String, Mark>,
    marks_path: &Path,
) -> Result<()> {
    let report = hub.ingest(
        dataset,
        Format::Ndjson,
        body,
        OnError::Reject,
        citybrain_server::now(),
    )?;
    let position = report.position.map_or(0, |p| p.0);
    marks.insert(dataset.to_string(), Mark { ts, position });
    write_marks(marks_path, marks)
}

/// Loads what happened up to the clock's start from the generated files in `demo`, past
/// whatever an earlier start sent, and returns the rest of the day.
pub fn load(hub: &Hub, demo: &Path, clock: Clock) -> Result<Replay> {
    let marks_path = demo.join(MARKS);
    let mut marks: BTreeMap<String, Mark> = match std::fs::read(&marks_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", marks_path.display()))?,
        Err(_) => BTreeMap::new(),
    };
    let passages = DatasetName::parse(TIMED[0].0)?;
    if marks.is_empty() && hub.snapshot(&passages)?.rows() > 0 {
        // A data directory from before the demo was live: its day is loaded whole.
        for (dataset, _, _) in TIMED {
            marks.insert(
                dataset.to_string(),
                Mark {
                    ts: i64::MAX,
                    position: 0,
                },
            );
        }
        write_marks(&marks_path, &marks)?;
    }
    let mut queues = Vec::new();
    for (dataset, file, field) in TIMED {
        let name = DatasetName::parse(dataset)?;
        if !hub.names().contains(&name) {
            // A dataset this demo does not have (made by an older release).
            continue;
        }
        if let Some(mark) = marks.get(*dataset).copied()
            && mark.ts != i64::MAX
            && hub.head(&name).is_some_and(|h| h.0 > mark.position)
            && let Some(newest) = newest_after(hub, &name, field, mark.position)?
        {
            let position = hub.head(&name).map_or(mark.position, |h| h.0);
            marks.insert(
                dataset.to_string(),
                Mark {
                    ts: newest.max(mark.ts),
                    position,
                },
            );
        }
        let sent = marks.get(*dataset).map_or(i64::MIN, |m| m.ts);
        if sent == i64::MAX {
            // All of it was sent before: no need to read the file again at every start.
            continue;
        }
        let path = demo.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // A file an older release did not generate: nothing of it to send.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut lines: Vec<(i64, String)> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                line_ts(l, field)
                    .map(|ts| (ts, l.to_string()))
                    .with_context(|| format!("{}: a line without a {field}: {l}", path.display()))
            })
            .collect::<Result<_>>()?;
        lines.sort_by_key(|(ts, _)| *ts);
        lines.retain(|(ts, _)| *ts > sent);
        let split = lines.partition_point(|(ts, _)| *ts <= clock.start);
        let later: VecDeque<(i64, String)> = lines.split_off(split).into();
        let bar = ProgressBar::new(lines.len() as u64).with_style(
            ProgressStyle::with_template(&format!(
                "loading {dataset:<26} {{bar:40}} {{pos}}/{{len}}"
            ))
            .expect("valid template"),
        );
        // Batches of about 10,000 records, as a publisher would send them.
        for chunk in lines.chunks(10_000) {
            let mut body = String::with_capacity(chunk.len() * 100);
            for (_, line) in chunk {
                body.push_str(line);
                body.push('\n');
            }
            let last = chunk.last().map_or(sent, |(ts, _)| *ts);
            send(hub, &name, body.as_bytes(), last, &mut marks, &marks_path)?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        if !later.is_empty() {
            queues.push((name, later));
        }
    }
    Ok(Replay {
        queues,
        marks,
        marks_path,
        clock,
    })
}

impl Replay {
    /// Records still to come.
    pub fn left(&self) -> usize {
        self.queues.iter().map(|(_, q)| q.len()).sum()
    }

    pub fn day(&self) -> Date {
        self.clock.day
    }

    /// Whether the day runs live (rather than loaded whole).
    pub fn is_live(&self) -> bool {
        self.clock.is_live() && self.left() > 0
    }

    /// Sends each record as the demo clock passes its time, until the day is over or `stop`
    /// is set. Errors end the replay with a log line (the server goes on).
    pub fn spawn(mut self, hub: Arc<Hub>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !self.queues.is_empty() && !stop.load(Ordering::Relaxed) {
                let now = self.clock.start
                    + (started.elapsed().as_secs_f64() * self.clock.speed * 1e6) as i64;
                let (marks, marks_path) = (&mut self.marks, &self.marks_path);
                for (name, queue) in &mut self.queues {
                    let mut body = String::new();
                    let mut last = None;
                    while let Some((ts, _)) = queue.front()
                        && *ts <= now
                    {
                        let (ts, line) = queue.pop_front().expect("a front");
                        body.push_str(&line);
                        body.push('\n');
                        last = Some(ts);
                    }
                    if let Some(ts) = last
                        && let Err(error) = send(&hub, name, body.as_bytes(), ts, marks, marks_path)
                    {
                        if !stop.load(Ordering::Relaxed) {
                            tracing::warn!(message = "The demo's replay stopped.", dataset = %name, error = %error);
                        }
                        return;
                    }
                }
                self.queues.retain(|(_, q)| !q.is_empty());
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_runs_today_from_now_and_a_past_day_is_a_recording() {
        let zone = citybrain_core::TimeZone::parse("Asia/Shanghai").unwrap();
        let now = Timestamp::parse("2026-12-02T10:30:00+08:00").unwrap();
        let today = Date::parse("2026-12-02").unwrap();
        let c = Clock::choose(today, &zone, now, None, 1.0);
        assert_eq!(c.start, now.0);
        let past = Clock::choose(Date::parse("2026-11-22").unwrap(), &zone, now, None, 1.0);
        assert!(!past.is_live());
        let from = Clock::choose(
            Date::parse("2026-11-22").unwrap(),
            &zone,
            now,
            Some(8 * 3600),
            60.0,
        );
        assert_eq!(Timestamp(from.start).to_string(), "2026-11-22T00:00:00Z");
        assert_eq!(
            line_ts(
                r#"{"ts":"2026-11-21T21:43:11.413442Z","checkpoint_id":1}"#,
                "ts"
            ),
            Some(Timestamp::parse("2026-11-21T21:43:11.413442Z").unwrap().0)
        );
    }
}
