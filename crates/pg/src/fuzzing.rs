//! The wire's input path for the fuzz target `fuzz/fuzz_targets/pgwire.rs`: what
//! citybrain does with each frontend message before any SQL runs. A simple query is split
//! into statements and classified (SET/SHOW/purpose; psql's catalogue queries rewritten),
//! a Parse's text the same, a startup's `options` read for a purpose, and a Bind's
//! parameters read as each SQL type a statement could expect. Public only for the fuzzer.
//!
//! The messages are framed here (type byte, big-endian length, body) and built with the
//! `pgwire` crate's types, not its decoder: that decoder reads a body past its stated
//! length and panics on a short one (`Buf::get_u16` and the like; pgwire 0.42.1, found by
//! this target's first run). On the server such a panic ends that one connection's task,
//! and the server goes on (`a_malformed_message_ends_its_connection_only` in
//! `crates/cli/tests/pgwire.rs`); docs/reliability.md records it.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use bytes::Bytes;
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::messages::extendedquery::Bind;

use crate::{encode, psql, session};

/// The types a statement may expect of a parameter (what `describe_as` gives).
fn expected() -> [DataType; 11] {
    [
        DataType::Boolean,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Float32,
        DataType::Float64,
        DataType::Utf8,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Date32,
        DataType::Decimal128(12, 2),
    ]
}

fn statement(sql: &str) {
    for one in session::split(sql) {
        let _ = session::classify(one);
        let _ = psql::rewrite(one);
    }
}

/// Reads a body as the fuzzer writes it, never past its end.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn cstring(&mut self) -> Option<String> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let text = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Some(text)
    }
}

/// A Bind body: portal, statement, parameter formats, parameters, result formats.
fn bind(body: &mut Body) -> Option<Bind> {
    let portal = body.cstring()?;
    let statement = body.cstring()?;
    let formats = (0..body.u16()?.min(64))
        .map(|_| body.u16().map(|c| c as i16))
        .collect::<Option<Vec<_>>>()?;
    let mut parameters = Vec::new();
    for _ in 0..body.u16()?.min(64) {
        let len = body.i32()?;
        parameters.push(match usize::try_from(len) {
            Ok(n) => Some(Bytes::copy_from_slice(body.take(n)?)),
            Err(_) => None,
        });
    }
    let results = (0..body.u16()?.min(64))
        .map(|_| body.u16().map(|c| c as i16))
        .collect::<Option<Vec<_>>>()?;
    Some(Bind::new(
        Some(portal),
        Some(statement),
        formats,
        parameters,
        results,
    ))
}

/// Handles up to 64 messages framed in `data`: the first is a startup packet's parameters
/// (name, value pairs), the rest typed messages.
pub fn frontend(data: &[u8]) {
    let mut rest = Body(data);
    let mut first = true;
    for _ in 0..64 {
        let Some(&kind) = rest.0.first() else { return };
        let body = if first {
            first = false;
            let Some(len) = rest.i32() else { return };
            rest.take(usize::try_from(len).unwrap_or(0).saturating_sub(4))
        } else {
            rest.take(1);
            let Some(len) = rest.i32() else { return };
            rest.take(usize::try_from(len).unwrap_or(0).saturating_sub(4))
        };
        let Some(body) = body else { return };
        let mut body = Body(body);
        match kind {
            b'Q' => statement(&body.cstring().unwrap_or_default()),
            b'P' => {
                let _ = body.cstring();
                statement(&body.cstring().unwrap_or_default());
            }
            b'B' => {
                let Some(bind) = bind(&mut body) else {
                    continue;
                };
                let stored = Arc::new(StoredStatement::<String>::default());
                let Ok(portal) = Portal::try_new(&bind, stored) else {
                    continue;
                };
                for index in 0..portal.parameters.len() {
                    for ty in expected() {
                        let _ = encode::parameter(&portal, index, None, Some(&ty));
                    }
                }
            }
            _ => {
                // The startup packet: protocol version, then name and value pairs.
                if body.i32().is_some() {
                    while let (Some(name), Some(value)) = (body.cstring(), body.cstring()) {
                        if name == "options" {
                            let _ = session::purpose_from_options(&value);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_startup_then_a_query_and_a_bind_are_handled() {
        let mut data = Vec::new();
        // Startup: length, protocol 3.0, user and options, a closing zero.
        let body = b"\x00\x03\x00\x00user\x00analyst\x00options\x00-c purpose=fuzz\x00\x00";
        data.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        data.extend_from_slice(body);
        let query = b"SELECT 1; SET purpose = 'x'\x00";
        data.push(b'Q');
        data.extend_from_slice(&((query.len() + 4) as u32).to_be_bytes());
        data.extend_from_slice(query);
        // Bind: portal "", statement "", no format codes, one text parameter "42", no
        // result formats.
        let bind = b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x0242\x00\x00";
        data.push(b'B');
        data.extend_from_slice(&((bind.len() + 4) as u32).to_be_bytes());
        data.extend_from_slice(bind);
        super::frontend(&data);
    }

    #[test]
    fn the_fuzzers_parse_message_is_an_error_not_a_panic() {
        super::frontend(include_bytes!("../tests/data/fuzzed_parse_message.bin"));
    }
}
