//! `citybrain whoami`: who the token belongs to.

use anyhow::Result;

use crate::client::{ServerArgs, request};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> Result<()> {
    let Args { server } = args;
    let me: serde_json::Value =
        serde_json::from_slice(&request(&server, "GET", "/api/v1/whoami", None)?)?;
    println!(
        "{} ({} in {})",
        me["name"].as_str().unwrap_or("?"),
        me["role"].as_str().unwrap_or("?"),
        me["department"].as_str().unwrap_or("?")
    );
    Ok(())
}
