//! The traffic indices, computed incrementally from ANPR passages in one pass.
//!
//! Records go through a reorder buffer that holds them for the allowed lateness, so the
//! operators below see them in time order without the whole day ever being sorted. Every
//! operator keeps state per key (plate, link, 15-minute bin, 5-minute bucket) and emits a
//! window's rows as soon as the stream's time has passed it. One hash lookup per passage
//! serves the census, vehicles on the road and link travel times.

use std::collections::{BTreeMap, VecDeque};

use citybrain_core::Timestamp;
use serde::Serialize;

use crate::plate::{FastMap, PlateKey, PlateTable};

const SECOND: i64 = 1_000_000;

/// Records released to the operators together (see `release`).
const RELEASE_GROUP: usize = 64;

/// The `district` of rows about the whole city.
pub const CITY: &str = "city";

/// A road link between two adjacent checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub link_id: i64,
    pub from: i64,
    pub to: i64,
    pub length_m: f64,
    pub freeflow_s: f64,
    pub district: String,
}

/// Reads a link table from an Arrow batch (columns by name, as in `transport.links`).
pub fn links_from_batch(batch: &arrow::array::RecordBatch) -> Result<Vec<Link>, String> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Float64Type, Int64Type};
    let column = |name: &str, t: &DataType| {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| format!("the link table has no {name} column"))?;
        arrow::compute::cast(c, t).map_err(|e| format!("{name}: {e}"))
    };
    let ids = column("link_id", &DataType::Int64)?;
    let from = column("from_checkpoint", &DataType::Int64)?;
    let to = column("to_checkpoint", &DataType::Int64)?;
    let length = column("length_m", &DataType::Float64)?;
    let freeflow = column("freeflow_s", &DataType::Float64)?;
    let district = column("district", &DataType::Utf8)?;
    let (ids, from, to) = (
        ids.as_primitive::<Int64Type>(),
        from.as_primitive::<Int64Type>(),
        to.as_primitive::<Int64Type>(),
    );
    let (length, freeflow) = (
        length.as_primitive::<Float64Type>(),
        freeflow.as_primitive::<Float64Type>(),
    );
    let district = district.as_string::<i32>();
    Ok((0..batch.num_rows())
        .map(|i| Link {
            link_id: ids.value(i),
            from: from.value(i),
            to: to.value(i),
            length_m: length.value(i),
            freeflow_s: freeflow.value(i),
            district: district.value(i).to_string(),
        })
        .collect())
}

/// One camera read.
#[derive(Debug, Clone, Copy)]
pub struct Passage<'a> {
    /// Microseconds since the epoch, UTC.
    pub ts: i64,
    pub checkpoint: i64,
    pub plate: &'a str,
}

/// How the indices are computed. The defaults are the documented definitions.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// Plates starting with this are local (`浙A`: Hangzhou).
    pub local_prefix: String,
    /// The city's offset from UTC, for local days and hours.
    pub utc_offset_s: i64,
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
            local_prefix: "浙A".into(),
            utc_offset_s: 8 * 3600,
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

/// Distinct vehicles in one local day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CensusDay {
    /// Local date, `YYYY-MM-DD`.
    pub day: String,
    /// Corroborated plates: seen in at least `corroboration` passages.
    pub vehicles: u64,
    pub local: u64,
    pub non_local: u64,
    /// Every distinct plate read, misreads included (the naive count).
    pub plates_read: u64,
}

/// Distinct corroborated vehicles seen in one hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CensusHour {
    pub hour: String,
    pub vehicles: u64,
    pub local: u64,
    pub non_local: u64,
}

/// The census of a day so far: vehicles corroborated in the local day `day` before the
/// instant `at` (every on-road instant, city-wide). What "vehicles in the city today" read at
/// `at`; the day's row in `census_daily` is the last word once the day closes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CensusSoFar {
    pub at: String,
    /// The local date of `at`, `YYYY-MM-DD`.
    pub day: String,
    pub vehicles: u64,
    pub local: u64,
    pub non_local: u64,
}

/// Corroborated vehicles, and how many of them local.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    vehicles: u64,
    local: u64,
}

/// Vehicles on the road at an instant, city-wide (`district` = `city`) or per district.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnRoad {
    pub at: String,
    pub district: String,
    pub vehicles: u64,
}

/// Travel times over one link for vehicles entering it in one bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkTravel {
    pub bin: String,
    pub link_id: i64,
    pub from_checkpoint: i64,
    pub to_checkpoint: i64,
    pub district: String,
    pub traversals: u64,
    pub median_s: f64,
    pub p25_s: f64,
    pub p75_s: f64,
    pub freeflow_s: f64,
    /// median / free-flow.
    pub delay_index: f64,
}

/// The traversal-weighted mean delay index of the city (`district` = `city`) or a district.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DelayIndex {
    pub bin: String,
    pub district: String,
    pub delay_index: f64,
    pub traversals: u64,
}

