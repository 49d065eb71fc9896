//! `citybrain policy`: policy delivery (亲清在线), rules as code. The subcommands and their
//! dispatch are here, with `check`, `gen-economy` and `pay` (a call to the server); the
//! larger ones have a file each: `explain`, `run` (the offline dry run over a table) and
//! `variants`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::client::{ServerArgs, request};

mod explain;
mod run;
mod variants;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
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

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Check { path } => check(&path),
        Command::Explain { dir, facts, on } => explain::explain(&dir, &facts, on.as_deref()),
        Command::Run {
            dir,
            table,
            out,
            summary,
            threads,
        } => run::run(&dir, &table, out.as_deref(), summary.as_deref(), threads),
        Command::GenEconomy {
            seed,
            scale,
            out,
            fen,
        } => gen_economy(seed, scale, &out, fen),
        Command::Pay {
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
            print_pay_report(&bytes)
        }
        Command::Variants {
            from,
            count,
            seed,
            out,
        } => variants::variants(&from, count, seed, &out),
    }
}

/// Loads every `.policy` file under `dir` (or one file), type-checks it and runs its
/// in-file tests; prints every problem as `file:line:col: message`.
fn check(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    if dir.is_file() {
        files.push(dir.to_path_buf());
    } else {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "policy") {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no .policy files in {}", dir.display());
    }
    let (mut problems, mut tests, mut failed) = (0, 0, 0);
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        match citybrain_rules::load(&text) {
            Err(diags) => {
                for d in &diags {
                    println!(
                        "{}:{}:{}: {}",
                        file.display(),
                        d.pos.line,
                        d.pos.col,
                        d.message
                    );
                }
                problems += diags.len();
            }
            Ok(policy) => {
                tests += policy.ast.tests.len();
                for f in policy.run_tests() {
                    println!(
                        "{}:{}:{}: test {:?} failed: {}",
                        file.display(),
                        f.pos.line,
                        f.pos.col,
                        f.test,
                        f.message
                    );
                    failed += 1;
                }
            }
        }
    }
    println!(
        "{} policies: {problems} problems, {tests} tests, {failed} failed",
        files.len()
    );
    if problems > 0 || failed > 0 {
        bail!("fix the problems above (each names its file, line and column)");
    }
    Ok(())
}

/// The policies in `dir` (its `.policy` files, in name order), each loaded; the first
/// problem stops it, naming its file, line and column.
fn load_dir(dir: &Path) -> Result<Vec<(std::path::PathBuf, citybrain_rules::Policy)>> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        let policy = citybrain_rules::load(&text).map_err(|d| {
            anyhow::anyhow!(
                "{}:{}:{}: {} (run `citybrain policy check {}`)",
                path.display(),
                d[0].pos.line,
                d[0].pos.col,
                d[0].message,
                dir.display()
            )
        })?;
        out.push((path, policy));
    }
    Ok(out)
}

/// Writes a synthetic economy (enterprises and their facts) as CSV.
fn gen_economy(seed: u64, scale: f64, out: &Path, fen: bool) -> Result<()> {
    use citybrain_gen::economy::Unit;
    let firms = ((citybrain_gen::economy::FIRMS_AT_SCALE_1 as f64) * scale)
        .round()
        .max(1.0) as u64;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let unit = if fen { Unit::Fen } else { Unit::Yuan };
    citybrain_gen::economy::write_csv_in(seed, firms, unit, &mut w)?;
    std::io::Write::flush(&mut w)?;
    println!("{firms} enterprises written to {}", out.display());
    Ok(())
}

/// Prints a payout run's report (the server's JSON) as a table.
fn print_pay_report(bytes: &[u8]) -> Result<()> {
    let r: serde_json::Value =
        serde_json::from_slice(bytes).context("reading the server's report")?;
    let fen = |v: &serde_json::Value| {
        citybrain_rules::eval::yuan(citybrain_core::Fen(v.as_i64().unwrap_or(0)))
    };
    println!(
        "{:<26} {:>10} {:>20} {:>20}  errors",
        "policy", "eligible", "qualified for", "paid"
    );
    for p in r["per_policy"].as_array().into_iter().flatten() {
        println!(
            "{:<26} {:>10} {:>20} {:>20}  {}",
            p["policy"].as_str().unwrap_or(""),
            p["eligible"],
            fen(&p["qualified_fen"]),
            fen(&p["paid_fen"]),
            p["errors"]
        );
    }
    println!(
        "run {}: {} policies × {} enterprises, {} to pay ({} in all): {} paid now, {} already paid before",
        r["run"].as_str().unwrap_or(""),
        r["policies"],
        r["enterprises"],
        r["eligible"],
        fen(&r["total_paid_fen"]),
        r["paid_now"],
        r["already_paid"]
    );
    Ok(())
}
