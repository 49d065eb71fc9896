//! `citybrain`: the one binary. Each subcommand is a thin shell over the library crates, in
//! its own file under `commands/` (its clap arguments and its `run`); this file holds only
//! the command line's top level, `main` and the dispatch. `client` is how the client
//! commands call a running server, and `demo` the demo city `up` sets up.

use clap::{Parser, Subcommand};

mod client;
mod commands;
mod demo;

/// citybrain: a city's data hub, live indices and scenes, in one binary.
#[derive(Debug, Parser)]
#[command(name = "citybrain", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server with the demo city loaded (creates it on first start).
    Up(Box<commands::up::Args>),
    /// Set up a data directory for your own city: its name, time zone, local plates, map.
    Init(commands::init::Args),
    /// Write a deterministic synthetic city with ground truth.
    Gen(commands::generate::Args),
    /// Run read-only SQL on a running server and print the result.
    Sql(commands::sql::Args),
    /// Send a file of records (NDJSON, CSV or Parquet) to a dataset on a running server.
    Ingest(commands::ingest::Args),
    /// Manage datasets on a running server.
    Datasets(commands::datasets::Args),
    /// Manage departments (hub admins create them).
    Departments(commands::departments::Args),
    /// Manage principals: the people and services that call the API for a department.
    Principals(commands::principals::Args),
    /// Issue, list and revoke bearer tokens.
    Tokens(commands::tokens::Args),
    /// Request, approve, refuse, revoke and list grants to read datasets.
    Grants(commands::grants::Args),
    /// Check the audit trail, or see who touched a dataset.
    Audit(commands::audit::Args),
    /// Replay a recorded file of passages (NDJSON, in time order) into a running server at a
    /// chosen speed, as cameras would send it; the live indices follow.
    Replay(commands::replay::Args),
    /// Compute city indices over recorded files.
    Indices(commands::indices::Args),
    /// Your road network from GIS files (GeoJSON) as the hub's link and checkpoint tables.
    Network(commands::network::Args),
    /// The parking scene's offline commands.
    Parking(commands::parking::Args),
    /// Policy delivery (亲清在线): rules as code.
    Policy(commands::policy::Args),
    /// Signal control: citybrain's controller against fixed-time plans and max-pressure,
    /// in SUMO.
    Signals(commands::signals::Args),
    /// Cockpits as files: apply, check, list, show and delete per-role cockpits.
    Cockpits(commands::cockpits::Args),
    /// Colour codes: verify a health or talent code offline with the city's public key.
    Codes(commands::codes::Args),
    /// Proactive services: check service rules, benchmark deciding them for a population.
    Services(commands::services::Args),
    /// Risk early warning: check warning rules offline.
    Warnings(commands::warnings::Args),
    /// One form instead of many: check report templates offline and see the burden they remove.
    Forms(commands::forms::Args),
    /// Show who the token belongs to.
    Whoami(commands::whoami::Args),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CITYBRAIN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // `citybrain ... | head` closes the pipe before the output ends: stop quietly, as Unix
    // tools do, instead of a panic from println! or an error from a write.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    // The crash matrix's failpoints (crates/core/src/failpoint.rs): off unless asked for.
    if let Ok(spec) = std::env::var("CITYBRAIN_FAILPOINTS") {
        if let Err(e) = citybrain_core::failpoint::arm(&spec) {
            eprintln!("error: CITYBRAIN_FAILPOINTS: {e}");
            std::process::exit(2);
        }
        if citybrain_core::failpoint::armed() {
            tracing::warn!(
                message = "Failpoints armed: this process will crash or fail on purpose.",
                spec
            );
        }
    }
    let cli = Cli::parse();
    if let Err(error) = run(cli) {
        let broken_pipe = error.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(0);
        }
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    use commands::*;
    match cli.command {
        Command::Up(args) => up::run(*args),
        Command::Init(args) => init::run(args),
        Command::Gen(args) => generate::run(args),
        Command::Sql(args) => sql::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Datasets(args) => datasets::run(args),
        Command::Departments(args) => departments::run(args),
        Command::Principals(args) => principals::run(args),
        Command::Tokens(args) => tokens::run(args),
        Command::Grants(args) => grants::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Indices(args) => indices::run(args),
        Command::Network(args) => network::run(args),
        Command::Parking(args) => parking::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Signals(args) => signals::run(args),
        Command::Cockpits(args) => cockpits::run(args),
        Command::Services(args) => services::run(args),
        Command::Warnings(args) => warnings::run(args),
        Command::Forms(args) => forms::run(args),
        Command::Codes(args) => codes::run(args),
        Command::Whoami(args) => whoami::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` explains every command, argument and option (clap's own help flag aside).
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
