//! FIWARE ParkingSpot / OffStreetParking messages from MQTT sensors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = citybrain_parking::parse_fiware(data);
});
