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
    /// json, csv, excel (CSV with a UTF-8 byte-order mark, for spreadsheets), xlsx (an
    /// Excel workbook: give --out), arrow or geojson (the first point column as geometry).
    #[arg(long, default_value = "csv")]
    format: String,
    /// Write the result to this file instead of standard output.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        sql,
        purpose,
        format,
        out,
        server,
    } = args;
    if format == "xlsx" && out.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        anyhow::bail!(
            "an XLSX workbook is binary: give --out result.xlsx (or redirect standard output)"
        );
    }
    let body = serde_json::json!({"sql": sql, "purpose": purpose, "format": format});
    let bytes = request(
        &server,
        "POST",
        "/api/v1/sql",
        Some(("application/json", body.to_string().into_bytes())),
    )?;
    if let Some(path) = out {
        std::fs::write(&path, &bytes)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        eprintln!("{} bytes written to {}", bytes.len(), path.display());
        return Ok(());
    }
    std::io::stdout().write_all(&bytes)?;
    if format == "json" {
        println!();
    }
    Ok(())
}
