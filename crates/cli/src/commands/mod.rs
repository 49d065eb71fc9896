//! One module per `citybrain` command, each with its clap `Args` and its `run`; a command
//! with subcommands has them as a `Command` enum in its module. Here too: the few helpers
//! the governance commands share to print the server's JSON answers as tables.

use serde_json::Value;

pub mod audit;
pub mod cockpits;
pub mod codes;
pub mod datasets;
pub mod departments;
pub mod deploy;
pub mod forms;
pub mod generate;
pub mod grants;
pub mod indices;
pub mod ingest;
pub mod init;
pub mod network;
pub mod parking;
pub mod policy;
pub mod principals;
pub mod replay;
pub mod services;
pub mod signals;
pub mod sql;
pub mod tokens;
pub mod up;
pub mod warnings;
pub mod whoami;

/// A text field of a JSON answer, or "".
fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The items of a list field of a JSON answer (none if it is missing).
fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

/// A timestamp field (microseconds) as RFC 3339, or `-`.
fn when(v: &Value) -> String {
    v.as_i64().map_or("-".to_string(), |us| {
        citybrain_core::Timestamp(us).to_string()
    })
}
