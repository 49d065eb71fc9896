//! Live city indices, computed incrementally from the hub's streams. No I/O: records go in,
//! rows come out; the CLI and the server move the bytes.
//!
//! Traffic (`traffic`): the vehicle census, vehicles on the road (在途量), link travel times,
//! the delay index (延误指数) and congestion rankings, all from ANPR passages in one pass.

pub mod plate;
pub mod traffic;

pub use traffic::{
    CensusDay, CensusHour, Counters, DelayIndex, Link, LinkTravel, OnRoad, Outputs, Passage,
    RankEntry, TrafficConfig, TrafficIndices, rank,
};
