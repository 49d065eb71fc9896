//! `citybrain departments`: list departments, or create one (hub admins).

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
    /// List departments.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create a department (hub admins only).
    Create {
        /// Its id: lowercase letters, digits and '_' (e.g. civil_affairs).
        id: String,
        /// Its full name.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::List { server } => {
            println!("{:<20} name", "id");
            for d in list(&get(&server, "/api/v1/departments")?, "departments") {
                println!("{:<20} {}", text(d, "id"), text(d, "name"));
            }
        }
        Command::Create { id, name, server } => {
            post(
                &server,
                "/api/v1/departments",
                json!({"id": id, "name": name}),
            )?;
            println!("created department {id}");
        }
    }
    Ok(())
}
