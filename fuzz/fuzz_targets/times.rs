//! Times and zones as feeds and profiles write them: RFC 3339, local and compact times, zone
//! names, and whole city profiles.
#![no_main]

use citybrain_core::{TimeZone, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let zone = TimeZone::fixed(8 * 3600);
    if let Ok(t) = Timestamp::parse(text) {
        // What is parsed prints back and parses to the same instant.
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
    }
    let _ = Timestamp::parse_local(text, &zone);
    let _ = Timestamp::parse_compact(text, &zone);
    if let Ok(z) = TimeZone::parse(text) {
        for s in [i64::MIN / 2, -1, 0, 1_800_000_000, i64::MAX / 2] {
            let local = z.to_local_s(s);
            let _ = z.from_local_s(local);
        }
    }
    let _ = citybrain_hub::profile::parse_profile(text);
});
