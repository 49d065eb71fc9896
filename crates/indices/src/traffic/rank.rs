//! Congestion rankings: links and districts by traversal-weighted delay index over a range
//! of link-travel bins.

use std::collections::BTreeMap;

use serde::Serialize;

use super::LinkTravel;

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

/// Ranks links and districts by traversal-weighted delay index over `[from, to)` (RFC 3339
/// bin starts compare as text), keeping those with at least `min_traversals`.
pub fn rank(rows: &[LinkTravel], from: &str, to: &str, min_traversals: u64) -> Vec<RankEntry> {
    let mut links: BTreeMap<i64, (f64, u64)> = BTreeMap::new();
    let mut districts: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| {
        let bin = r.bin.to_string();
        bin.as_str() >= from && bin.as_str() < to
    }) {
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
