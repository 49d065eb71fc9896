//! The traffic indices, computed incrementally from ANPR passages in one pass.
//!
//! Records go through a reorder buffer that holds them for the allowed lateness, so the
//! operators below see them in time order without the whole day ever being sorted. Every
//! operator keeps state per key (plate, link, 15-minute bin, 5-minute bucket) and emits a
//! window's rows as soon as the stream's time has passed it. One hash lookup per passage
//! serves the census, vehicles on the road and link travel times.
//!
//! The operators, each in its own file: `census` (vehicles per day and hour, and the day so
//! far), `on_road` (vehicles on the road), `link_travel` (travel times and the delay
//! index) and `rank` (congestion rankings over a range of bins). Around them: `input`
//! (links, passages, records), `reorder` (the lateness buffer), `live` (the provisional
//! view) and `merge` (a parallel pass over partitions of plates). This file holds the
//! operator set itself and the step every passage takes through it (`apply`).

mod census;
mod input;
mod link_travel;
mod live;
mod merge;
mod on_road;
mod rank;
mod reorder;

use std::collections::{BTreeMap, VecDeque};

use citybrain_core::{Date, TimeZone, Timestamp};
use serde::Serialize;

use crate::plate::{FastMap, PlateTable};

pub use census::{CensusDay, CensusHour, CensusSoFar};
pub use input::{Link, LocalPrefix, Passage, Record, for_each_passage, links_from_batch};
pub use link_travel::{DelayIndex, LinkTravel};
pub use live::Live;
pub use merge::{Admission, Partial, merge, partition_of, partition_of_key};
pub use on_road::OnRoad;
pub use rank::{RankEntry, rank};

use census::{DayCensus, Tally};
use link_travel::{Adjacency, Outgoing};
use merge::RawTravel;

const SECOND: i64 = 1_000_000;

/// The `district` of rows about the whole city.
pub const CITY: &str = "city";

/// How the indices are computed. The defaults are the documented definitions.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// Plates starting with any of these are local (`浙A`: Hangzhou; the city profile's).
    pub local_prefixes: Vec<String>,
    /// The city's time zone, for local days and hours (the city profile's).
    pub zone: TimeZone,
    /// Passages a plate needs in a day before the census counts it: misreads make plates
    /// seen once, and real vehicles almost never pass a single camera in a whole day.
    /// At most 255 (more is taken as 255).
    pub corroboration: u32,
    /// Vehicles on the road at t: a passage in [t − window, t).
    pub on_road_window_s: i64,
    /// On-road instants are every `step` seconds.
    pub on_road_step_s: i64,
    /// Link travel time bins (by the time a vehicle entered the link).
    pub bin_s: i64,
    /// Records up to this much older than the newest seen are put in order and applied;
    /// older ones are counted and dropped.
    pub lateness_s: i64,
    /// A traversal slower than this many free-flow times is a stop, not travel.
    pub max_delay_factor: f64,
    /// Links and districts need this many traversals in the window to be ranked.
    pub ranking_min_traversals: u64,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            local_prefixes: vec!["浙A".into()],
            zone: TimeZone::fixed(8 * 3600),
            corroboration: 2,
            on_road_window_s: 900,
            on_road_step_s: 300,
            bin_s: 900,
            lateness_s: 60,
            max_delay_factor: 8.0,
            ranking_min_traversals: 20,
        }
    }
}

/// Rows produced as windows close.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Outputs {
    pub census_days: Vec<CensusDay>,
    pub census_hours: Vec<CensusHour>,
    pub census_so_far: Vec<CensusSoFar>,
    pub on_road: Vec<OnRoad>,
    pub link_travel: Vec<LinkTravel>,
    pub delay: Vec<DelayIndex>,
}

impl Outputs {
    pub fn append(&mut self, mut other: Outputs) {
        self.census_days.append(&mut other.census_days);
        self.census_hours.append(&mut other.census_hours);
        self.census_so_far.append(&mut other.census_so_far);
        self.on_road.append(&mut other.on_road);
        self.link_travel.append(&mut other.link_travel);
        self.delay.append(&mut other.delay);
    }
}

