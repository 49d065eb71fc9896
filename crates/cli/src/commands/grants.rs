//! `citybrain grants`: request, approve, refuse, revoke and list grants to read datasets.

use anyhow::Result;
use serde_json::json;

use super::{list, text, when};
use crate::client::{ServerArgs, get, post};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List your department's grants and the grants on its datasets.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask a dataset's owner for a grant.
    Request {
        /// The dataset to read, e.g. transport.anpr_passages.
        dataset: String,
        /// What the data is for; the owner decides on it and the audit trail keeps it.
        #[arg(long)]
        purpose: String,
        /// Fields needed, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Personal fields needed unmasked, comma-separated.
        #[arg(long, value_delimiter = ',')]
        raw: Vec<String>,
        /// How long the grant lasts once approved.
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve a grant on one of your department's datasets.
    Approve {
        /// The grant's id (from `grants list`).
        id: i64,
        /// Why (kept in the audit trail).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Refuse a grant, with a reason the requester can act on.
    Refuse {
        /// The grant's id (from `grants list`).
        id: i64,
        /// Why, so the requester can ask again with what is missing.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke an approved grant; it stops working at once.
    Revoke {
        /// The grant's id (from `grants list`).
        id: i64,
        /// Why (kept in the audit trail).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(args: Args) -> Result<()> {
    let decide = |server: &ServerArgs, id: i64, verb: &str, reason: String| -> Result<()> {
        let grant = post(
            server,
            &format!("/api/v1/grants/{id}/{verb}"),
            json!({"reason": reason}),
        )?;
        println!(
            "grant #{id} on {} for {}: {}",
            text(&grant, "dataset"),
            text(&grant, "department"),
            text(&grant, "state")
        );
        Ok(())
    };
    match args.command {
        Command::List { server } => {
            println!(
                "{:>4} {:<32} {:<16} {:<10} {:<28} purpose",
                "id", "dataset", "department", "status", "expires"
            );
            for g in list(&get(&server, "/api/v1/grants")?, "grants") {
                println!(
                    "{:>4} {:<32} {:<16} {:<10} {:<28} {}",
                    g["id"].as_i64().unwrap_or(0),
                    text(g, "dataset"),
                    text(g, "department"),
                    text(g, "status"),
                    when(&g["expires_at"]),
                    text(g, "purpose")
                );
            }
        }
        Command::Request {
            dataset,
            purpose,
            fields,
            raw,
            days,
            server,
        } => {
            let grant = post(
                &server,
                "/api/v1/grants",
                json!({"dataset": dataset, "purpose": purpose, "fields": fields, "raw": raw, "days": days}),
            )?;
            println!(
                "requested grant #{} on {dataset}; its owner approves it with `citybrain grants approve {}`",
                grant["id"], grant["id"]
            );
        }
        Command::Approve { id, reason, server } => decide(&server, id, "approve", reason)?,
        Command::Refuse { id, reason, server } => decide(&server, id, "refuse", reason)?,
        Command::Revoke { id, reason, server } => decide(&server, id, "revoke", reason)?,
    }
    Ok(())
}
