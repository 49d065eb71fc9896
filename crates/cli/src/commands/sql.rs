//! `citybrain sql`: read-only SQL on a running server, the result printed as it comes.

use std::io::Write;

use anyhow::Result;

use crate::client::{ServerArgs, request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The statement, e.g. "SELECT count(*) FROM transport.anpr_passages".
    sql: String,
    /// Why you read the data (recorded in the audit trail).
    #[arg(long, default_value = "ad-hoc query")]
    purpose: String,
    /// json, csv, excel (CSV with a UTF-8 byte-order mark, for spreadsheets), arrow or
    /// geojson (the first point column as geometry).
    #[arg(long, default_value = "csv")]
    format: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        sql,
        purpose,
        format,
        server,
    } = args;
    let body = serde_json::json!({"sql": sql, "purpose": purpose, "format": format});
    let bytes = request(
        &server,
        "POST",
        "/api/v1/sql",
        Some(("application/json", body.to_string().into_bytes())),
    )?;
    std::io::stdout().write_all(&bytes)?;
    if format == "json" {
        println!();
    }
    Ok(())
}
