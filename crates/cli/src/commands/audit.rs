//! `citybrain audit`: check the audit trail offline, or see who touched a dataset; and
//! `printable`, which keeps what callers wrote from forging rows of its tables.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::Value;

use super::{list, text};
use crate::client::{ServerArgs, get};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check the whole trail (offline, on the data directory): any edited, deleted,
    /// reordered or cut-off record is reported. Exits 1 if the trail is not intact.
    Verify {
        /// The server's data directory.
        #[arg(long, default_value = "./citybrain-data")]
        data: PathBuf,
    },
    /// Who touched a dataset, when and for what (for its owner).
    WhoRead {
        /// The dataset, e.g. transport.anpr_passages.
        dataset: String,
        /// The most recent this many calls.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Verify { data } => {
            let key = citybrain_gov::Gov::audit_key(&data)?;
            let report = citybrain_gov::audit::verify(&data.join(citybrain_gov::AUDIT_DIR), &key)?;
            if report.is_intact() {
                println!(
                    "audit trail intact: {} records, chain and MACs check out{}",
                    report.records,
                    report
                        .head
                        .as_ref()
                        .map(|h| format!("; head = record {} mac {}", h.seq, h.mac))
                        .unwrap_or_default()
                );
            } else {
                for problem in &report.problems {
                    eprintln!("  {problem}");
                }
                bail!(
                    "the audit trail was tampered with or damaged ({} problems shown above, {} records readable)",
                    report.problems.len(),
                    report.records
                )
            }
        }
        Command::WhoRead {
            dataset,
            limit,
            server,
        } => {
            let answer = get(
                &server,
                &format!("/api/v1/datasets/{dataset}/audit?limit={limit}"),
            )?;
            println!(
                "{:<28} {:<20} {:<16} {:<7} {:<8} {:>8}  fields / purpose",
                "at", "principal", "department", "kind", "outcome", "rows"
            );
            for c in list(&answer, "calls") {
                let fields: Vec<&str> = list(c, "datasets")
                    .filter(|t| text(t, "dataset") == dataset)
                    .flat_map(|t| list(t, "fields").filter_map(Value::as_str))
                    .collect();
                // Whatever a caller wrote is shown escaped: a newline must not forge a row,
                // nor an escape sequence rewrite the terminal.
                println!(
                    "{:<28} {:<20} {:<16} {:<7} {:<8} {:>8}  {} / {}",
                    printable(text(c, "at")),
                    printable(text(c, "principal")),
                    printable(text(c, "department")),
                    printable(text(c, "kind")),
                    printable(text(c, "outcome")),
                    c["rows"],
                    printable(&fields.join(",")),
                    printable(text(c, "purpose"))
                );
            }
        }
    }
    Ok(())
}

/// `text` with control characters and direction overrides written as `\u{..}` escapes.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if citybrain_gov::is_unprintable(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn caller_written_text_cannot_forge_rows_or_drive_the_terminal() {
        assert_eq!(
            super::printable("ok\n2026 forged\u{1b}[2J\u{202e}"),
            "ok\\u{a}2026 forged\\u{1b}[2J\\u{202e}"
        );
        assert_eq!(super::printable("交通 ok"), "交通 ok");
    }
}
