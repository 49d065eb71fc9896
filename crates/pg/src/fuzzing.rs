//! The wire's input path for the fuzz target `fuzz/fuzz_targets/pgwire.rs`: bytes decoded
//! into frontend messages as the listener's codec decodes them (first the SSL or startup
//! packet, then typed messages), and each message handled as far as citybrain handles it
//! before any SQL runs. Public only for the fuzzer.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};

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

/// Decodes and handles up to 64 messages from `data`; errors end it, as they end a
/// connection.
pub fn frontend(data: &[u8]) {
    let mut buf = bytes::BytesMut::from(data);
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    for _ in 0..64 {
        let Ok(Some(message)) = PgWireFrontendMessage::decode(&mut buf, &ctx) else {
            return;
        };
        // The codec's states: the SSL request (or none) first, then the startup packet.
        if ctx.awaiting_frontend_ssl {
            ctx.awaiting_frontend_ssl = false;
            continue;
        }
        ctx.awaiting_frontend_startup = false;
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                if let Some(options) = startup.parameters.get("options") {
                    let _ = session::purpose_from_options(options);
                }
            }
            PgWireFrontendMessage::Query(query) => statement(&query.query),
            PgWireFrontendMessage::Parse(parse) => statement(&parse.query),
            PgWireFrontendMessage::Bind(bind) => {
                let stored = Arc::new(StoredStatement::<String>::default());
                let Ok(portal) = Portal::try_new(&bind, stored) else {
                    continue;
                };
                for index in 0..portal.parameters.len().min(16) {
                    for ty in expected() {
                        let _ = encode::parameter(&portal, index, None, Some(&ty));
                    }
                }
            }
            _ => {}
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
}
