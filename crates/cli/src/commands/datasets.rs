//! `citybrain datasets`: list a running server's datasets, or create or change one from a
//! definition file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use citybrain_hub::DatasetDef;

use crate::client::{ServerArgs, request};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List datasets with their size and the records refused into their dead letters.
    List {
        /// Also list the dead-letter datasets (`…__rejected`) themselves.
        #[arg(long)]
        rejected: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create a dataset from a TOML or JSON definition file.
    Create {
        /// The definition (.toml or .json).
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change a dataset's schema from a definition file (breaking changes are refused).
    Update {
        /// The new definition (.toml or .json).
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::List { rejected, server } => {
            let path = format!("/api/v1/datasets?rejected={rejected}");
            let bytes = request(&server, "GET", &path, None)?;
            let list: serde_json::Value = serde_json::from_slice(&bytes)?;
            println!(
                "{:<40} {:<14} {:<14} {:>12} {:>9} {:>9}",
                "dataset", "owner", "sharing", "rows", "segments", "rejected"
            );
            for d in list["datasets"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:<14} {:<14} {:>12} {:>9} {:>9}",
                    d["name"].as_str().unwrap_or(""),
                    d["owner"].as_str().unwrap_or(""),
                    d["sharing"].as_str().unwrap_or(""),
                    d["rows"].as_u64().unwrap_or(0),
                    d["segments"].as_u64().unwrap_or(0),
                    d["rejected_rows"]
                        .as_u64()
                        .map_or_else(|| "-".to_string(), |n| n.to_string())
                );
            }
            Ok(())
        }
        Command::Create { file, server } => send_definition(&server, &file, true),
        Command::Update { file, server } => send_definition(&server, &file, false),
    }
}

/// Creates (POST) or updates (PUT) a dataset from a definition file.
fn send_definition(server: &ServerArgs, file: &Path, creating: bool) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let def =
        DatasetDef::from_file_text(&file.to_string_lossy(), &text).map_err(anyhow::Error::msg)?;
    let body = serde_json::to_vec(&def)?;
    let (method, path) = if creating {
        ("POST", "/api/v1/datasets".to_string())
    } else {
        ("PUT", format!("/api/v1/datasets/{}", def.name))
    };
    request(server, method, &path, Some(("application/json", body)))?;
    println!(
        "{} {}",
        if creating { "created" } else { "updated" },
        def.name
    );
    Ok(())
}
