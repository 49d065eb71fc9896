//! `citybrain services`: the service rules of proactive services (主动服务). `check` loads a
//! directory of rules as `up --services DIR` would and lists what each reads and how long the
//! grid has; `bench` decides every rule for a generated population with the fast evaluator and
//! times a fact change, and writes the same population and rules as CSV and SQL for a peer
//! (`bench/services/run` runs DuckDB on them in the same run and compares the answers).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use citybrain_core::{Date, GeoPoint, TimeZone};
use citybrain_rules::Value;
use citybrain_rules::syntax::{Expr, ExprKind, Lit, PolicyAst};
use citybrain_services::{Engine, FACTS, ServiceRules, Update};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check a directory of service rules (.policy files and an optional services.toml of
    /// deadlines) as `up --services DIR` loads it; without DIR, the shipped rules.
    Check {
        /// The directory; docs/services.md says how to write one.
        dir: Option<PathBuf>,
    },
    /// Decide every rule for a generated population and time it (the numbers of
    /// docs/benchmarks.md, "Proactive services"); write the population as CSV and the rules as
    /// SQL beside the results, for a peer to run the same work.
    Bench {
        /// Residents to generate (1,000,000 is the generator's scale 1).
        #[arg(long, default_value_t = 1_000_000)]
        residents: u64,
        /// The rules (default: the shipped ones). `citybrain policy variants` makes more.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Threads for the sweep.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Sweeps to time (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Fact changes to time, one at a time.
        #[arg(long, default_value_t = 2_000)]
        changes: usize,
        /// Where to write facts.csv, rules.json and citybrain.json.
        #[arg(long)]
        out: PathBuf,
    },
    /// A simulated day of alarms on a road network, dispatched to the nearest available
    /// worker by road and to the grid's own worker (the share on site within three
    /// minutes, each); and how long finding the nearest among many workers takes.
    Dispatch {
        /// A CBEngine road network (default: the demo's Hangzhou network).
        #[arg(long)]
        network: Option<PathBuf>,
        /// Residents (one grid and one worker per 400).
        #[arg(long, default_value_t = 10_000)]
        residents: u64,
        /// Alarms in the day.
        #[arg(long, default_value_t = 300)]
        alarms: usize,
        /// Workers for the timing of the nearest search.
        #[arg(long, default_value_t = 10_000)]
        workers: usize,
        /// Write the results as JSON here too.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Check { dir } => check(dir),
        Command::Bench {
            residents,
            rules,
            threads,
            runs,
            changes,
            out,
        } => bench(residents, rules, threads, runs, changes, &out),
        Command::Dispatch {
            network,
            residents,
            alarms,
            workers,
            out,
        } => dispatch(network, residents, alarms, workers, out),
    }
}