/// One place in a congestion ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankEntry {
    pub from: String,
    pub to: String,
    /// `link` or `district`.
    pub kind: String,
    pub rank: u32,
    /// The link id, or the district name.
    pub id: String,
    pub delay_index: f64,
    pub traversals: u64,
}

/// The state of the stream right now, before windows close: for live displays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Live {
    /// The newest record's time (the stream's "now").
    pub at: String,
    /// Vehicles with a passage in the on-road window before `at` (provisional: records within
    /// the lateness may still arrive).
    pub on_road: u64,
    /// Corroborated vehicles so far in the current local day.
    pub vehicles_today: u64,
    pub counters: Counters,
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

/// A passage as the operators keep it: the plate packed into a fixed-size key and whether it
/// is local, worked out once (a parallel pass does it while routing).
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Microseconds since the epoch, UTC.
    pub ts: i64,
    pub checkpoint: i64,
    pub plate: PlateKey,
    pub local: bool,
}

impl Record {
    pub fn new(passage: Passage<'_>, local: &LocalPrefix) -> Self {
        let plate = PlateKey::new(passage.plate);
        Self {
            ts: passage.ts,
            checkpoint: passage.checkpoint,
            plate,
            local: local.is_local(passage.plate, plate),
        }
    }
}

/// Tells local plates (`TrafficConfig::local_prefix`) by their packed key: the prefix's
/// bytes under a mask, an AND and a compare per passage instead of a string comparison.
#[derive(Debug, Clone)]
pub struct LocalPrefix {
    prefix: String,
    bits: u128,
    mask: u128,
}

impl LocalPrefix {
    pub fn new(prefix: &str) -> Self {
        let len = prefix.len().min(15);
        let mask = (1u128 << (8 * len)) - 1;
        Self {
            prefix: prefix.to_string(),
            bits: PlateKey::new(prefix).0 & mask,
            mask,
        }
    }

    /// Whether `plate` (packed as `key`) starts with the prefix.
    #[inline]
    pub fn is_local(&self, plate: &str, key: PlateKey) -> bool {
        if plate.len() <= 15 && self.prefix.len() <= 15 {
            // Packed plates keep their bytes verbatim; longer ones are hashed.
            plate.len() >= self.prefix.len() && key.0 & self.mask == self.bits
        } else {
            plate.starts_with(&self.prefix)
        }
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

#[derive(Debug, Default)]
struct DayCensus {
    vehicles: u64,
    local: u64,
    plates_read: u64,
    hours: [u64; 24],
    hours_local: [u64; 24],
}

/// A link leaving a checkpoint, with what a traversal of it is checked against.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    /// The index of the checkpoint it leads to.
    to: u32,
    link: u32,
    /// The longest traversal accepted (free flow × the delay factor), in µs.
    max_travel: i64,
}

/// The links leaving each checkpoint, all in one array: checkpoint `c`'s are
/// `out[start[c]..start[c + 1]]`. A traversal reads a few adjacent entries (a handful per
/// checkpoint, so a scan beats hashing the pair) and nothing else: no per-checkpoint
/// allocation or link row to fetch from memory the city's plates keep evicting.
#[derive(Debug)]
struct Adjacency {
    start: Vec<u32>,
    out: Vec<Outgoing>,
}

impl Adjacency {
    /// From (checkpoint index, link leaving it) sorted by checkpoint, for `checkpoints`.
    fn new(checkpoints: usize, sorted: Vec<(u32, Outgoing)>) -> Self {
        let mut start = vec![0u32; checkpoints + 1];
        for (from, _) in &sorted {
            start[*from as usize + 1] += 1;
        }
        for c in 0..checkpoints {
            start[c + 1] += start[c];
        }
        let out = sorted.into_iter().map(|(_, o)| o).collect();
        Self { start, out }
    }

