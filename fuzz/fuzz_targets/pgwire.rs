//! Bytes a Postgres client sends, as the wire listener reads them: frames decoded one after
//! another by the `pgwire` crate (startup, password, simple and extended query), then what
//! citybrain does with each before any SQL runs: a simple query split into statements and
//! classified (SET/SHOW/purpose, psql's catalogue queries rewritten), a Bind's parameters
//! read as each SQL type the statement could expect. Errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    citybrain_pg::fuzzing::frontend(data);
});
