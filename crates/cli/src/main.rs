//! `citybrain`: the one binary. Each subcommand is a thin shell over the library crates.
//!
//! Why this file is long: it still holds the clap types, the dispatch and most commands'
//! bodies (the HTTP client is in `client`, the demo city in `demo`). Issue 22 (item 5)
//! splits it into one file per command; until then a change here should not grow it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use citybrain_core::DatasetName;
use citybrain_gov::Gov;
use citybrain_hub::{DatasetDef, Format, Hub, HubConfig};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use client::{ServerArgs, request};

mod client;
mod demo;
mod governance_cli;
mod indices_cli;
mod parking_cli;
mod policy_cli;
mod signals_cli;

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
    Up {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data directory.
        #[arg(long, default_value = "./citybrain-data")]
        data: PathBuf,
        /// Do not create or load the demo city.
        #[arg(long)]
        no_demo: bool,
        /// Size of the demo city (1.0 = 20,000 vehicles).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Largest accepted request body in MiB.
        #[arg(long, default_value_t = 256)]
        body_limit_mib: usize,
        /// Seal a dataset's unsealed records into Parquet once they number this many.
        #[arg(long, default_value_t = 1_000_000)]
        seal_rows: usize,
        /// Take berth sensor messages (FIWARE ParkingSpot/OffStreetParking) over MQTT from a
        /// Mosquitto that citybrain starts on a free loopback port (Debian: apt-get install
        /// mosquitto).
        #[arg(long)]
        mqtt: bool,
        /// Take them from this broker (HOST:PORT) instead of starting one.
        #[arg(long, value_name = "HOST:PORT")]
        mqtt_broker: Option<String>,
        /// Control the signals of this SUMO network (.net.xml), co-simulated in SUMO as the
        /// city's field (with --signals-routes); emergency runs via POST /api/v1/signals/emergency.
        #[arg(long, requires = "signals_routes")]
        signals_net: Option<PathBuf>,
        /// The demand for the co-simulation (a SUMO .rou.xml).
        #[arg(long, requires = "signals_net")]
        signals_routes: Option<PathBuf>,
        /// Simulated seconds per second.
        #[arg(long, default_value_t = 1.0)]
        signals_speed: f64,
        /// The sumo binary (default: $SUMO_HOME/bin/sumo, scripts/install-sumo's venv, or PATH).
        #[arg(long)]
        sumo: Option<PathBuf>,
        /// Deliver the policies in this directory (.policy files) through
        /// POST /api/v1/policy/runs (default: the twenty shipped with citybrain).
        #[arg(long)]
        policies: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Write a deterministic synthetic city with ground truth.
    Gen {
        /// The same seed gives the same city, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// 1.0 = 20,000 vehicles, about half a million passages.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// The directory to write the city to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Probability a camera misses a vehicle.
        #[arg(long, default_value_t = 0.03)]
        miss_rate: f64,
        /// Probability a camera misreads one plate character.
        #[arg(long, default_value_t = 0.02)]
        misread_rate: f64,
        /// A CBEngine road network file (default: the embedded real Hangzhou network).
        #[arg(long)]
        network: Option<PathBuf>,
        /// Each vehicle makes 1 to this many trips in the day (about 10 passages a trip).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        max_trips: u64,
    },
    /// Run read-only SQL on a running server and print the result.
    Sql {
        /// The statement, e.g. "SELECT count(*) FROM transport.anpr_passages".
        sql: String,
        /// Why you read the data (recorded in the audit trail).
        #[arg(long, default_value = "ad-hoc query")]
        purpose: String,
        /// json, csv or arrow.
        #[arg(long, default_value = "csv")]
        format: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send a file of records (NDJSON, CSV or Parquet) to a dataset on a running server.
    Ingest {
        /// The dataset to add to, e.g. transport.anpr_passages.
        dataset: String,
        /// The records; the format follows the name's ending (.ndjson, .csv, .parquet).
        file: PathBuf,
        /// Records per request (NDJSON and CSV are split; Parquet is sent whole).
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Store the valid records and dead-letter the rest.
        #[arg(long)]
        skip_bad: bool,
        /// Requests in flight at once (the hub decodes one while another waits for its fsync).
        #[arg(long, default_value_t = 2)]
        in_flight: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Manage datasets on a running server.
    Datasets {
        #[command(subcommand)]
        command: DatasetsCommand,
    },
    /// Manage departments (hub admins create them).
    Departments {
        #[command(subcommand)]
        command: DepartmentsCommand,
    },
    /// Manage principals: the people and services that call the API for a department.
    Principals {
        #[command(subcommand)]
        command: PrincipalsCommand,
    },
    /// Issue, list and revoke bearer tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Request, approve, refuse, revoke and list grants to read datasets.
    Grants {
        #[command(subcommand)]
        command: GrantsCommand,
    },
    /// Check the audit trail, or see who touched a dataset.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Replay a recorded file of passages (NDJSON, in time order) into a running server at a
    /// chosen speed, as cameras would send it; the live indices follow.
    Replay {
        /// The recorded passages (NDJSON, one record a line, in time order).
        file: PathBuf,
        /// The dataset to send to.
        #[arg(long, default_value = "transport.anpr_passages")]
        dataset: String,
        /// Data seconds per wall second, e.g. 60 (or 60x): an hour of data in a minute.
        #[arg(long, default_value = "60")]
        speed: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Compute city indices over recorded files.
    Indices {
        #[command(subcommand)]
        command: IndicesCommand,
    },
    /// The parking scene's offline commands.
    Parking {
        #[command(subcommand)]
        command: ParkingCommand,
    },
    /// Policy delivery (亲清在线): rules as code.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Signal control: citybrain's controller against fixed-time plans and max-pressure,
    /// in SUMO.
    Signals {
        #[command(subcommand)]
        command: SignalsCommand,
    },
    /// Show who the token belongs to.
    Whoami {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
enum IndicesCommand {
    /// Every traffic index (census, vehicles on the road, link travel times, delay index,
    /// congestion ranking) over a recorded day of ANPR passages, in one pass; written as
    /// Parquet files in --out, with a summary printed.
    Traffic {
        /// ANPR passages (ts, checkpoint_id, plate, ...) as NDJSON, CSV or Parquet, in
        /// roughly time order (out of order up to --lateness-s is put right).
        #[arg(long)]
        passages: PathBuf,
        /// The link table (link_id, from_checkpoint, to_checkpoint, length_m, freeflow_s,
        /// lanes, district) as NDJSON, CSV or Parquet.
        #[arg(long)]
        links: PathBuf,
        /// The directory the index files (Parquet) go to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Records older than the newest by more than this are counted and dropped.
        #[arg(long, default_value_t = 60)]
        lateness_s: i64,
        /// Partitions of plates computed in parallel (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Loads policy files (a directory of .policy files, or one), type-checks them and runs
    /// their in-file tests; every problem is printed as FILE:LINE:COL: message.
    Check {
        /// A .policy file or a directory of them.
        path: PathBuf,
    },
    /// One enterprise against every policy in a directory: eligible or not, clause by
    /// clause with the values read, the amount and any exception. FACTS is a JSON object
    /// of input values (money in yuan as strings, e.g. "1234.56"; dates YYYY-MM-DD).
    Explain {
        /// The directory of .policy files.
        dir: PathBuf,
        /// The enterprise's facts (a JSON object).
        facts: PathBuf,
        /// The day to decide on (default: each policy's first effective day).
        #[arg(long)]
        on: Option<String>,
    },
    /// Every policy in DIR against every enterprise in TABLE (CSV: enterprise_id and the
    /// facts), with the fast evaluator: per policy, how many qualify and how much they
    /// would get, against its budget. (No payouts yet: this is a dry run.)
    Run {
        /// The directory of .policy files.
        dir: PathBuf,
        /// The enterprises (CSV with a header: enterprise_id, then one column per fact).
        table: PathBuf,
        /// Write the decisions to pay as NDJSON here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write per policy the count, totals and a checksum of every amount as JSON here
        /// (the benchmark compares it with an independent computation).
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Threads evaluating enterprises in parallel.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Writes a synthetic economy (678,000 enterprises at scale 1) as CSV, deterministic
    /// for a seed.
    GenEconomy {
        /// The same seed gives the same enterprises.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// 1.0 = 678,000 enterprises.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// The CSV file to write.
        #[arg(long)]
        out: PathBuf,
        /// Write money in integer fen, as the hub's market.enterprises takes it (default:
        /// yuan with two decimals, as `policy run` and people read it).
        #[arg(long)]
        fen: bool,
    },
    /// A payout run on a running server: every policy it delivers against every enterprise
    /// in market.enterprises, payouts written to policy.payouts exactly once (rerun after
    /// an interruption: it pays only who is left).
    Pay {
        /// The run's name, e.g. 2025-annual (recorded with each payout).
        #[arg(long)]
        run: String,
        /// Why (recorded in the audit trail).
        #[arg(long, default_value = "")]
        purpose: String,
        /// A file with the SQL that gives the facts, one row per enterprise with
        /// enterprise_id (joins and aggregations over the hub's datasets, read with your
        /// grants); default: SELECT * FROM market.enterprises.
        #[arg(long)]
        inputs: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Makes COUNT policies from the templates in FROM (the templates, then copies with
    /// parameters and budgets varied under new ids), for matching at a real programme's
    /// scale: `citybrain policy variants crates/rules/policies --count 467 --out /tmp/p`.
    Variants {
        /// The directory of template .policy files.
        from: PathBuf,
        /// How many policies to make in all.
        #[arg(long, default_value_t = 467)]
        count: usize,
        /// The same seed gives the same variants.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The directory to write the policies to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SignalsCommand {
    /// Runs a SUMO scenario under the network's own fixed-time plans, plain max-pressure and
    /// citybrain's controller (and, with --ambulances, emergency runs with and without
    /// preemption) and prints average delay (SUMO timeLoss), travel time, completion and
    /// teleports. SUMO comes from PyPI: `bench/signals/run` installs it.
    Compare {
        /// A SUMO network (.net.xml) with traffic lights.
        #[arg(long)]
        net: PathBuf,
        /// A SUMO route file (.rou.xml); convert CityFlow flows with `cityflow-routes`.
        #[arg(long)]
        routes: PathBuf,
        /// Emergency runs to add (in pairs leaving together, from different origins).
        #[arg(long, default_value_t = 0)]
        ambulances: usize,
        /// The sumo binary (default: $SUMO_HOME/bin/sumo, the venv bench/signals/run makes,
        /// or sumo on the PATH).
        #[arg(long)]
        sumo: Option<PathBuf>,
        /// Where SUMO's outputs and results.json go.
        #[arg(long, default_value = "target/signals")]
        out: PathBuf,
        /// Stop a run here even with vehicles left (a gridlock shows as vehicles not arrived).
        #[arg(long, default_value_t = 10_800)]
        max_end_s: u32,
        /// The shortest green citybrain's controller gives a phase.
        #[arg(long, default_value_t = 5)]
        min_green_s: u32,
        /// The longest green before it must serve another phase.
        #[arg(long, default_value_t = 60)]
        max_green_s: u32,
        /// Yellow after every green.
        #[arg(long, default_value_t = 3)]
        yellow_s: u32,
        /// All-red after the yellow, before the next green.
        #[arg(long, default_value_t = 2)]
        all_red_s: u32,
        /// The longest a movement with a vehicle waiting may stay red.
        #[arg(long, default_value_t = 120)]
        max_wait_s: u32,
    },
    /// Converts a CityFlow flow file (JSON) to a SUMO route file.
    CityflowRoutes {
        /// The CityFlow flow file (JSON).
        flow: PathBuf,
        /// The SUMO route file to write (.rou.xml).
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ParkingCommand {
    /// Scores the free-berth forecast against "same as now" 15, 30 and 60 minutes ahead on
    /// a car-park occupancy series (timestamp,poiID,capacity,free; '-' reads stdin, e.g.
    /// `zcat malaga_carparks_occupancy.csv.gz | citybrain parking forecast-eval -`).
    ForecastEval {
        /// The occupancy series (CSV), or '-' for stdin.
        occupancy: PathBuf,
        /// Days at the start of each car park's series used only to learn.
        #[arg(long, default_value_t = 28)]
        warmup_days: i64,
        /// Also print each car park's errors.
        #[arg(long)]
        per_lot: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DepartmentsCommand {
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

#[derive(Debug, Subcommand)]
enum PrincipalsCommand {
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

#[derive(Debug, Subcommand)]
enum TokensCommand {
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

#[derive(Debug, Subcommand)]
enum GrantsCommand {
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

#[derive(Debug, Subcommand)]
enum AuditCommand {
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

#[derive(Debug, Subcommand)]
enum DatasetsCommand {
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

/// Bounds that keep one caller from taking the server down (docs/security.md).
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Seconds a SQL statement may run before it is cancelled.
    #[arg(long, default_value_t = 60)]
    sql_timeout_s: u64,
    /// Memory SQL operators (sorts, joins, aggregations) may reserve, in MiB.
    #[arg(long, default_value_t = 2048)]
    sql_memory_mib: usize,
    /// Rows a SQL result (or a read or export) may have.
    #[arg(long, default_value_t = 10_000_000)]
    sql_max_rows: usize,
    /// MiB a SQL result may take in memory.
    #[arg(long, default_value_t = 512)]
    sql_max_result_mib: usize,
    /// Connections open at once (default: half the descriptor limit, at most 4096).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers (and a kept-alive connection may
    /// sit idle).
    #[arg(long, default_value_t = 20)]
    header_timeout_s: u64,
    /// Records one ingest call may carry (a small Parquet body can decode to millions).
    #[arg(long, default_value_t = 16_777_216)]
    max_ingest_rows: u64,
    /// MiB the records of one ingest call may take once decoded.
    #[arg(long, default_value_t = 2048)]
    max_ingest_mib: u64,
}

impl LimitArgs {
    fn sql(&self) -> citybrain_sql::SqlLimits {
        citybrain_sql::SqlLimits {
            timeout: std::time::Duration::from_secs(self.sql_timeout_s.max(1)),
            memory_bytes: self.sql_memory_mib << 20,
            max_result_rows: self.sql_max_rows,
            max_result_bytes: self.sql_max_result_mib << 20,
            ..Default::default()
        }
    }

    fn ingest(&self) -> citybrain_hub::IngestLimits {
        citybrain_hub::IngestLimits {
            max_rows: self.max_ingest_rows.max(1),
            max_bytes: self.max_ingest_mib.max(1) << 20,
        }
    }

    fn connections(&self) -> citybrain_server::ConnLimits {
        let mut limits = citybrain_server::ConnLimits::default();
        if let Some(n) = self.max_connections {
            limits.max_connections = n.max(1);
        }
        limits.header_timeout = std::time::Duration::from_secs(self.header_timeout_s.max(1));
        limits
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            listen,
            data,
            no_demo,
            scale,
            body_limit_mib,
            seal_rows,
            mqtt,
            mqtt_broker,
            signals_net,
            signals_routes,
            signals_speed,
            sumo,
            policies,
            limits,
        } => up(
            &listen,
            &data,
            !no_demo,
            scale,
            body_limit_mib,
            &limits,
            HubConfig { seal_rows },
            Mqtt::choose(mqtt, mqtt_broker)?,
            signals_net
                .zip(signals_routes)
                .map(|(net, routes)| SignalsArgs {
                    net,
                    routes,
                    speed: signals_speed,
                    sumo: signals_cli::find_sumo(sumo),
                }),
            policies.as_deref(),
        ),
        Command::Gen {
            seed,
            scale,
            out,
            miss_rate,
            misread_rate,
            network,
            max_trips,
        } => {
            let config = citybrain_gen::GenConfig {
                seed,
                scale,
                miss_rate,
                misread_rate,
                network,
                max_trips,
                day: citybrain_core::Date::parse("2026-11-22").expect("a valid date"),
            };
            let truth = gen_with_progress(&config, &out)?;
            println!("{}", serde_json::to_string_pretty(&truth)?);
            println!("wrote the demo city to {}", out.display());
            Ok(())
        }
        Command::Sql {
            sql,
            purpose,
            format,
            server,
        } => {
            let body = serde_json::json!({"sql": sql, "purpose": purpose, "format": format});
            let bytes = request(
                &server,
                "POST",
                "/api/v1/sql",
                Some(("application/json", body.to_string().into_bytes())),
            )?;
            std::io::stdout().write_all(&bytes)?;
            if format == "json" {
                println!();
            }
            Ok(())
        }
        Command::Ingest {
            dataset,
            file,
            batch,
            skip_bad,
            in_flight,
            server,
        } => ingest_file(&server, &dataset, &file, batch, skip_bad, in_flight),
        Command::Datasets { command } => match command {
            DatasetsCommand::List { rejected, server } => {
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
            DatasetsCommand::Create { file, server } => send_definition(&server, &file, true),
            DatasetsCommand::Update { file, server } => send_definition(&server, &file, false),
        },
        Command::Departments { command } => governance_cli::departments(command),
        Command::Principals { command } => governance_cli::principals(command),
        Command::Tokens { command } => governance_cli::tokens(command),
        Command::Grants { command } => governance_cli::grants(command),
        Command::Audit { command } => governance_cli::audit(command),
        Command::Replay {
            file,
            dataset,
            speed,
            server,
        } => {
            let speed: f64 = speed
                .trim_end_matches('x')
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0)
                .with_context(|| {
                    format!("--speed '{speed}' is not a positive number like 60 or 60x")
                })?;
            replay(&server, &dataset, &file, speed)
        }
        Command::Indices {
            command:
                IndicesCommand::Traffic {
                    passages,
                    links,
                    out,
                    lateness_s,
                    threads,
                },
        } => {
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .clamp(1, 64);
            indices_cli::traffic(&passages, &links, &out, lateness_s, threads)
        }
        Command::Parking {
            command:
                ParkingCommand::ForecastEval {
                    occupancy,
                    warmup_days,
                    per_lot,
                },
        } => parking_cli::forecast_eval(&occupancy, warmup_days, per_lot),
        Command::Policy { command } => match command {
            PolicyCommand::Check { path } => policy_cli::check(&path),
            PolicyCommand::Explain { dir, facts, on } => {
                policy_cli::explain(&dir, &facts, on.as_deref())
            }
            PolicyCommand::Run {
                dir,
                table,
                out,
                summary,
                threads,
            } => policy_cli::run(&dir, &table, out.as_deref(), summary.as_deref(), threads),
            PolicyCommand::GenEconomy {
                seed,
                scale,
                out,
                fen,
            } => policy_cli::gen_economy(seed, scale, &out, fen),
            PolicyCommand::Pay {
                run,
                purpose,
                inputs,
                server,
            } => {
                let inputs = inputs
                    .map(|p| {
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("reading --inputs {}", p.display()))
                    })
                    .transpose()?;
                let body = serde_json::json!({"run": run, "purpose": purpose, "inputs": inputs});
                let bytes = request(
                    &server,
                    "POST",
                    "/api/v1/policy/runs",
                    Some(("application/json", body.to_string().into_bytes())),
                )?;
                policy_cli::print_pay_report(&bytes)
            }
            PolicyCommand::Variants {
                from,
                count,
                seed,
                out,
            } => policy_cli::variants(&from, count, seed, &out),
        },
        Command::Signals { command } => match command {
            SignalsCommand::Compare {
                net,
                routes,
                ambulances,
                sumo,
                out,
                max_end_s,
                min_green_s,
                max_green_s,
                yellow_s,
                all_red_s,
                max_wait_s,
            } => signals_cli::compare(&citybrain_sumo::compare::Compare {
                sumo: signals_cli::find_sumo(sumo),
                net,
                routes,
                ambulances,
                out,
                max_end_s,
                timing: citybrain_signals::Timing {
                    min_green_s,
                    max_green_s,
                    yellow_s,
                    all_red_s,
                    max_wait_s,
                },
            }),
            SignalsCommand::CityflowRoutes { flow, out } => {
                signals_cli::cityflow_routes(&flow, &out)
            }
        },
        Command::Whoami { server } => {
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
    }
}

/// The `ts` of an NDJSON passage line, found without parsing the whole record.
fn line_ts(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?;
    let start = text.find("\"ts\":\"")? + 6;
    let end = start + text[start..].find('"')?;
    citybrain_core::Timestamp::parse(&text[start..end])
        .ok()
        .map(|t| t.0)
}

/// Sends the file in one batch per wall-clock tick of data time, paced by `speed`.
fn replay(server: &ServerArgs, dataset: &str, file: &Path, speed: f64) -> Result<()> {
    let name = DatasetName::parse(dataset)?;
    let path = format!("/api/v1/datasets/{name}/records");
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let Some(first) = lines.iter().find_map(|l| line_ts(l)) else {
        bail!("{} has no records with a \"ts\" field", file.display());
    };
    let last = lines.iter().rev().find_map(|l| line_ts(l)).unwrap_or(first);
    let bar = ProgressBar::new(((last - first) / 1_000_000).max(1) as u64).with_style(
        ProgressStyle::with_template("replaying {bar:40} {msg} data time, {pos}/{len} s")
            .expect("valid template"),
    );
    let started = std::time::Instant::now();
    // One request per 200 ms of wall time.
    let tick_us = (0.2 * speed * 1e6) as i64;
    let mut batch: Vec<u8> = Vec::new();
    let mut window_end = first + tick_us;
    let mut sent = 0u64;
    let send = |batch: &mut Vec<u8>, data_time: i64| -> Result<()> {
        if !batch.is_empty() {
            request(
                server,
                "POST",
                &path,
                Some(("application/x-ndjson", std::mem::take(batch))),
            )?;
        }
        let due = (data_time - first) as f64 / 1e6 / speed;
        let wait = due - started.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(wait));
        }
        bar.set_position(((data_time - first) / 1_000_000).max(0) as u64);
        bar.set_message(citybrain_core::Timestamp(data_time).to_string());
        Ok(())
    };
    for line in lines {
        let ts = line_ts(line).unwrap_or(window_end);
        while ts >= window_end {
            send(&mut batch, window_end)?;
            window_end += tick_us;
        }
        batch.extend_from_slice(line);
        batch.push(b'\n');
        sent += 1;
    }
    send(&mut batch, window_end)?;
    bar.finish_and_clear();
    println!(
        "replayed {sent} records into {name} in {:.1} s ({speed}x)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
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

fn gen_with_progress(
    config: &citybrain_gen::GenConfig,
    out: &Path,
) -> Result<citybrain_gen::Truth> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("generating vehicles {bar:40} {pos}/{len} {eta}")
            .expect("valid template"),
    );
    let truth = citybrain_gen::generate(config, out, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| {
        format!(
            "generating the city into {} (pass --network PATH if the road network is elsewhere)",
            out.display()
        )
    })?;
    bar.finish_and_clear();
    Ok(truth)
}

fn ingest_file(
    server: &ServerArgs,
    dataset: &str,
    file: &Path,
    batch: usize,
    skip_bad: bool,
    in_flight: usize,
) -> Result<()> {
    let name = DatasetName::parse(dataset)?;
    let format = Format::from_path(&file.to_string_lossy()).with_context(|| {
        format!(
            "cannot tell the format of {}: name it .ndjson, .csv or .parquet",
            file.display()
        )
    })?;
    let path = format!(
        "/api/v1/datasets/{name}/records{}",
        if skip_bad { "?on_error=skip" } else { "" }
    );
    let total_bytes = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let bar = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template(
            "ingesting {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template"),
    );
    let accepted = std::sync::atomic::AtomicU64::new(0);
    let rejected = std::sync::atomic::AtomicU64::new(0);
    // Batches whose request failed: (first line, last line, error).
    let failed = std::sync::Mutex::new(Vec::<(u64, u64, anyhow::Error)>::new());
    let send = |chunk: Vec<u8>, lines: (u64, u64)| {
        let len = chunk.len() as u64;
        let outcome = request(server, "POST", &path, Some((format.content_type(), chunk)))
            .and_then(|bytes| Ok(serde_json::from_slice::<serde_json::Value>(&bytes)?));
        match outcome {
            Ok(report) => {
                use std::sync::atomic::Ordering::Relaxed;
                accepted.fetch_add(report["accepted"].as_u64().unwrap_or(0), Relaxed);
                rejected.fetch_add(report["rejected"].as_u64().unwrap_or(0), Relaxed);
                bar.inc(len);
            }
            Err(error) => failed
                .lock()
                .expect("failed lock")
                .push((lines.0, lines.1, error)),
        }
    };
    if format == Format::Parquet {
        send(std::fs::read(file)?, (1, 0));
    } else {
        // Requests in flight at once: while the hub decodes one batch (on both cores) and
        // waits for its fsync, the next is already on its way.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, (u64, u64))>(in_flight);
        let rx = std::sync::Mutex::new(rx);
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..in_flight.max(1) {
                scope.spawn(|| {
                    loop {
                        let next = rx.lock().expect("queue lock").recv();
                        let Ok((chunk, lines)) = next else { return };
                        send(chunk, lines);
                    }
                });
            }
            let mut reader = std::io::BufReader::new(std::fs::File::open(file)?);
            let mut header = Vec::new();
            let mut line = 1u64;
            if format == Format::Csv {
                reader.read_until(b'\n', &mut header)?;
                bar.inc(header.len() as u64);
                line += 1;
            }
            loop {
                // After a refused batch no more are sent; those in flight finish.
                if !failed.lock().expect("failed lock").is_empty() {
                    break;
                }
                let mut chunk = header.clone();
                let mut lines = 0;
                while lines < batch && reader.read_until(b'\n', &mut chunk)? > 0 {
                    lines += 1;
                }
                if lines == 0 {
                    break;
                }
                let range = (line, line + lines as u64 - 1);
                line += lines as u64;
                if tx.send((chunk, range)).is_err() {
                    break;
                }
            }
            drop(tx);
            Ok(())
        })?;
    }
    let (accepted, rejected) = (accepted.into_inner(), rejected.into_inner());
    let mut failed = failed.into_inner().expect("failed lock");
    if !failed.is_empty() {
        bar.finish_and_clear();
        failed.sort_by_key(|f| f.0);
        let (first, last, error) = failed.remove(0);
        let which = if format == Format::Parquet {
            "the file".to_string()
        } else {
            format!("the batch of lines {first}–{last}")
        };
        let others = failed
            .iter()
            .map(|(a, b, _)| format!("{a}–{b}"))
            .collect::<Vec<_>>();
        let also = if others.is_empty() {
            String::new()
        } else {
            format!(" (also refused: lines {})", others.join(", "))
        };
        return Err(error.context(format!(
            "{which} of {} was refused{also}; every other batch sent was stored ({accepted} records). \
             Fix those lines and send just them, or use --skip-bad to store the valid records and dead-letter the rest",
            file.display()
        )));
    }
    bar.finish_and_clear();
    println!("{name}: {accepted} records accepted, {rejected} rejected");
    Ok(())
}

/// The dataset policy runs read by default (`market.enterprises`), created empty so a
/// city can publish into it; and the policies checked before the server starts, so a
/// mistake in one stops `up` with its line instead of leaving the scene failed.
fn prepare_policies(hub: &Hub, dir: Option<&Path>) -> Result<()> {
    let (file, text) = citybrain_gen::economy::DEFINITION;
    let def = DatasetDef::from_file_text(file, text).map_err(anyhow::Error::msg)?;
    if !hub.names().contains(&def.name) {
        hub.create_dataset(def, citybrain_server::now())?;
    }
    citybrain_server::scenes::policy::load(dir).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Where berth sensor messages come from, if anywhere.
#[derive(Debug)]
enum Mqtt {
    Off,
    /// Start a Mosquitto of our own.
    Local,
    Broker(String, u16),
}

impl Mqtt {
    fn choose(local: bool, broker: Option<String>) -> Result<Self> {
        Ok(match (local, broker) {
            (_, Some(address)) => {
                let (host, port) = address
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
                    .with_context(|| format!("--mqtt-broker '{address}' is not HOST:PORT"))?;
                Self::Broker(host, port)
            }
            (true, None) => Self::Local,
            (false, None) => Self::Off,
        })
    }
}

/// The live signal scene's settings (`up --signals-net ... --signals-routes ...`).
struct SignalsArgs {
    net: PathBuf,
    routes: PathBuf,
    speed: f64,
    sumo: PathBuf,
}

#[allow(clippy::too_many_arguments)]
fn up(
    listen: &str,
    data: &Path,
    demo: bool,
    scale: f64,
    body_limit_mib: usize,
    limits: &LimitArgs,
    config: HubConfig,
    mqtt: Mqtt,
    signals: Option<SignalsArgs>,
    policies: Option<&Path>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let signals_args_shown = signals
        .as_ref()
        .map(|a| (a.net.display().to_string(), a.speed));
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    let hub = Arc::new(
        Hub::open(data, config)
            .context("opening the data directory")?
            .with_ingest_limits(limits.ingest()),
    );
    let gov = Arc::new(
        Gov::open(data, citybrain_server::now())
            .context("opening governance in the data directory")?,
    );
    client::ensure_token_file(&gov, &data.join("admin.token"), || {
        Ok(gov.issue_admin_token(citybrain_server::now())?)
    })?;
    prepare_policies(&hub, policies)?;
    citybrain_server::scenes::create_datasets(&hub).map_err(anyhow::Error::msg)?;
    if demo {
        demo::load(&hub, &gov, data, scale)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen} (is another server running? pass --listen ADDR)"))?;
        let address = listener.local_addr()?;
        let sql = citybrain_sql::SqlEngine::new(hub.clone(), limits.sql())
            .with_gov(gov.clone());
        let config = citybrain_server::scene::SceneConfig {
            signals: signals.map(|a| citybrain_server::scenes::signals::SignalsConfig {
                net: a.net,
                routes: a.routes,
                speed: a.speed,
                sumo: a.sumo,
            }),
            policies: policies.map(Path::to_path_buf),
            data_dir: data.to_path_buf(),
        };
        let state = citybrain_server::AppState::start(
            hub.clone(),
            sql,
            gov,
            config,
            body_limit_mib << 20,
            limits.connections(),
        )
        .await;
        let (mut mosquitto, broker) = match mqtt {
            Mqtt::Off => (None, None),
            Mqtt::Local => {
                let (child, port) = citybrain_server::mqtt::start_mosquitto(data).map_err(anyhow::Error::msg)?;
                (Some(child), Some(("127.0.0.1".to_string(), port)))
            }
            Mqtt::Broker(host, port) => (None, Some((host, port))),
        };
        if let Some((host, port)) = &broker {
            if let Err(error) = state.scenes.handle::<citybrain_server::scenes::parking::LiveParking>("parking") {
                bail!("--mqtt needs the parking scene, and {error}");
            }
            citybrain_server::mqtt::spawn(
                state.clone(),
                citybrain_server::mqtt::MqttSource {
                    host: host.clone(),
                    port: *port,
                    topic: "citybrain/parking/#".into(),
                },
            );
        }
        // Each dataset once; its dead-letter twin is part of it.
        let datasets = hub.names().iter().filter(|n| !n.is_rejected()).count();
        println!("citybrain is up on http://{address}/ (ready in {:.1} s)", started.elapsed().as_secs_f64());
        println!("  data directory: {}  ({datasets} datasets)", data.display());
        if !citybrain_server::cockpit_built() {
            println!("  cockpit:        not built into this binary (start with scripts/up, or run cockpit/build and rebuild)");
        } else if demo {
            // The token goes in the URL's fragment, which browsers never send to the server;
            // it is read from its file by the shell so it is never printed here.
            println!(
                "  cockpit:        http://{address}/   signed in as the demo reader: xdg-open \"http://{address}/#token=$(cat {})\"",
                data.join("cockpit.token").display()
            );
        } else {
            println!("  cockpit:        http://{address}/  (sign in with a token)");
        }
        println!("  admin token:    {} (send it as 'Authorization: Bearer ...')", data.join("admin.token").display());
        if demo {
            println!("  cockpit token:  {} (reader in city_office: plates masked by its grant)", data.join("cockpit.token").display());
            println!("  market token:   {} (admin in market: `citybrain policy pay --run 2025-annual`)", data.join("market.token").display());
        }
        println!("  API:            http://{address}/api/v1/openapi.json   health: http://{address}/health");
        println!("  live indices:   http://{address}/api/v1/indices/traffic/live  (SSE: /api/v1/indices/stream; tables: indices.*)");
        if let Some(args) = &signals_args_shown {
            println!("  signals:        {} under citybrain's control in SUMO at {}× (emergency runs: POST /api/v1/signals/emergency; tables: signals.*)", args.0, args.1);
        }
        if let Some((host, port)) = &broker {
            println!("  MQTT sensors:   mqtt://{host}:{port}  topic citybrain/parking/# (FIWARE ParkingSpot or OffStreetParking, QoS 1)");
        }
        if demo {
            println!(
                "  try:            CITYBRAIN_TOKEN_FILE={} citybrain sql \"SELECT plate, count(*) FROM transport.anpr_passages GROUP BY plate LIMIT 5\"",
                data.join("cockpit.token").display()
            );
        } else {
            println!("  next:           citybrain departments create transport   (then principals, tokens, datasets)");
        }
        citybrain_server::run(listener, state, shutdown_signal()).await?;
        if let Some(mut child) = mosquitto.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        println!("citybrain stopped cleanly");
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!(message = "Shutting down: finishing in-flight requests.");
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
