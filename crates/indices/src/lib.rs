//! Live city indices, computed incrementally from the hub's streams. No I/O: records go in,
//! rows come out; the CLI and the server move the bytes.
//!
//! Traffic (`traffic`): the vehicle census, vehicles on the road (在途量), link travel times,
//! the delay index (延误指数) and congestion rankings, all from ANPR passages in one pass.

pub mod plate;
pub mod split;
pub mod traffic;

pub use split::SplitPass;

pub use traffic::{
    Admission, CITY, CensusDay, CensusHour, CensusSoFar, Counters, DelayIndex, Link, LinkTravel,
    Live, LocalPrefix, OnRoad, Outputs, Partial, Passage, RankEntry, Record, TrafficConfig,
    TrafficIndices, for_each_passage, links_from_batch, merge, partition_of, partition_of_key,
    rank,
};

/// The index datasets' definitions (file name, TOML), as `citybrain-hub` reads them.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "indices.census_daily.toml",
        include_str!("../definitions/indices.census_daily.toml"),
    ),
    (
        "indices.census_hourly.toml",
        include_str!("../definitions/indices.census_hourly.toml"),
    ),
    (
        "indices.census_so_far.toml",
        include_str!("../definitions/indices.census_so_far.toml"),
    ),
    (
        "indices.on_road.toml",
        include_str!("../definitions/indices.on_road.toml"),
    ),
    (
        "indices.link_travel.toml",
        include_str!("../definitions/indices.link_travel.toml"),
    ),
    (
        "indices.delay.toml",
        include_str!("../definitions/indices.delay.toml"),
    ),
    (
        "indices.ranking.toml",
        include_str!("../definitions/indices.ranking.toml"),
    ),
];

/// Rows as NDJSON, the form every ingest path accepts.
pub fn to_ndjson<T: serde::Serialize>(rows: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut out, row).expect("rows serialize");
        out.push(b'\n');
    }
    out
}
