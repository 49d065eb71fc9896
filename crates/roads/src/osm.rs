//! OpenStreetMap extracts (`.osm.pbf`, as Geofabrik and BBBike serve them, or `osmium
//! extract` cuts): ways tagged `highway` for cars become roads, with their `maxspeed`,
//! `oneway` and `lanes` tags read as GeoJSON properties are (`geojson::road_of`).
//! Decoded with the `osmpbf` crate from bytes in memory; two passes, ways then the nodes
//! they use, so only those nodes' coordinates are kept.

use std::collections::{HashMap, HashSet};

use osmpbf::{Element, ElementReader};
use serde_json::{Map, Value};

use crate::Road;
use crate::geojson::road_of;

fn reader(bytes: &[u8]) -> ElementReader<std::io::Cursor<&[u8]>> {
    ElementReader::new(std::io::Cursor::new(bytes))
}

/// Roads from an `.osm.pbf`, and how many ways were skipped (not for cars, or with nodes
/// missing from the extract).
pub fn parse_osm_pbf(bytes: &[u8]) -> Result<(Vec<Road>, usize), String> {
    let bad = |e: osmpbf::Error| format!("not a readable OpenStreetMap PBF file: {e}");
    // Pass 1: ways for cars, their tags and node ids.
    let mut ways: Vec<(Road, Vec<i64>)> = Vec::new();
    let mut skipped = 0usize;
    reader(bytes)
        .for_each(|element| {
            if let Element::Way(way) = element {
                let tags: Map<String, Value> = way
                    .tags()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                if !tags.contains_key("highway") {
                    return;
                }
                match road_of(&Value::Object(tags)) {
                    Some(road) => ways.push((road, way.refs().collect())),
                    None => skipped += 1,
                }
            }
        })
        .map_err(bad)?;
    // Pass 2: the coordinates of the nodes those ways use.
    let wanted: HashSet<i64> = ways
        .iter()
        .flat_map(|(_, refs)| refs.iter().copied())
        .collect();
    let mut at: HashMap<i64, (f64, f64)> = HashMap::with_capacity(wanted.len());
    reader(bytes)
        .for_each(|element| {
            let (id, lon, lat) = match element {
                Element::Node(n) => (n.id(), n.lon(), n.lat()),
                Element::DenseNode(n) => (n.id(), n.lon(), n.lat()),
                _ => return,
            };
            if wanted.contains(&id) {
                at.insert(id, (lon, lat));
            }
        })
        .map_err(bad)?;
    let mut roads = Vec::with_capacity(ways.len());
    for (template, refs) in ways {
        let points: Option<Vec<(f64, f64)>> = refs.iter().map(|r| at.get(r).copied()).collect();
        match points {
            Some(points) if points.len() >= 2 => roads.push(Road { points, ..template }),
            // A way cut at the extract's edge references nodes it does not hold.
            _ => skipped += 1,
        }
    }
    Ok((roads, skipped))
}
