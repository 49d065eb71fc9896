//! A day of alarms on a street lattice: dispatching to the nearest available worker by road
//! against the grid's own worker, on the same alarms, positions and answers.

use citybrain_core::{Date, GeoPoint, TimeZone};
use citybrain_services::alarms::{self, Policy};
use citybrain_services::demo::{self, DemoConfig};
use citybrain_services::dispatch::Roads;

/// A 16 × 16 lattice of two-way streets 150 m apart around (120.16, 30.27).
fn lattice() -> (Roads, GeoPoint) {
    let centre = GeoPoint {
        lon: 120.16,
        lat: 30.27,
    };
    let m_lon = 111_320.0 * centre.lat.to_radians().cos();
    let mut nodes = Vec::new();
    for y in 0..16 {
        for x in 0..16 {
            nodes.push(GeoPoint {
                lon: centre.lon + (f64::from(x) - 7.5) * 150.0 / m_lon,
                lat: centre.lat + (f64::from(y) - 7.5) * 150.0 / 111_320.0,
            });
        }
    }
    let mut links = Vec::new();
    for i in 0..256u32 {
        if i % 16 < 15 {
            links.push((i, i + 1, 150.0));
            links.push((i + 1, i, 150.0));
        }
        if i < 240 {
            links.push((i, i + 16, 150.0));
            links.push((i + 16, i, 150.0));
        }
    }
    (Roads::new(nodes, &links), centre)
}

#[test]
fn the_nearest_worker_reaches_more_alarms_within_three_minutes_than_the_grids_own() {
    let (roads, centre) = lattice();
    let config = DemoConfig {
        seed: 5,
        residents: 10_000,
        first_day: Date::parse("2026-11-01").unwrap(),
        days: 0,
        zone: TimeZone::parse("Asia/Shanghai").unwrap(),
        centre,
        radius_m: 1_100.0,
    };
    let people = demo::generate(&config);
    let homes: Vec<GeoPoint> = people
        .first_load
        .iter()
        .filter_map(|u| match u {
            citybrain_services::Update::Resident(r) => r.home,
            _ => None,
        })
        .collect();
    let day = alarms::generate(
        9,
        &people.grids,
        &homes,
        config.first_day,
        &config.zone,
        config.grid_radius_m(),
        300,
    );
    let nearest = alarms::simulate(&roads, &people.grids, &day, Policy::Nearest, 9);
    let own = alarms::simulate(&roads, &people.grids, &day, Policy::OwnGrid, 9);
    println!("nearest: {nearest:?}\nown grid: {own:?}");
    assert_eq!(nearest.alarms, 300);
    assert!(own.within_3_min > 0 && own.within_3_min <= own.reached);
    assert!(nearest.within_3_min > own.within_3_min);
    assert!(nearest.reached >= own.reached);
}
