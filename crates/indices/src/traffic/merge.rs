//! A parallel pass: plates dealt to partitions ([`partition_of`]), the lateness rule
//! applied once ahead of them ([`Admission`]), and the partitions' rows combined into those
//! of one pass ([`merge()`]).

use std::collections::BTreeMap;

use citybrain_core::{Date, Timestamp};

use super::link_travel::PerLink;
use super::{
    CensusDay, CensusHour, CensusSoFar, Counters, Link, OnRoad, Outputs, SECOND, TrafficConfig,
    TrafficIndices,
};
use crate::plate::PlateKey;

/// A closed link bin's travel times over one link, as a partition keeps them for the merge:
/// (bin number, link index, travel times in seconds).
pub(super) type RawTravel = (i64, u32, Vec<f32>);

/// One partition's result in a parallel pass, combined by [`merge`].
#[derive(Debug)]
pub struct Partial {
    out: Outputs,
    counters: Counters,
    raw_travel: Vec<RawTravel>,
}

impl TrafficIndices {
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
}

/// Combines the partitions of a parallel pass (plates split between them) into the rows one
/// pass over everything would give: counts add up per window, and each link bin's travel
/// times are pooled before its median is taken (on as many threads as there are
/// partitions, each closing a range of bins).
pub fn merge(config: TrafficConfig, links: Vec<Link>, parts: Vec<Partial>) -> (Outputs, Counters) {
    let whole = TrafficIndices::new(config, links);
    let mut days: BTreeMap<Date, CensusDay> = BTreeMap::new();
    let mut hours: BTreeMap<Timestamp, CensusHour> = BTreeMap::new();
    let mut on_road: BTreeMap<(Timestamp, usize), u64> = BTreeMap::new();
    let mut counters = Counters::default();
    let threads = parts.len().max(1);
    let mut raw = Vec::new();
    let mut so_far_parts = Vec::new();
    for mut part in parts {
        so_far_parts.push(std::mem::take(&mut part.out.census_so_far));
        for d in part.out.census_days {
            let e = days.entry(d.day).or_insert(CensusDay {
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
            let e = hours.entry(h.hour).or_insert(CensusHour {
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
    let mut ranges: Vec<Vec<RawTravel>> = Vec::new();
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
    let mut instants: BTreeMap<Timestamp, Date> = BTreeMap::new();
    for r in parts.iter().flatten() {
        instants.entry(r.at).or_insert(r.day);
    }
    let mut next = vec![0usize; parts.len()];
    instants
        .into_iter()
        .map(|(at, day)| {
            let (mut vehicles, mut local) = (0, 0);
            for (rows, next) in parts.iter().zip(&mut next) {
                while rows.get(*next).is_some_and(|r| r.at <= at) {
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
                at,
                day,
                vehicles,
                local,
                non_local: vehicles - local,
            }
        })
        .collect()
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