fn dispatch(
    network: Option<PathBuf>,
    residents: u64,
    alarms: usize,
    workers: usize,
    out: Option<PathBuf>,
) -> Result<()> {
    use citybrain_services::alarms::{self, Policy};
    use citybrain_services::dispatch::{Roads, Workers, nearest};
    let text = match &network {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => citybrain_gen::HANGZHOU_NETWORK.to_string(),
    };
    let net = citybrain_gen::Network::parse(&text).map_err(anyhow::Error::msg)?;
    let nodes: Vec<GeoPoint> = net
        .intersections
        .iter()
        .map(|i| GeoPoint {
            lon: i.lon,
            lat: i.lat,
        })
        .collect();
    let links: Vec<(u32, u32, f64)> = net
        .roads
        .iter()
        .map(|r| (r.from as u32, r.to as u32, r.length_m))
        .collect();
    let roads = Roads::new(nodes.clone(), &links);
    let (centre, radius_m) =
        citybrain_services::dispatch::disc(&nodes).context("the network has no intersections")?;
    let zone = TimeZone::parse("Asia/Shanghai").expect("in the tz database");
    let config = citybrain_services::demo::DemoConfig {
        seed: 1,
        residents,
        first_day: Date::parse("2026-11-02").expect("a date"),
        days: 0,
        zone: zone.clone(),
        centre,
        radius_m,
    };
    let people = citybrain_services::demo::generate(&config);
    let homes: Vec<GeoPoint> = people
        .first_load
        .iter()
        .filter_map(|u| match u {
            Update::Resident(r) => r.home,
            _ => None,
        })
        .collect();
    let day = alarms::generate(
        1,
        &people.grids,
        &homes,
        config.first_day,
        &zone,
        config.grid_radius_m(),
        alarms,
    );
    let near = alarms::simulate(&roads, &people.grids, &day, Policy::Nearest, 1);
    let own = alarms::simulate(&roads, &people.grids, &day, Policy::OwnGrid, 1);
    let share = |o: &alarms::Outcome| o.within_3_min as f64 / o.alarms.max(1) as f64;
    println!(
        "{} intersections, {} grids (one worker each), {} alarms in a day:",
        roads.len(),
        people.grids.len(),
        day.alarms.len()
    );
    println!(
        "  nearest available by road: {:.1}% on site within 3 minutes ({} reached, median {:.0} s, {} asked)",
        100.0 * share(&near),
        near.reached,
        near.median_on_site_s.unwrap_or(f64::NAN),
        near.asked
    );
    println!(
        "  the grid's own worker:     {:.1}% on site within 3 minutes ({} reached, median {:.0} s, {} asked)",
        100.0 * share(&own),
        own.reached,
        own.median_on_site_s.unwrap_or(f64::NAN),
        own.asked
    );
    // The nearest of many workers, timed one search at a time.
    let mut rng = citybrain_core::rng::Rng::new(7);
    let mut many = Workers::default();
    for i in 0..workers {
        let at = alarms::near(&mut rng, centre, radius_m);
        many.set(&roads, &format!("W{i}"), "g", at, true);
    }
    let mut times = Vec::new();
    let none = std::collections::HashSet::new();
    for _ in 0..2_000 {
        let at = alarms::near(&mut rng, centre, radius_m);
        let t = Instant::now();
        let found = nearest(&roads, &many, at, &none);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(found.is_some(), "no worker found for {at:?}");
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "  the nearest of {workers} workers: {:.0} µs p50, {:.0} µs p99 (2,000 searches)",
        pct(0.5),
        pct(0.99)
    );
    if let Some(out) = out {
        let result = serde_json::json!({
            "intersections": roads.len(),
            "grids": people.grids.len(),
            "alarms": day.alarms.len(),
            "nearest": near,
            "own_grid": own,
            "workers_for_timing": workers,
            "nearest_search_us_p50": pct(0.5),
            "nearest_search_us_p99": pct(0.99),
        });
        std::fs::write(&out, serde_json::to_vec_pretty(&result)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn load(dir: Option<&std::path::Path>) -> Result<ServiceRules> {
    citybrain_server::scenes::services::load_rules(dir).map_err(|problems| {
        anyhow::anyhow!(
            "{} problem(s) in the service rules:\n  {}",
            problems.len(),
            problems.join("\n  ")
        )
    })
}

fn check(dir: Option<PathBuf>) -> Result<()> {
    let rules = load(dir.as_deref())?;
    for s in &rules.services {
        let inputs: Vec<&str> = s.ast.inputs.iter().map(|i| i.name.as_str()).collect();
        println!(
            "{:<28} {:>3} days  {:<16} reads {}",
            s.name,
            s.sla_days,
            s.department,
            inputs.join(", ")
        );
    }
    println!(
        "{} service rules check, their tests pass. The facts a rule may read: {}",
        rules.services.len(),
        FACTS.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// A rule's eligibility (all its clauses) as a SQL condition over the facts' columns, with
/// its parameters' values on `day` written in. Money is in fen, as in the facts.
fn to_sql(ast: &PolicyAst, day: Date) -> Result<String> {
    let clauses: Vec<String> = ast
        .clauses
        .iter()
        .map(|c| expr_sql(ast, &c.expr, day).map(|s| format!("({s})")))
        .collect::<Result<_>>()?;
    Ok(clauses.join(" AND "))
}

fn value_sql(v: &Value) -> Result<String> {
    Ok(match v {
        Value::Num(r) if r.den == 1 => r.num.to_string(),
        Value::Num(r) => format!("({}.0 / {})", r.num, r.den),
        Value::Bool(b) => b.to_string(),
        Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
        Value::Date(d) => format!("DATE '{d}'"),
    })
}

fn expr_sql(ast: &PolicyAst, e: &Expr, day: Date) -> Result<String> {
    Ok(match &e.kind {
        ExprKind::Lit(l) => match l {
            Lit::Int(n) | Lit::Money(n) => n.to_string(),
            Lit::Rate(d) => format!("({}.0 / 1e{})", d.num, d.scale),
            Lit::Bool(b) => b.to_string(),
            Lit::Text(t) => format!("'{}'", t.replace('\'', "''")),
            Lit::Date(d) => format!("DATE '{d}'"),
        },
        ExprKind::Name(n) => match ast.params.iter().find(|p| p.name == *n) {
            Some(p) => {
                let value = p
                    .values
                    .iter()
                    .rfind(|v| v.from.is_none_or(|d| d <= day))
                    .with_context(|| format!("{n} has no value on {day}"))?;
                value_sql(&citybrain_rules::eval::constant(&value.value)?)?
            }
            None => n.clone(),
        },
        ExprKind::Unary(op, x) => match *op {
            "not" => format!("(NOT {})", expr_sql(ast, x, day)?),
            _ => format!("(-{})", expr_sql(ast, x, day)?),
        },
        ExprKind::Binary(op, a, b) => {
            let op = match *op {
                "==" => "=",
                "!=" => "<>",
                "and" => "AND",
                "or" => "OR",
                "/" => bail!("{}: divisions are not written as SQL here", ast.id),
                other => other,
            };
            format!(
                "({} {op} {})",
                expr_sql(ast, a, day)?,
                expr_sql(ast, b, day)?
            )
        }
        ExprKind::Call(f, args) if f == "min" || f == "max" => {
            let args: Vec<String> = args
                .iter()
                .map(|a| expr_sql(ast, a, day))
                .collect::<Result<_>>()?;
            let f = if f == "min" { "least" } else { "greatest" };
            format!("{f}({})", args.join(", "))
        }
        ExprKind::Call(f, _) => bail!("{}: {f} is not written as SQL here", ast.id),
        ExprKind::If(c, a, b) => format!(
            "(CASE WHEN {} THEN {} ELSE {} END)",
            expr_sql(ast, c, day)?,
            expr_sql(ast, a, day)?,
            expr_sql(ast, b, day)?
        ),
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn bench(
    residents: u64,
    rules_dir: Option<PathBuf>,
    threads: usize,
    runs: usize,
    changes: usize,
    out: &std::path::Path,
) -> Result<()> {
    let rules = load(rules_dir.as_deref())?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let zone = TimeZone::parse("Asia/Shanghai").expect("in the tz database");
    let day = Date::parse("2026-11-01").expect("a date");
    eprintln!("generating {residents} residents ...");
    let people = citybrain_services::demo::generate(&citybrain_services::demo::DemoConfig {
        seed: 1,
        residents,
        first_day: day,
        days: 0,
        zone: zone.clone(),
        centre: GeoPoint {
            lon: 120.16,
            lat: 30.27,
        },
        radius_m: 8_000.0,
    });
    let mut engine = Engine::new(rules, zone.clone(), threads);
    for u in &people.first_load {
        engine.apply(u);
    }
    let services: Vec<usize> = (0..engine.rules.services.len()).collect();
    // The facts as the peer reads them, and the rules as SQL.
    let table_path = out.join("facts.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&table_path)?);
    writeln!(
        csv,
        "row,age,local_hukou,household_members,disability_level,income_assessed,income_per_person,employed,pension"
    )?;
    for r in 0..engine.population.len() as u32 {
        let f = engine.population.facts(r, day);
        let get = |n: &str| match &f[n] {
            Value::Num(x) => x.num.to_string(),
            Value::Bool(b) => b.to_string(),
            other => other.to_string(),
        };
        writeln!(
            csv,
            "{r},{},{},{},{},{},{},{},{}",
            get("age"),
            get("local_hukou"),
            get("household_members"),
            get("disability_level"),
            get("income_assessed"),
            get("income_per_person"),
            get("employed"),
            get("pension")
        )?;
    }
    csv.flush()?;
    let sql: Vec<serde_json::Value> = engine
        .rules
        .services
        .iter()
        .map(|s| Ok(serde_json::json!({"name": s.name, "sql": to_sql(&s.ast, day)?})))
        .collect::<Result<_>>()?;
    std::fs::write(out.join("rules.json"), serde_json::to_vec_pretty(&sql)?)?;

    // The sweep: the facts as a table, then every rule over every resident.
    let mut build_ms = Vec::new();
    let mut sweep_ms = Vec::new();
    let mut eligible = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let table = engine.population.table(day);
        build_ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(table);
        let t = Instant::now();
        eligible = engine.eligible_on(day, &services);
        sweep_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // A fact change: a household's income reassessed, its members decided again with the
    // interpreter (every rule), as the scene does; timed one at a time.
    let mut change_us = Vec::new();
    let households: Vec<String> = people
        .first_load
        .iter()
        .filter_map(|u| match u {
            Update::Resident(r) => Some(r.household_id.clone()),
            _ => None,
        })
        .step_by(7)
        .take(changes)
        .collect();
    let at = zone.day_start(day);
    // The first change of the day makes the morning sweep; it is not timed.
    engine.apply(&Update::Income(citybrain_services::IncomeRow {
        assessment_id: "warm".into(),
        household_id: households[0].clone(),
        income_per_person: 100_000,
        assessed_at: at,
    }));
    let mut opened = 0;
    for (i, h) in households.iter().enumerate() {
        let u = Update::Income(citybrain_services::IncomeRow {
            assessment_id: format!("bench{i}"),
            household_id: h.clone(),
            income_per_person: 50_000 + (i as i64 % 200) * 1_000,
            assessed_at: citybrain_core::Timestamp(at.0 + 3_600_000_000 + i as i64),
        });
        let t = Instant::now();
        opened += engine.apply(&u).len();
        change_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    change_us.sort_by(f64::total_cmp);
    let pct = |p: f64| change_us[((change_us.len() - 1) as f64 * p).round() as usize];
    // A code verified offline (signature, expiry, revocation list of 1,000), one at a time.
    let key = citybrain_services::codes::signing_key(&[42u8; 32]);
    let public = key.verifying_key();
    let payload = citybrain_services::codes::Payload {
        id: "C00000001".into(),
        kind: "health".into(),
        value: "green".into(),
        name: "张*".into(),
        id_number: "3301**********1234".into(),
        holder: citybrain_services::codes::holder_mark(&key, "330106199001011234"),
        issued_at: at,
        valid_until: citybrain_core::Timestamp(at.0 + 86_400_000_000),
    };
    let code = citybrain_services::codes::sign(&key, &payload);
    let revoked: std::collections::HashSet<String> =
        (0..1_000).map(|i| format!("C{:08}", i + 2)).collect();
    let mut verify_us = Vec::new();
    for _ in 0..10_000 {
        let t = Instant::now();
        let ok = citybrain_services::codes::verify(&public, &code, at, &|id| revoked.contains(id));
        verify_us.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(ok.is_ok(), "the benchmark's own code did not verify");
    }
    verify_us.sort_by(f64::total_cmp);
    let vpct = |p: f64| verify_us[((verify_us.len() - 1) as f64 * p).round() as usize];
    let per_rule: Vec<serde_json::Value> = engine
        .rules
        .services
        .iter()
        .zip(&eligible)
        .map(|(s, rows)| {
            let checksum = rows.iter().map(|r| u64::from(*r) + 1).sum::<u64>() % 2_147_483_647;
            serde_json::json!({"name": s.name, "eligible": rows.len(), "checksum": checksum})
        })
        .collect();
    let result = serde_json::json!({
        "residents": engine.population.len(),
        "rules": engine.rules.services.len(),
        "threads": threads,
        "day": day.to_string(),
        "table_build_ms": build_ms,
        "sweep_ms": sweep_ms,
        "table_build_ms_median": median(build_ms.clone()),
        "sweep_ms_median": median(sweep_ms.clone()),
        "change_us_p50": pct(0.5),
        "change_us_p99": pct(0.99),
        "change_us_max": change_us.last(),
        "changes": change_us.len(),
        "tasks_opened_by_changes": opened,
        "code_verify_us_p50": vpct(0.5),
        "code_verify_us_p99": vpct(0.99),
        "undecided": engine.undecided,
        "per_rule": per_rule,
    });
    std::fs::write(
        out.join("citybrain.json"),
        serde_json::to_vec_pretty(&result)?,
    )?;
    println!(
        "{} residents, {} rules, {threads} threads: table {:.0} ms + sweep {:.0} ms (median of {}); a fact change re-decided in {:.0} µs p50, {:.0} µs p99; a code verified offline in {:.0} µs p50, {:.0} µs p99",
        engine.population.len(),
        engine.rules.services.len(),
        median(build_ms),
        median(sweep_ms),
        runs.max(1),
        pct(0.5),
        pct(0.99),
        vpct(0.5),
        vpct(0.99)
    );
    Ok(())
}
