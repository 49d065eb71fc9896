//! NGSI-LD bodies and query parameters: an entity to the row it is stored as, a temporal
//! entity to its rows, a query's `q`, ids, geo-query and time condition to SQL, which must
//! keep every client value inside a literal (`citybrain_ngsi::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    citybrain_ngsi::fuzzing::input(data);
});
