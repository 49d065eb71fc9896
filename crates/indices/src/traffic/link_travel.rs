//! Link travel times: traversals of a link between consecutive passages of a plate, binned
//! by when they entered it, and each closed bin's median, quartiles and delay index (per
//! link, then traversal-weighted per district and for the city).

use citybrain_core::Timestamp;
use serde::Serialize;

use super::{SECOND, TrafficIndices};

/// Travel times over one link for vehicles entering it in one bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkTravel {
    #[serde(with = "citybrain_core::time::as_text")]
    pub bin: Timestamp,
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
    #[serde(with = "citybrain_core::time::as_text")]
    pub bin: Timestamp,
    pub district: String,
    pub delay_index: f64,
    pub traversals: u64,
}

/// A link leaving a checkpoint, with what a traversal of it is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outgoing {
    /// The index of the checkpoint it leads to.
    pub(super) to: u32,
    pub(super) link: u32,
    /// The longest traversal accepted (free flow × the delay factor), in µs.
    pub(super) max_travel: i64,
}

/// The links leaving each checkpoint, all in one array: checkpoint `c`'s are
/// `out[start[c]..start[c + 1]]`. A traversal reads a few adjacent entries (a handful per
/// checkpoint, so a scan beats hashing the pair) and nothing else: no per-checkpoint
/// allocation or link row to fetch from memory the city's plates keep evicting.
#[derive(Debug)]
pub(super) struct Adjacency {
    start: Vec<u32>,
    out: Vec<Outgoing>,
}

impl Adjacency {
    /// From (checkpoint index, link leaving it) sorted by checkpoint, for `checkpoints`.
    pub(super) fn new(checkpoints: usize, sorted: Vec<(u32, Outgoing)>) -> Self {
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
    pub(super) fn find(&self, from: u32, to: u32) -> Option<Outgoing> {
        let from = from as usize;
        if from + 1 >= self.start.len() {
            return None; // a checkpoint no link leaves or enters
        }
        let (a, b) = (self.start[from] as usize, self.start[from + 1] as usize);
        self.out[a..b].iter().find(|o| o.to == to).copied()
    }
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

/// A link bin's travel times per link: (link index, times), in link order.
pub(super) type PerLink = Vec<(u32, Vec<f32>)>;

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

impl TrafficIndices {
    /// When a link bin closes: no traversal that started in it can still arrive.
    pub(super) fn bin_closes_at(&self, bin: i64) -> i64 {
        (bin + 1) * self.config.bin_s * SECOND + self.max_travel
    }

    /// Closes bins whose vehicles can no longer arrive at the far end.
    pub(super) fn close_bins(&mut self, now: i64) {
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
    pub(super) fn close_bin(&mut self, bin: i64, links: PerLink) {
        let bin_len = self.config.bin_s * SECOND;
        if let Some(raw) = &mut self.raw_travel {
            raw.extend(links.into_iter().map(|(link, times)| (bin, link, times)));
            return;
        }
        let start = Timestamp(bin * bin_len);
        let mut rows: Vec<(usize, LinkTravel)> = links
            .into_iter()
            .map(|(link, mut times)| {
                let l = &self.links[link as usize];
                let (median, p25, p75) = quantiles(&mut times);
                let n = times.len() as u64;
                let di = median / l.freeflow_s;
                let d = self.link_district[link as usize] as usize;
                let row = LinkTravel {
                    bin: start,
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
                    bin: start,
                    district: self.district_names[d].clone(),
                    delay_index: sum / n as f64,
                    traversals: n,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quantiles;

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
