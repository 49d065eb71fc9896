//! CBEngine road network files (`citybrain gen --network`, `up --demo-network`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = citybrain_gen::Network::parse(text);
    }
});
