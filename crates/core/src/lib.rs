//! Vocabulary shared by every citybrain crate: ids, times, money and places.
//!
//! The key decision: values are parsed once at the edge into these types (parse, don't
//! validate), so code further in never re-checks a dataset name, a timestamp or an amount.
//! This crate does no I/O and has no heavy dependencies, so every other crate can use it
//! (time zones come from `chrono-tz`, whose tz database is compiled in).

pub mod city;
pub mod failpoint;
pub mod geo;
pub mod ids;
pub mod money;
pub mod rng;
pub mod time;
pub mod zone;

pub use city::CityProfile;
pub use geo::GeoPoint;
pub use ids::{DatasetName, DepartmentId, IdError, MAX_NAME_PART_LEN, PrincipalName};
pub use money::Fen;
pub use time::{Date, TimeError, Timestamp};
pub use zone::TimeZone;
