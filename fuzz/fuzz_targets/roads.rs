//! Road networks from GIS files: GeoJSON roads, checkpoints and districts, and
//! OpenStreetMap extracts; what parses is imported (snapping, links, districts).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let roads = if pick % 2 == 0 {
        std::str::from_utf8(body)
            .ok()
            .and_then(|t| citybrain_roads::parse_roads(t).ok())
    } else {
        citybrain_roads::parse_osm_pbf(body).ok()
    };
    if let Some((roads, _)) = roads {
        // Checkpoints at the roads' first points, so the import has work to do.
        let checkpoints: Vec<citybrain_roads::Checkpoint> = roads
            .iter()
            .take(50)
            .enumerate()
            .map(|(i, r)| citybrain_roads::Checkpoint {
                id: i as i64,
                lon: r.points[0].0,
                lat: r.points[0].1,
            })
            .collect();
        let _ = citybrain_roads::import(
            &roads[..roads.len().min(500)],
            &checkpoints,
            &[],
            Default::default(),
        );
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = citybrain_roads::parse_checkpoints(text);
        if let Ok(districts) = citybrain_roads::parse_districts(text) {
            let _ = citybrain_roads::district_of((0.0, 0.0), &districts);
        }
    }
});
