//! `citybrain tokens`: issue, list and revoke bearer tokens.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use super::{list, text, when};
use crate::client::{ServerArgs, get, post, request};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Issue a token for a principal; it is printed once and stored only hashed.
    Issue {
        /// The principal the token authenticates as.
        principal: String,
        /// Days until it expires (default: until revoked).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Write the token to this file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List tokens you may manage (never their secrets).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a token by its id, and every token issued with it; they stop working at once.
    Revoke {
        /// The token's id (from `tokens list`).
        id: String,
        /// Keep the tokens issued with this one (to rotate: issue the new token with the
        /// old, then revoke the old with this flag).
        #[arg(long)]
        keep_issued: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Issue {
            principal,
            expires_in_days,
            out,
            server,
        } => {
            let issued = post(
                &server,
                &format!("/api/v1/principals/{principal}/tokens"),
                json!({"expires_in_days": expires_in_days}),
            )?;
            let token = text(&issued, "token");
            match out {
                Some(path) => {
                    citybrain_gov::write_private(&path, token.as_bytes())?;
                    println!(
                        "token {} for {principal} written to {} (shown nowhere else)",
                        text(&issued, "id"),
                        path.display()
                    );
                }
                None => {
                    println!("{token}");
                    eprintln!(
                        "token {} for {principal}: keep it now, it is not shown again",
                        text(&issued, "id")
                    );
                }
            }
        }
        Command::List { server } => {
            println!(
                "{:<10} {:<24} {:<28} {:<28} revoked",
                "id", "principal", "created", "expires"
            );
            for t in list(&get(&server, "/api/v1/tokens")?, "tokens") {
                println!(
                    "{:<10} {:<24} {:<28} {:<28} {}",
                    text(t, "id"),
                    text(t, "principal"),
                    when(&t["created_at"]),
                    when(&t["expires_at"]),
                    when(&t["revoked_at"])
                );
            }
        }
        Command::Revoke {
            id,
            keep_issued,
            server,
        } => {
            let answer = request(
                &server,
                "DELETE",
                &format!("/api/v1/tokens/{id}?cascade={}", !keep_issued),
                None,
            )?;
            println!("revoked token {id}");
            let with_it: Vec<String> = serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["revoked_with_it"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if !with_it.is_empty() {
                println!("revoked with it (issued with it): {}", with_it.join(", "));
            }
        }
    }
    Ok(())
}