    /// The link from checkpoint `from` to `to`, if there is one.
    #[inline]
    fn find(&self, from: u32, to: u32) -> Option<Outgoing> {
        let from = from as usize;
        if from + 1 >= self.start.len() {
            return None; // a checkpoint no link leaves or enters
        }
        let (a, b) = (self.start[from] as usize, self.start[from + 1] as usize);
        self.out[a..b].iter().find(|o| o.to == to).copied()
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
    /// medians of partitions do not combine (see [`merge`]).
    raw_travel: Option<Vec<(i64, u32, Vec<f32>)>>,
}

/// One partition's result in a parallel pass, combined by [`merge`].
#[derive(Debug)]
pub struct Partial {
    out: Outputs,
    counters: Counters,
    raw_travel: Vec<(i64, u32, Vec<f32>)>,
}

/// The local day (days since the epoch) of a time in µs.
fn local_day(ts: i64, utc_offset_s: i64) -> i64 {
    (ts / SECOND + utc_offset_s).div_euclid(86_400)
}

fn rfc3339(micros: i64) -> String {
    Timestamp(micros).to_string()
}

/// The median and quartiles of unsorted values (interpolated, as the truth is written), by
/// selection rather than a sort: a bin holds tens to thousands of travel times and only five
/// of their order statistics matter. Leaves `values` partly reordered.
fn quantiles(values: &mut [f32]) -> (f64, f64, f64) {
    let last = values.len() - 1;
    if last < 2 {
        // One or two values: the lower quartile's upper neighbour would lie past the median.
        values.sort_unstable_by(f32::total_cmp);
        let at = |q: f64| {
            let pos = q * last as f64;
            let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
            let hi = (lo + 1).min(last);
            f64::from(values[lo]) * (1.0 - frac) + f64::from(values[hi]) * frac
        };
        return (at(0.5), at(0.25), at(0.75));
    }
    // The order statistic at a position's floor, and the one after it when needed: after
    // `select_nth_unstable_by` puts rank `lo` in place, rank `lo + 1` is the least of what
    // follows it.
    let interpolate = |values: &mut [f32], offset: usize, q: f64| {
        let pos = q * last as f64;
        let lo = pos.floor() as usize;
        let frac = pos - lo as f64;
        let (_, at, above) = values.select_nth_unstable_by(lo - offset, f32::total_cmp);
        let low = f64::from(*at);
        if frac == 0.0 {
            return low;
        }
        let high = above
            .iter()
            .copied()
            .min_by(f32::total_cmp)
            .map_or(low, f64::from);
        low * (1.0 - frac) + high * frac
    };
    let median = interpolate(values, 0, 0.5);
    // The median's rank splits the values: with three or more, the lower quartile's two
    // ranks lie at or below it, the upper quartile's at or above it.
    let mid = (0.5 * last as f64).floor() as usize;
    let p25 = interpolate(&mut values[..=mid], 0, 0.25);
    let p75 = interpolate(&mut values[mid..], mid, 0.75);
    (median, p25, p75)
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
            local: LocalPrefix::new(&config.local_prefix),
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

    /// A partition of a parallel pass: feed it the passages of a subset of plates (every
    /// passage of those plates), then [`TrafficIndices::finish_partial`] and [`merge`].
    pub fn partition(config: TrafficConfig, links: Vec<Link>) -> Self {
        let mut indices = Self::new(config, links);
        indices.raw_travel = Some(Vec::new());
        indices
    }

    /// Ends a partition: applies everything, closes every window, emits on-road instants up
    /// to `end` (the same for every partition), and hands over the rows and raw bins.
    pub fn finish_partial(mut self, end: i64) -> Partial {
        self.release(self.buffer.len());
        self.close_all(end);
        Partial {
            out: self.out,
            counters: self.counters,
            raw_travel: self.raw_travel.unwrap_or_default(),
        }
    }

    /// The instant a parallel pass's partitions end their on-road series at, given the
    /// newest passage of the whole input: the same as [`TrafficIndices::finish`] uses.
    /// The newest passage applied so far.
    pub fn clock(&self) -> i64 {
        self.clock
    }

    pub fn end_for(&self, newest: i64) -> i64 {
        newest
            .saturating_add(1)
            .saturating_add(self.config.on_road_step_s * SECOND)
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Accepts one passage: late beyond the lateness → counted and dropped; otherwise held
    /// until the lateness has passed, then applied in time order (in groups of 32; a batch
    /// call, `advance_to` and `finish` apply everything due).
    pub fn push(&mut self, passage: Passage<'_>) {
        let record = Record::new(passage, &self.local);
        self.push_record(record);
    }

    /// As [`TrafficIndices::push`], for a passage already made a [`Record`].
    pub fn push_record(&mut self, record: Record) {
        let lateness = self.config.lateness_s * SECOND;
        if self.newest != i64::MIN && record.ts < self.newest - lateness || record.ts < self.clock {
            self.counters.late_dropped += 1;
            return;
        }
        match self.buffer.back() {
            Some(last) if last.ts > record.ts => {
                self.counters.reordered += 1;
                let at = self.buffer.partition_point(|r| r.ts <= record.ts);
                self.buffer.insert(at, record);
            }
            _ => self.buffer.push_back(record),
        }
        self.newest = self.newest.max(record.ts);
        let watermark = self.newest - lateness;
        // Release in groups, so the group's plate lookups can be started together.
        if self
            .buffer
            .get(RELEASE_GROUP - 1)
            .is_some_and(|r| r.ts <= watermark)
        {
            let ready = self.ready(watermark);
            self.release(ready);
        }
    }

    /// How many buffered records are due at `watermark`. A scan from the front, not a binary
    /// search: the records it passes are applied next, so it touches memory about to be used
    /// (a binary search over a lateness-worth of records missed the cache at every step).
    fn ready(&self, watermark: i64) -> usize {
        self.buffer.iter().take_while(|r| r.ts <= watermark).count()
    }

    /// Applies the first `n` buffered records. The plate table (millions of entries) misses
    /// the CPU cache on almost every lookup; touching a group's entries a group ahead lets
    /// those memory loads overlap each other and the work on the group before.
    fn release(&mut self, n: usize) {
        let touch = |this: &Self, range: std::ops::Range<usize>| {
            for r in this.buffer.range(range) {
                this.plates.touch(r.plate);
            }
        };
        touch(self, 0..RELEASE_GROUP.min(n));
        let mut left = n;
        while left > 0 {
            let now = RELEASE_GROUP.min(left);
            touch(self, now..(2 * RELEASE_GROUP).min(left));
            for _ in 0..now {
                let record = self.buffer.pop_front().expect("n records are buffered");
                self.apply(record);
            }
            left -= now;
        }
    }

    /// Moves the stream's clock to `now` (µs) without a record, closing what ends before it.
    /// Live use calls this on a timer so quiet minutes still produce rows.
    pub fn advance_to(&mut self, now: i64) {
        let watermark = now - self.config.lateness_s * SECOND;
        let ready = self.ready(watermark);
        self.release(ready);
        self.tick(watermark);
    }

    /// Feeds an Arrow batch of passages (columns `ts`, `checkpoint_id`, `plate`, by name).
    pub fn push_batch(&mut self, batch: &arrow::array::RecordBatch) -> Result<(), String> {
        for_each_passage(batch, |p| self.push(p))?;
        self.release_due();
        Ok(())
    }

    /// Pushes records in turn, then applies whatever the lateness allows. A run of records
    /// in time order from the newest seen on (a recorded day, most live batches) joins the
    /// buffer in one copy: none of them can be late or need reordering.
    pub fn push_records(&mut self, records: &[Record]) {
        let mut rest = records;
        while let Some(first) = rest.first() {
            let mut newest = self.newest.max(self.clock);
            let run = rest
                .iter()
                .take_while(|r| {
                    let in_order = r.ts >= newest;
                    newest = r.ts;
                    in_order
                })
                .count();
            if run == 0 {
                self.push_record(*first);
                rest = &rest[1..];
                continue;
            }
            self.buffer.extend(&rest[..run]);
            self.newest = rest[run - 1].ts;
            rest = &rest[run..];
        }
        self.release_due();
    }

    /// Applies every buffered record the lateness allows, however few: what a batch call
    /// does before it returns.
    fn release_due(&mut self) {
        let watermark = self.newest - self.config.lateness_s * SECOND;
        let ready = self.ready(watermark);
        self.release(ready);
    }

    /// The live view: vehicles on the road and today's census so far, provisional: records
    /// still held for the lateness are counted as if applied, so an ingested record shows at
    /// once rather than a lateness later.
    pub fn live(&self) -> Live {
        let step = self.config.on_road_step_s * SECOND;
        let now = self.newest.max(0);
        let from = (now - self.config.on_road_window_s * SECOND).div_euclid(step);
        let mut on_road: i64 = self
            .buckets
            .range(from..)
            .map(|(_, counts)| counts.iter().sum::<i64>())
            .sum();
        let today = self.local_day(now);
        let corroboration = self.config.corroboration.clamp(1, 255);
        let mut vehicles = self.days.get(&today).map_or(0, |d| d.vehicles);
        // Held records: (passages, whether one falls in the on-road window) per plate.
        let mut held: FastMap<PlateKey, (u32, bool)> = FastMap::default();
        for r in &self.buffer {
            let e = held.entry(r.plate).or_default();
            e.0 += 1;
            e.1 |= r.ts >= from * step;
        }
        for (plate, (n, in_window)) in held {
            let (counted, passages) = match self.plates.get(plate) {
                Some(s) if s.last_ts != i64::MIN => (
                    s.last_ts.div_euclid(step) >= from,
                    if self.local_day(s.last_ts) == today {
                        s.passages()
                    } else {
                        0
                    },
                ),
                _ => (false, 0),
            };
            on_road += i64::from(in_window && !counted);
            if passages < corroboration && passages + n >= corroboration {
                vehicles += 1;
            }
        }
        Live {
            at: rfc3339(now),
            on_road: on_road.max(0) as u64,
            vehicles_today: vehicles,
            counters: self.counters,
        }
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
        local_day(ts, self.config.utc_offset_s)
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
        let mut due = ((today + 1) * 86_400 - self.config.utc_offset_s) * SECOND;
        if !self.buckets.is_empty() {
            due = due.min(self.next_on_road_instant());
        }
        if let Some(&bin) = self.bins.keys().next() {
            due = due.min(self.bin_closes_at(bin));
        }
        self.due = due;
    }

    /// When `emit_on_road_until` next has an instant to emit (there being a bucket).
    fn next_on_road_instant(&self) -> i64 {
        let step = self.config.on_road_step_s * SECOND;
        self.next_instant.unwrap_or_else(|| {
            let first = self
                .buckets
                .keys()
                .next()
                .copied()
                .unwrap_or(i64::MAX / step - 1);
            (first + 1) * step
        })
    }

    /// When a link bin closes: no traversal that started in it can still arrive.
    fn bin_closes_at(&self, bin: i64) -> i64 {
        (bin + 1) * self.config.bin_s * SECOND + self.max_travel
    }

    fn apply(&mut self, r: Record) {
        self.tick(r.ts);
        let day = self.local_day(r.ts);
        let hour =
            ((r.ts / SECOND + self.config.utc_offset_s).div_euclid(3600)).rem_euclid(24) as usize;
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
        let utc_offset = self.config.utc_offset_s;
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
        let last_day = seen.then(|| local_day(last_ts, utc_offset));
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

    /// Emits on-road rows for every instant up to and including `now`.
    fn emit_on_road_until(&mut self, now: i64) {
        let step = self.config.on_road_step_s * SECOND;
        let window = self.config.on_road_window_s * SECOND;
        let Some(first) = self.buckets.keys().next().copied() else {
            return;
        };
        let mut t = self.next_instant.unwrap_or_else(|| (first + 1) * step);
        while t <= now {
            let from = (t - window).div_euclid(step);
            let to = t.div_euclid(step); // exclusive
            let mut per_district = vec![0i64; self.district_names.len()];
            for (_, counts) in self.buckets.range(from..to) {
                for (d, n) in counts.iter().enumerate() {
                    per_district[d] += n;
                }
            }
            let at = rfc3339(t);
            self.out.on_road.push(OnRoad {
                at: at.clone(),
                district: CITY.to_string(),
                vehicles: per_district.iter().sum::<i64>().max(0) as u64,
            });
            for (d, name) in self.district_names.iter().enumerate().skip(1) {
                self.out.on_road.push(OnRoad {
                    at: at.clone(),
                    district: name.clone(),
                    vehicles: per_district[d].max(0) as u64,
                });
            }
            self.emit_census_so_far(t);
            // Buckets before the next window can go.
            let keep_from = (t + step - window).div_euclid(step);
            self.buckets = self.buckets.split_off(&keep_from);
            t += step;
        }
        self.next_instant = Some(t);
    }

    /// The census so far at instant `t`: folds the corroborations of passages before `t`.
    fn emit_census_so_far(&mut self, t: i64) {
        let step = self.config.on_road_step_s * SECOND;
        let rest = self.corroborated.split_off(&t.div_euclid(step));
        for (bucket, tally) in std::mem::replace(&mut self.corroborated, rest) {
            let day = self.local_day(bucket * step);
            if day != self.so_far.0 {
                self.so_far = (day, Tally::default());
            }
            self.so_far.1.vehicles += tally.vehicles;
            self.so_far.1.local += tally.local;
        }
        let day = self.local_day(t);
        let Tally { vehicles, local } = if day == self.so_far.0 {
            self.so_far.1
        } else {
            Tally::default()
        };
        self.out.census_so_far.push(CensusSoFar {
            at: rfc3339(t),
            day: citybrain_core::Date(day as i32).to_string(),
            vehicles,
            local,
            non_local: vehicles - local,
        });
    }

    /// Closes bins whose vehicles can no longer arrive at the far end.
    fn close_bins(&mut self, now: i64) {
        while let Some(&bin) = self.bins.keys().next() {
            if now != i64::MAX && self.bin_closes_at(bin) > now {
                break;
            }
            let traversals = self.bins.remove(&bin).expect("the first bin exists");
            self.close_bin(bin, by_link(traversals, self.links.len()));
        }
    }

    /// Emits a closed bin's rows from its travel times per link (in link order, links with
    /// none left out); in a partition, keeps the times for the merge instead.
    fn close_bin(&mut self, bin: i64, links: PerLink) {
        let bin_len = self.config.bin_s * SECOND;
        if let Some(raw) = &mut self.raw_travel {
            raw.extend(links.into_iter().map(|(link, times)| (bin, link, times)));
            return;
        }
        let start = rfc3339(bin * bin_len);
        let mut rows: Vec<(usize, LinkTravel)> = links
            .into_iter()
            .map(|(link, mut times)| {
                let l = &self.links[link as usize];
                let (median, p25, p75) = quantiles(&mut times);
                let n = times.len() as u64;
                let di = median / l.freeflow_s;
                let d = self.link_district[link as usize] as usize;
                let row = LinkTravel {
                    bin: start.clone(),
                    link_id: l.link_id,
                    from_checkpoint: l.from,
                    to_checkpoint: l.to,
                    district: l.district.clone(),
                    traversals: n,
                    median_s: median,
                    p25_s: p25,
                    p75_s: p75,
                    freeflow_s: l.freeflow_s,
                    delay_index: di,
                };
                (d, row)
            })
            .collect();
        rows.sort_by_key(|r| r.1.link_id);
        // Summed in link order, so the floating-point result does not depend on the
        // order the links came in (one pass, or partitions merged).
        let mut sums = vec![(0.0f64, 0u64); self.district_names.len()];
        for (d, r) in &rows {
            let n = r.traversals;
            sums[0].0 += r.delay_index * n as f64;
            sums[0].1 += n;
            if *d != 0 {
                sums[*d].0 += r.delay_index * n as f64;
                sums[*d].1 += n;
            }
        }
        self.out.link_travel.extend(rows.into_iter().map(|r| r.1));
        for (d, (sum, n)) in sums.into_iter().enumerate() {
            if n > 0 {
                self.out.delay.push(DelayIndex {
                    bin: start.clone(),
                    district: self.district_names[d].clone(),
                    delay_index: sum / n as f64,
                    traversals: n,
                });
            }
        }
    }

    fn close_day(&mut self, day: i64, now: i64) {
        let Some(c) = self.days.remove(&day) else {
            return;
        };
        let offset = self.config.utc_offset_s * SECOND;
        let start = day * 86_400 * SECOND - offset;
        self.out.census_days.push(CensusDay {
            day: citybrain_core::Date(day as i32).to_string(),
            vehicles: c.vehicles,
            local: c.local,
            non_local: c.vehicles - c.local,
            plates_read: c.plates_read,
        });
        for h in 0..24 {
            self.out.census_hours.push(CensusHour {
                hour: rfc3339(start + h as i64 * 3600 * SECOND),
                vehicles: c.hours[h],
                local: c.hours_local[h],
                non_local: c.hours[h] - c.hours_local[h],
            });
        }
        // Forget plates whose last passage can matter to no open window (on the road, link
        // travel): that bounds memory to about a day's vehicles.
        let horizon = now - (self.config.on_road_window_s * SECOND).max(self.max_travel);
        self.plates.retain(|s| s.last_ts > horizon);
    }
}

/// Ranks links and districts by traversal-weighted delay index over `[from, to)` (RFC 3339
/// bin starts compare as text), keeping those with at least `min_traversals`.
pub fn rank(rows: &[LinkTravel], from: &str, to: &str, min_traversals: u64) -> Vec<RankEntry> {
    let mut links: BTreeMap<i64, (f64, u64)> = BTreeMap::new();
    let mut districts: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.bin.as_str() >= from && r.bin.as_str() < to)
    {
        let e = links.entry(r.link_id).or_default();
        e.0 += r.delay_index * r.traversals as f64;
        e.1 += r.traversals;
        let e = districts.entry(&r.district).or_default();
        e.0 += r.delay_index * r.traversals as f64;
        e.1 += r.traversals;
    }
    let mut out = Vec::new();
    let mut push = |kind: &str, items: Vec<(String, f64, u64)>| {
        let mut items: Vec<_> = items
            .into_iter()
            .filter(|i| i.2 >= min_traversals)
            .collect();
        items.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (i, (id, di, n)) in items.into_iter().enumerate() {
            out.push(RankEntry {
                from: from.to_string(),
                to: to.to_string(),
                kind: kind.to_string(),
                rank: i as u32 + 1,
                id,
                delay_index: di,
                traversals: n,
            });
        }
    };
    push(
        "link",
        links
            .into_iter()
            .map(|(id, (s, n))| (id.to_string(), s / n as f64, n))
            .collect(),
    );
    push(
        "district",
        districts
            .into_iter()
            .map(|(id, (s, n))| (id.to_string(), s / n as f64, n))
            .collect(),
    );
    out
}

/// A link bin's travel times per link: (link index, times), in link order.
type PerLink = Vec<(u32, Vec<f32>)>;

/// A bin's traversals grouped by link, in link order (a counting sort: two passes).
fn by_link(traversals: Vec<(u32, f32)>, links: usize) -> PerLink {
    let mut counts = vec![0u32; links];
    for (link, _) in &traversals {
        counts[*link as usize] += 1;
    }
    let mut slot = vec![usize::MAX; links];
    let mut out: PerLink = Vec::new();
    for (link, n) in counts.into_iter().enumerate() {
        if n > 0 {
            slot[link] = out.len();
            out.push((link as u32, Vec::with_capacity(n as usize)));
        }
    }
    for (link, dt) in traversals {
        out[slot[link as usize]].1.push(dt);
    }
    out
}

/// Combines the partitions of a parallel pass (plates split between them) into the rows one
/// pass over everything would give: counts add up per window, and each link bin's travel
/// times are pooled before its median is taken (on as many threads as there are
/// partitions, each closing a range of bins).
pub fn merge(config: TrafficConfig, links: Vec<Link>, parts: Vec<Partial>) -> (Outputs, Counters) {
    let whole = TrafficIndices::new(config, links);
    let mut days: BTreeMap<String, CensusDay> = BTreeMap::new();
    let mut hours: BTreeMap<String, CensusHour> = BTreeMap::new();
    let mut on_road: BTreeMap<(String, usize), u64> = BTreeMap::new();
    let mut counters = Counters::default();
    let threads = parts.len().max(1);
    let mut raw = Vec::new();
    let mut so_far_parts = Vec::new();
    for mut part in parts {
        so_far_parts.push(std::mem::take(&mut part.out.census_so_far));
        for d in part.out.census_days {
            let e = days.entry(d.day.clone()).or_insert(CensusDay {
                vehicles: 0,
                local: 0,
                non_local: 0,
                plates_read: 0,
                ..d.clone()
            });
            e.vehicles += d.vehicles;
            e.local += d.local;
            e.non_local += d.non_local;
            e.plates_read += d.plates_read;
        }
        for h in part.out.census_hours {
            let e = hours.entry(h.hour.clone()).or_insert(CensusHour {
                vehicles: 0,
                local: 0,
                non_local: 0,
                ..h.clone()
            });
            e.vehicles += h.vehicles;
            e.local += h.local;
            e.non_local += h.non_local;
        }
        for r in part.out.on_road {
            let d = whole
                .district_names
                .iter()
                .position(|n| n == &r.district)
                .unwrap_or(0);
            *on_road.entry((r.at, d)).or_default() += r.vehicles;
        }
        raw.extend(part.raw_travel);
        counters += part.counters;
    }
    // Link bins: pooled and closed in ranges of whole bins, one per partition's thread (the
    // bulk of the merge); the ranges' rows, concatenated in order, are the rows one closer
    // would give.
    raw.sort_unstable_by_key(|r| (r.0, r.1));
    let total: usize = raw.iter().map(|r| r.2.len()).sum();
    let mut ranges: Vec<Vec<(i64, u32, Vec<f32>)>> = Vec::new();
    let mut filled = 0;
    for r in raw {
        let starts_bin = ranges
            .last()
            .and_then(|g| g.last())
            .is_none_or(|last| last.0 != r.0);
        if starts_bin && filled * threads >= total * ranges.len() {
            ranges.push(Vec::new());
        }
        filled += r.2.len();
        ranges.last_mut().expect("a range is open").push(r);
    }
    let closed: Vec<Outputs> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .into_iter()
            .map(|range| {
                let (config, links) = (whole.config.clone(), whole.links.clone());
                scope.spawn(move || {
                    let mut closer = TrafficIndices::new(config, links);
                    // The range is in (bin, link) order: a bin's partitions' times for a
                    // link are pooled, and a bin closes when the next one starts.
                    let mut open: Option<(i64, PerLink)> = None;
                    for (bin, link, times) in range {
                        match &mut open {
                            Some((b, per_link)) if *b == bin => match per_link.last_mut() {
                                Some((l, pooled)) if *l == link => pooled.extend_from_slice(&times),
                                _ => per_link.push((link, times)),
                            },
                            _ => {
                                if let Some((b, per_link)) =
                                    open.replace((bin, vec![(link, times)]))
                                {
                                    closer.close_bin(b, per_link);
                                }
                            }
                        }
                    }
                    if let Some((b, per_link)) = open {
                        closer.close_bin(b, per_link);
                    }
                    closer.take_outputs()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("closing link bins panicked"))
            .collect()
    });
    let mut out = Outputs::default();
    for part in closed {
        out.link_travel.extend(part.link_travel);
        out.delay.extend(part.delay);
    }
    out.census_days = days.into_values().collect();
    out.census_hours = hours.into_values().collect();
    out.census_so_far = merge_so_far(so_far_parts);
    out.on_road = on_road
        .into_iter()
        .map(|((at, d), vehicles)| OnRoad {
            at,
            district: whole.district_names[d].clone(),
            vehicles,
        })
        .collect();
    (out, counters)
}

/// The census so far of the whole stream from its partitions' rows. A partition emits no row
/// for an instant when it had no vehicle on the road then (and so no new corroboration): its
/// count there is that of its latest row, if of the same day.
fn merge_so_far(parts: Vec<Vec<CensusSoFar>>) -> Vec<CensusSoFar> {
    let mut instants: BTreeMap<&str, &str> = BTreeMap::new();
    for r in parts.iter().flatten() {
        instants.entry(&r.at).or_insert(&r.day);
    }
    let mut next = vec![0usize; parts.len()];
    instants
        .into_iter()
        .map(|(at, day)| {
            let (mut vehicles, mut local) = (0, 0);
            for (rows, next) in parts.iter().zip(&mut next) {
                // RFC 3339 instants in UTC compare as text.
                while rows.get(*next).is_some_and(|r| r.at.as_str() <= at) {
                    *next += 1;
                }
                if let Some(r) = next.checked_sub(1).map(|i| &rows[i])
                    && r.day == day
                {
                    vehicles += r.vehicles;
                    local += r.local;
                }
            }
            CensusSoFar {
                at: at.to_string(),
                day: day.to_string(),
                vehicles,
                local,
                non_local: vehicles - local,
            }
        })
        .collect()
}

/// Calls `f` with each passage of an Arrow batch (columns `ts`, `checkpoint_id`, `plate`, by
/// name, cast as needed); rows missing one of them are skipped.
pub fn for_each_passage(
    batch: &arrow::array::RecordBatch,
    mut f: impl FnMut(Passage<'_>),
) -> Result<(), String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("the passages have no {name} column"))
    };
    let cast = |a: &arrow::array::ArrayRef, t: &DataType| {
        arrow::compute::cast(a, t).map_err(|e| e.to_string())
    };
    let ts = cast(
        column("ts")?,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )?;
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    let checkpoint = cast(column("checkpoint_id")?, &DataType::Int64)?;
    let checkpoint = checkpoint.as_primitive::<Int64Type>();
    let plate = cast(column("plate")?, &DataType::Utf8)?;
    let plate = plate.as_string::<i32>();
    for i in 0..batch.num_rows() {
        if ts.is_null(i) || checkpoint.is_null(i) || plate.is_null(i) {
            continue;
        }
        f(Passage {
            ts: ts.value(i),
            checkpoint: checkpoint.value(i),
            plate: plate.value(i),
        });
    }
    Ok(())
}

/// Which of `parts` partitions a plate belongs to in a parallel pass.
pub fn partition_of(plate: &str, parts: usize) -> usize {
    partition_of_key(PlateKey::new(plate), parts)
}

/// As [`partition_of`], for a plate already packed.
pub fn partition_of_key(plate: PlateKey, parts: usize) -> usize {
    let key = plate.0;
    let mixed = (key as u64 ^ (key >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The top 32 bits scaled to [0, parts): a multiply, where `%` would divide.
    (((mixed >> 32) * parts.max(1) as u64) >> 32) as usize
}

/// The lateness rule applied once, ahead of the partitions of a parallel pass: lateness is
/// relative to the newest record of the whole stream, which no single partition sees.
#[derive(Debug, Clone)]
pub struct Admission {
    newest: i64,
    lateness: i64,
    /// Records refused as later than the lateness allows.
    pub late_dropped: u64,
}

impl Admission {
    pub fn new(config: &TrafficConfig) -> Self {
        Self {
            newest: i64::MIN,
            lateness: config.lateness_s * SECOND,
            late_dropped: 0,
        }
    }

    /// Whether a record at `ts` may go on to its partition.
    pub fn admit(&mut self, ts: i64) -> bool {
        if self.newest != i64::MIN && ts < self.newest - self.lateness {
            self.late_dropped += 1;
            return false;
        }
        self.newest = self.newest.max(ts);
        true
    }

    pub fn newest(&self) -> i64 {
        self.newest
    }
}

#[cfg(test)]
mod tests {
    use super::{LocalPrefix, PlateKey, quantiles};

    #[test]
    fn local_plates_are_told_by_their_packed_prefix() {
        let local = LocalPrefix::new("浙A");
        let is_local = |plate: &str| local.is_local(plate, PlateKey::new(plate));
        assert!(is_local("浙A12345"));
        assert!(is_local("浙AD12345"));
        assert!(is_local("浙A"));
        assert!(!is_local("浙B12345"));
        assert!(!is_local("沪A12345"));
        assert!(!is_local("浙"));
        assert!(!is_local(""));
        assert!(is_local("浙A and far more than fifteen bytes"));
        assert!(!is_local("沪A and far more than fifteen bytes"));
        let everyone = LocalPrefix::new("");
        assert!(everyone.is_local("沪A12345", PlateKey::new("沪A12345")));
        let long = LocalPrefix::new("a prefix of over fifteen bytes");
        let plate = "a prefix of over fifteen bytes 1";
        assert!(long.is_local(plate, PlateKey::new(plate)));
        assert!(!long.is_local("a prefix", PlateKey::new("a prefix")));
    }

    /// The order statistics as a full sort gives them.
    fn by_sorting(values: &[f32]) -> (f64, f64, f64) {
        let mut v = values.to_vec();
        v.sort_unstable_by(f32::total_cmp);
        let at = |q: f64| {
            let pos = q * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let frac = pos - lo as f64;
            f64::from(v[lo]) * (1.0 - frac) + f64::from(v[hi]) * frac
        };
        (at(0.5), at(0.25), at(0.75))
    }

    #[test]
    fn quantiles_by_selection_equal_those_of_a_sort() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for n in 1..300 {
            for repeats in [1_u64, 3, 1000] {
                let values: Vec<f32> = (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // About n, n / 3 and one distinct value: ties at the ranks that matter.
                        (x % (n as u64).div_ceil(repeats)) as f32 * 0.37
                    })
                    .collect();
                let mut shuffled = values.clone();
                assert_eq!(
                    quantiles(&mut shuffled),
                    by_sorting(&values),
                    "{n} values: {values:?}"
                );
            }
        }
    }
}
