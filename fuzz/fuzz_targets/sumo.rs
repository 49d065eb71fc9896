//! SUMO networks (`.net.xml`) and route files (`.rou.xml`: trips, flows, routes), as the
//! signals scene and `signals compare` read them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = citybrain_sumo::net::parse(text);
        let _ = citybrain_sumo::routes::demand(text);
        let _ = citybrain_sumo::routes::read_trips(text);
        let _ = citybrain_sumo::routes::count_vehicles(text);
    }
});
