//! `citybrain principals`: list the principals you may see, or add one to a department.

use anyhow::Result;
use serde_json::json;

use super::{list, text};
use crate::client::{ServerArgs, get, post};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List the principals you may see (your department's; all for hub admins).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add a principal to a department (its admins, or hub admins).
    Create {
        /// Its name: a person's login or a service's name, e.g. traffic_police_bot.
        name: String,
        /// The department it acts for (an id, e.g. transport).
        #[arg(long)]
        department: String,
        /// reader, publisher or admin.
        #[arg(long, default_value = "reader")]
        role: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::List { server } => {
            println!("{:<24} {:<20} role", "principal", "department");
            for p in list(&get(&server, "/api/v1/principals")?, "principals") {
                println!(
                    "{:<24} {:<20} {}",
                    text(p, "name"),
                    text(p, "department"),
                    text(p, "role")
                );
            }
        }
        Command::Create {
            name,
            department,
            role,
            server,
        } => {
            post(
                &server,
                "/api/v1/principals",
                json!({"name": name, "department": department, "role": role}),
            )?;
            println!(
                "created {name} ({role} in {department}); issue a token with `citybrain tokens issue {name}`"
            );
        }
    }
    Ok(())
}