/// What happened to the input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub applied: u64,
    /// Older than the lateness allows when they arrived.
    pub late_dropped: u64,
    /// The same plate at the same checkpoint at the same instant again.
    pub duplicates: u64,
    /// Arrived out of order but within the lateness, and put in order.
    pub reordered: u64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, other: Counters) {
        self.applied += other.applied;
        self.late_dropped += other.late_dropped;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
    }
}

/// What the operators remember of a plate: its last passage, and its census of that
/// passage's local day. 16 bytes, so a plate and its state take half a cache line: the
/// plate table is the one structure every passage touches at random. The last passage's
/// on-road bucket, district and local day follow from its time and checkpoint.
#[derive(Debug, Clone, Copy)]
struct PlateState {
    /// Time of the last passage (µs), `i64::MIN` before the first.
    last_ts: i64,
    /// Its checkpoint, as an index (see `TrafficIndices::checkpoint_index`).
    last_checkpoint: u32,
    /// Hours of that local day with a passage (bits 0–23), and in the top byte how many
    /// passages that day (saturating at 255; `corroboration` is at most 255).
    hours_passages: u32,
}

impl Default for PlateState {
    fn default() -> Self {
        Self {
            last_ts: i64::MIN,
            last_checkpoint: 0,
            hours_passages: 0,
        }
    }
}

impl PlateState {
    fn hours(&self) -> u32 {
        self.hours_passages & 0x00FF_FFFF
    }
    fn passages(&self) -> u32 {
        self.hours_passages >> 24
    }
}

/// The incremental operator set. Push passages, then `finish` (or read `take_outputs`
/// between pushes for live use).
#[derive(Debug)]
pub struct TrafficIndices {
    config: TrafficConfig,
    local: LocalPrefix,
    links: Vec<Link>,
    /// Per checkpoint index, the links leaving it.
    links_from: Adjacency,
    /// Each link's district, as an index into `district_names`.
    link_district: Vec<u16>,
    district_names: Vec<String>,
    /// Every checkpoint seen (those of the links first) → its index, and by index its
    /// district (the district of a link leaving it; the city's for others).
    checkpoint_index: FastMap<i64, u32>,
    checkpoint_district: Vec<u16>,
    /// The longest traversal accepted, over all links, in µs: bins close after it.
    max_travel: i64,
    // The reorder buffer and the stream's clock.
    buffer: VecDeque<Record>,
    newest: i64,
    /// Time of the last record released to the operators.
    clock: i64,
    /// The earliest time at which a window can close (an on-road instant, a link bin, a
    /// day): until then `tick` has nothing to do, and most records arrive before it.
    due: i64,
    plates: PlateTable<PlateState>,
    days: BTreeMap<i64, DayCensus>,
    /// On-road vehicles per (absolute bucket) per district.
    buckets: BTreeMap<i64, Vec<i64>>,
    next_instant: Option<i64>,
    /// Plates corroborated per on-road bucket (of the corroborating passage), not yet folded
    /// into `so_far`: keyed by the passage's time, so the census at an instant counts exactly
    /// the passages before it, whenever the instant is emitted.
    corroborated: BTreeMap<i64, Tally>,
    /// The census so far of the latest local day folded (`i64::MIN` before any).
    so_far: (i64, Tally),
    /// Open link-travel bins: bin number → its traversals as (link index, travel time s) in
    /// the order they ended. Appending to one list per bin writes memory in sequence; a list
    /// per link scattered every traversal's write over a thousand lists' tails.
    bins: BTreeMap<i64, Vec<(u32, f32)>>,
    counters: Counters,
    out: Outputs,
    /// In a partition of a parallel pass: closed link bins kept as raw travel times, since
    /// medians of partitions do not combine (see [`merge()`]).
    raw_travel: Option<Vec<RawTravel>>,
}

/// The local day (days since the epoch) of a time in µs.
fn local_day(ts: i64, zone: &TimeZone) -> i64 {
    i64::from(zone.local_day(Timestamp(ts)).0)
}

