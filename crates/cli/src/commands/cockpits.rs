//! `citybrain cockpits`: cockpits as files. `apply` checks a definition here (every problem
//! at once, naming the panel) and then on the server (each panel's query planned), which
//! stores it in its data directory; `list`, `show` and `delete` manage them; `show --run`
//! prints each panel's rows as the token's principal may see them.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use citybrain_cockpits::Cockpit;
use serde_json::Value;

use super::{list, text};
use crate::client::{ServerArgs, request};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create or replace cockpits from definition files (.toml or .json); docs/cockpits.md
    /// describes the format.
    Apply {
        /// The definitions.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Check definition files without a server (the server also plans each panel's query).
    Check {
        /// The definitions (.toml or .json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The cockpits the token's department may open.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One cockpit's panels; with --run, each panel's rows as the token's principal sees them.
    Show {
        /// The cockpit's id (`citybrain cockpits list` shows them).
        id: String,
        /// Run every panel's query and print its rows.
        #[arg(long)]
        run: bool,
        /// The instant to show (RFC 3339); default: the city's live time.
        #[arg(long, requires = "run")]
        at: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a cockpit (admins of its department).
    Delete {
        /// The cockpit's id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn read(file: &PathBuf) -> Result<(String, String, Cockpit)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cockpit = Cockpit::from_file_text(&name, &text).map_err(|e| {
        anyhow::anyhow!(
            "{}:\n  {}\n(fix these and run again; docs/cockpits.md describes the format)",
            file.display(),
            e.problems.join("\n  ")
        )
    })?;
    Ok((name, text, cockpit))
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Check { files } => {
            for file in &files {
                let (_, _, cockpit) = read(file)?;
                println!(
                    "{}: cockpit {} with {} panels",
                    file.display(),
                    cockpit.id,
                    cockpit.panels.len()
                );
            }
            Ok(())
        }
        Command::Apply { files, server } => {
            for file in &files {
                let (name, text, cockpit) = read(file)?;
                let content_type = if name.ends_with(".json") {
                    "application/json"
                } else {
                    "application/toml"
                };
                let answer = request(
                    &server,
                    "PUT",
                    &format!("/api/v1/cockpits/{}", cockpit.id),
                    Some((content_type, text.into_bytes())),
                )
                .with_context(|| format!("applying {}", file.display()))?;
                let answer: Value = serde_json::from_slice(&answer)?;
                let verb = if answer["created"].as_bool() == Some(true) {
                    "created"
                } else {
                    "replaced"
                };
                println!(
                    "{verb} cockpit {} ({} panels)",
                    cockpit.id,
                    cockpit.panels.len()
                );
                for warning in list(&answer, "warnings") {
                    println!("  note: {}", warning.as_str().unwrap_or_default());
                }
            }
            Ok(())
        }
        Command::List { server } => {
            let answer: Value =
                serde_json::from_slice(&request(&server, "GET", "/api/v1/cockpits", None)?)?;
            println!(
                "{:<20} {:<16} {:>6}  title",
                "cockpit", "department", "panels"
            );
            for c in list(&answer, "cockpits") {
                println!(
                    "{:<20} {:<16} {:>6}  {} / {}",
                    text(c, "id"),
                    text(c, "department"),
                    c["panels"].as_u64().unwrap_or(0),
                    text(&c["title"], "en"),
                    text(&c["title"], "zh"),
                );
            }
            for broken in list(&answer, "unreadable") {
                println!(
                    "unreadable file {}: {}",
                    text(broken, "file"),
                    text(broken, "problem")
                );
            }
            Ok(())
        }
        Command::Show {
            id,
            run,
            at,
            server,
        } => {
            let cockpit: Value = serde_json::from_slice(&request(
                &server,
                "GET",
                &format!("/api/v1/cockpits/{id}"),
                None,
            )?)?;
            println!(
                "{} ({} / {}), department {}",
                text(&cockpit, "id"),
                text(&cockpit["title"], "en"),
                text(&cockpit["title"], "zh"),
                text(&cockpit, "department")
            );
            for panel in list(&cockpit, "panel") {
                let pid = text(panel, "id");
                println!(
                    "\n[{pid}] {} — {}",
                    text(panel, "kind"),
                    text(&panel["title"], "en")
                );
                if !run {
                    continue;
                }
                let query = at
                    .as_deref()
                    .map(|at| format!("?at={}", at.replace('+', "%2B")))
                    .unwrap_or_default();
                let answer: Value = serde_json::from_slice(&request(
                    &server,
                    "GET",
                    &format!("/api/v1/cockpits/{id}/panels/{pid}{query}"),
                    None,
                )?)?;
                if let Some(why) = answer["denied"].as_str() {
                    println!("  not shown to you: {why}");
                    continue;
                }
                let rows = answer["rows"].as_array().cloned().unwrap_or_default();
                for row in rows.iter().take(12) {
                    println!("  {row}");
                }
                if rows.len() > 12 {
                    println!("  … {} rows in all", rows.len());
                }
            }
            Ok(())
        }
        Command::Delete { id, server } => {
            let answer: Value = serde_json::from_slice(&request(
                &server,
                "DELETE",
                &format!("/api/v1/cockpits/{id}"),
                None,
            )?)?;
            if answer["deleted"].is_null() {
                bail!("the server did not confirm the deletion: {answer}");
            }
            println!("deleted cockpit {id}");
            Ok(())
        }
    }
}