impl TrafficIndices {
    pub fn new(config: TrafficConfig, links: Vec<Link>) -> Self {
        let mut district_names = vec![CITY.to_string()];
        let mut district_of_checkpoint = FastMap::default();
        let mut link_of = FastMap::default();
        let mut link_district = Vec::with_capacity(links.len());
        let mut max_freeflow: f64 = 0.0;
        for (i, link) in links.iter().enumerate() {
            link_of.insert((link.from, link.to), i as u32);
            max_freeflow = max_freeflow.max(link.freeflow_s);
            let d = match district_names.iter().position(|n| n == &link.district) {
                Some(d) => d,
                None => {
                    district_names.push(link.district.clone());
                    district_names.len() - 1
                }
            };
            district_of_checkpoint.entry(link.from).or_insert(d as u16);
            link_district.push(d as u16);
        }
        let mut checkpoint_index = FastMap::default();
        let mut checkpoint_district = Vec::new();
        for link in &links {
            for cp in [link.from, link.to] {
                checkpoint_index.entry(cp).or_insert_with(|| {
                    checkpoint_district.push(district_of_checkpoint.get(&cp).copied().unwrap_or(0));
                    checkpoint_district.len() as u32 - 1
                });
            }
        }
        // Two links between the same checkpoints: the later one counts (as it always has).
        let mut pairs: Vec<_> = link_of
            .into_iter()
            .map(|((from, to), link)| {
                let longest = links[link as usize].freeflow_s * config.max_delay_factor;
                (
                    checkpoint_index[&from],
                    Outgoing {
                        to: checkpoint_index[&to],
                        link,
                        max_travel: (longest * SECOND as f64) as i64,
                    },
                )
            })
            .collect();
        pairs.sort_unstable_by_key(|(from, o)| (*from, o.to));
        let links_from = Adjacency::new(checkpoint_district.len(), pairs);
        let max_travel = (max_freeflow * config.max_delay_factor * SECOND as f64) as i64;
        Self {
            local: LocalPrefix::new(&config.local_prefixes),
            config,
            links,
            links_from,
            link_district,
            district_names,
            checkpoint_index,
            checkpoint_district,
            max_travel,
            buffer: VecDeque::new(),
            newest: i64::MIN,
            clock: i64::MIN,
            due: i64::MIN,
            plates: PlateTable::default(),
            days: BTreeMap::new(),
            buckets: BTreeMap::new(),
            next_instant: None,
            corroborated: BTreeMap::new(),
            so_far: (i64::MIN, Tally::default()),
            bins: BTreeMap::new(),
            counters: Counters::default(),
            out: Outputs::default(),
            raw_travel: None,
        }
    }

    /// The newest passage applied so far.
    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// The instant a parallel pass's partitions end their on-road series at, given the
    /// newest passage of the whole input: the same as [`TrafficIndices::finish`] uses.
    pub fn end_for(&self, newest: i64) -> i64 {
        newest
            .saturating_add(1)
            .saturating_add(self.config.on_road_step_s * SECOND)
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The rows produced since the last call.
    pub fn take_outputs(&mut self) -> Outputs {
        std::mem::take(&mut self.out)
    }

    /// Applies everything buffered, closes every window, and returns all remaining rows.
    pub fn finish(mut self) -> (Outputs, Counters) {
        self.release(self.buffer.len());
        let end = self.end_for(self.clock);
        self.close_all(end);
        (self.out, self.counters)
    }

    /// Closes every window; on-road instants up to `end`.
    fn close_all(&mut self, end: i64) {
        self.emit_on_road_until(end);
        self.close_bins(i64::MAX);
        let days: Vec<i64> = self.days.keys().copied().collect();
        let now = self.clock;
        for day in days {
            self.close_day(day, now);
        }
    }

    fn local_day(&self, ts: i64) -> i64 {
        local_day(ts, &self.config.zone)
    }

    /// Closes windows the clock has passed.
    fn tick(&mut self, now: i64) {
        if now <= self.clock {
            return;
        }
        if now < self.due {
            self.clock = now;
            return;
        }
        self.emit_on_road_until(now);
        self.close_bins(now);
        let today = self.local_day(now);
        let old: Vec<i64> = self.days.range(..today).map(|(d, _)| *d).collect();
        for day in old {
            self.close_day(day, now);
        }
        self.clock = now;
        // What can close next: the next local midnight, the next on-road instant (once
        // there is a bucket), the first open bin.
        let mut due = self.config.zone.day_start(Date((today + 1) as i32)).0;
        if !self.buckets.is_empty() {
            due = due.min(self.next_on_road_instant());
        }
        if let Some(&bin) = self.bins.keys().next() {
            due = due.min(self.bin_closes_at(bin));
        }
        self.due = due;
    }

    fn apply(&mut self, r: Record) {
        self.tick(r.ts);
        let day = self.local_day(r.ts);
        let hour = self.config.zone.local_hour(Timestamp(r.ts)) as usize;
        let step = self.config.on_road_step_s * SECOND;
        let bucket = r.ts.div_euclid(step);
        let checkpoint = match self.checkpoint_index.get(&r.checkpoint) {
            Some(i) => *i,
            None => {
                // A checkpoint on no link: counted in the city's census and on-road only.
                let i = self.checkpoint_district.len() as u32;
                self.checkpoint_index.insert(r.checkpoint, i);
                self.checkpoint_district.push(0);
                i
            }
        };
        let district = self.checkpoint_district[checkpoint as usize];
        let state = self.plates.get_or_insert(r.plate, PlateState::default());
        let seen = state.last_ts != i64::MIN;
        if seen && state.last_ts == r.ts && state.last_checkpoint == checkpoint {
            self.counters.duplicates += 1;
            return;
        }
        self.counters.applied += 1;
        let (last_ts, last_checkpoint) = (state.last_ts, state.last_checkpoint);
        state.last_ts = r.ts;
        state.last_checkpoint = checkpoint;
        // The previous passage's day (None before the first), for the census below.
        let last_day = seen.then(|| local_day(last_ts, &self.config.zone));
        if last_day != Some(day) {
            state.hours_passages = 0;
        }
        let (passages_before, hours_before) = (state.passages(), state.hours());
        let bit = 1u32 << hour;
        state.hours_passages = ((passages_before + 1).min(255) << 24) | hours_before | bit;

        // Link travel: the previous passage of this plate, at the link's upstream end.
        let link = if seen {
            self.links_from.find(last_checkpoint, checkpoint)
        } else {
            None
        };
        if let Some(link) = link {
            let dt = r.ts - last_ts;
            if dt > 0 && dt <= link.max_travel {
                let bin = last_ts.div_euclid(self.config.bin_s * SECOND);
                self.due = self.due.min(self.bin_closes_at(bin));
                let seconds = (dt as f64 / SECOND as f64) as f32;
                self.bins.entry(bin).or_default().push((link.link, seconds));
            }
        }

        // On the road: move the plate from its old bucket (and district) to this one.
        let last_district = self.checkpoint_district[last_checkpoint as usize];
        let last_bucket = last_ts.div_euclid(step);
        if !seen || last_bucket != bucket || last_district != district {
            if seen && let Some(counts) = self.buckets.get_mut(&last_bucket) {
                counts[last_district as usize] -= 1;
            }
            let n = self.district_names.len();
            let first_bucket = self.buckets.is_empty();
            self.buckets.entry(bucket).or_insert_with(|| vec![0; n])[district as usize] += 1;
            if first_bucket {
                // As `next_on_road_instant`, this bucket being the first.
                let next = self.next_instant.unwrap_or((bucket + 1) * step);
                self.due = self.due.min(next);
            }
        }

        // Census: per local day, counted once corroborated.
        let census = self.days.entry(day).or_default();
        if passages_before == 0 {
            census.plates_read += 1;
        }
        let passages = passages_before + 1;
        let corroboration = self.config.corroboration.clamp(1, 255);
        if passages == corroboration {
            census.vehicles += 1;
            census.local += u64::from(r.local);
            let tally = self.corroborated.entry(bucket).or_default();
            tally.vehicles += 1;
            tally.local += u64::from(r.local);
            let hours = hours_before | bit;
            for h in 0..24 {
                if hours & (1 << h) != 0 {
                    census.hours[h] += 1;
                    census.hours_local[h] += u64::from(r.local);
                }
            }
        } else if passages > corroboration && hours_before & bit == 0 {
            census.hours[hour] += 1;
            census.hours_local[hour] += u64::from(r.local);
        }
    }
}
