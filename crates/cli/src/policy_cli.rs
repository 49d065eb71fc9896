//! `citybrain policy ...`: rules as code for policy delivery.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Loads every `.policy` file under `dir` (or one file), type-checks it and runs its
/// in-file tests; prints every problem as `file:line:col: message`.
pub fn check(dir: &Path) -> Result<()> {
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

/// A fact from JSON, as the input's type wants it: money in yuan (a string such as
/// "1234.56" keeps it exact), rates as decimals ("0.15") or percent strings ("15%").
fn fact(
    ty: citybrain_rules::syntax::Type,
    v: &serde_json::Value,
) -> Result<citybrain_rules::Value, String> {
    use citybrain_rules::Value;
    use citybrain_rules::eval::Ratio;
    use citybrain_rules::syntax::{Type, parse_decimal};
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        other => return Err(format!("{other} is not a {}", ty.name())),
    };
    let decimal = |t: &str| {
        parse_decimal(t.trim_start_matches('-')).map(|d| {
            if t.starts_with('-') {
                (-d.num, d.scale)
            } else {
                (d.num, d.scale)
            }
        })
    };
    match ty {
        Type::Bool => text
            .parse()
            .map(Value::Bool)
            .map_err(|_| format!("{text:?} is not true or false")),
        Type::Text => Ok(Value::Text(text)),
        Type::Date => citybrain_core::Date::parse(&text)
            .map(Value::Date)
            .map_err(|e| e.to_string()),
        Type::Int => text
            .parse::<i128>()
            .map(|n| Value::Num(Ratio::int(n)))
            .map_err(|_| format!("{text:?} is not a whole number")),
        Type::Money | Type::MoneyExact => match decimal(&text) {
            Some((num, scale)) if scale <= 2 => {
                Ok(Value::Num(Ratio::int(num * 10i128.pow(2 - scale))))
            }
            _ => Err(format!(
                "{text:?} is not an amount in yuan with at most two decimals"
            )),
        },
        Type::Rate => {
            let (t, pct) = match text.strip_suffix('%') {
                Some(t) => (t.to_string(), 2),
                None => (text.clone(), 0),
            };
            match decimal(&t) {
                Some((num, scale)) => Ratio::checked(num, 10i128.pow(scale + pct))
                    .map(Value::Num)
                    .ok_or_else(|| format!("{text:?} is too large")),
                None => Err(format!("{text:?} is not a rate (0.15 or \"15%\")")),
            }
        }
    }
}

/// One enterprise (facts as a JSON object) against every policy in `dir`: eligible or not,
/// clause by clause with the values read, the amount and any exception.
pub fn explain(dir: &Path, facts_file: &Path, on: Option<&str>) -> Result<()> {
    let policies = load_dir(dir)?;
    let text = std::fs::read_to_string(facts_file)
        .with_context(|| format!("reading {}", facts_file.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not JSON", facts_file.display()))?;
    let obj = json.as_object().with_context(|| {
        format!(
            "{}: give the facts as one JSON object",
            facts_file.display()
        )
    })?;
    let on = on.map(citybrain_core::Date::parse).transpose()?;
    let started = std::time::Instant::now();
    let mut lines = Vec::new();
    let (mut eligible, mut total) = (0, 0i64);
    for (_, policy) in &policies {
        let ast = &policy.ast;
        let header = format!("{}  {}  ({})", ast.id, ast.title, ast.department);
        let mut facts = std::collections::HashMap::new();
        let mut missing = Vec::new();
        for input in &ast.inputs {
            match obj.get(&input.name) {
                None => missing.push(input.name.clone()),
                Some(v) => {
                    let value = fact(input.ty, v).map_err(|e| {
                        anyhow::anyhow!("{}: {}: {e}", facts_file.display(), input.name)
                    })?;
                    facts.insert(input.name.clone(), value);
                }
            }
        }
        if !missing.is_empty() {
            lines.push(format!(
                "{header}\n  ? not assessed: the facts lack {}",
                missing.join(", ")
            ));
            continue;
        }
        let day = on
            .or(ast.effective.map(|e| e.0))
            .unwrap_or(citybrain_core::Date(0));
        let d = citybrain_rules::decide(ast, &facts, day)?;
        let mut out = header;
        match d.amount {
            Some(a) if d.eligible => {
                eligible += 1;
                total += a.0;
                out.push_str(&format!(
                    "\n  ✓ eligible: {}",
                    citybrain_rules::eval::yuan(a)
                ));
                if let Some(ex) = &d.exception {
                    out.push_str(&format!(
                        " (exception {ex}; the base rule gave {})",
                        d.base_amount
                            .map_or("-".into(), citybrain_rules::eval::yuan)
                    ));
                }
            }
            _ => out.push_str("\n  ✗ not eligible"),
        }
        for c in &d.clauses {
            let values: Vec<String> = c.values.iter().map(|(n, v)| format!("{n} = {v}")).collect();
            out.push_str(&format!(
                "\n    {} {}: {}",
                if c.held { "✓" } else { "✗" },
                c.name,
                values.join(", ")
            ));
        }
        lines.push(out);
    }
    let took = started.elapsed();
    for l in &lines {
        println!("{l}\n");
    }
    println!(
        "{} policies: eligible for {eligible}, {} in all (explained in {:.2} ms)",
        policies.len(),
        citybrain_rules::eval::yuan(citybrain_core::Fen(total)),
        took.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Writes a synthetic economy (enterprises and their facts) as CSV.
pub fn gen_economy(seed: u64, scale: f64, out: &Path) -> Result<()> {
    let firms = ((citybrain_gen::economy::FIRMS_AT_SCALE_1 as f64) * scale)
        .round()
        .max(1.0) as u64;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    citybrain_gen::economy::write_csv(seed, firms, &mut w)?;
    std::io::Write::flush(&mut w)?;
    println!("{firms} enterprises written to {}", out.display());
    Ok(())
}

/// Every policy in `dir` against every enterprise in a CSV table (`enterprise_id` and the
/// facts), with the batch evaluator on `threads` threads: per policy, how many qualify and
/// how much they would receive, against its budget. Decisions go to `out` as NDJSON.
pub fn run(dir: &Path, table: &Path, out: Option<&Path>, threads: usize) -> Result<()> {
    use citybrain_rules::batch::{Column, decide_all};
    use citybrain_rules::syntax::Type;
    let policies = load_dir(dir)?;
    let started = std::time::Instant::now();
    let mut reader =
        csv::Reader::from_path(table).with_context(|| format!("reading {}", table.display()))?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let mut raw: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    for (n, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: row {}", table.display(), n + 2))?;
        for (i, cell) in record.iter().enumerate().take(header.len()) {
            raw[i].push(cell.to_string());
        }
    }
    let rows = raw.first().map_or(0, Vec::len);
    let loaded = started.elapsed();
    let ids_at = header
        .iter()
        .position(|h| h == "enterprise_id")
        .context("the table has no enterprise_id column")?;
    // Typed columns, built once per (name, type) and shared by the policies.
    let mut typed: std::collections::HashMap<(String, &'static str), Column> = Default::default();
    let mut column = |name: &str, ty: Type| -> Result<Column> {
        if let Some(c) = typed.get(&(name.to_string(), ty.name())) {
            return Ok(c.clone());
        }
        let at = header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no column {name}", table.display()))?;
        let cells = &raw[at];
        let bad = |row: usize, e: String| {
            anyhow::anyhow!("{}: row {}, {name}: {e}", table.display(), row + 2)
        };
        let c = match ty {
            Type::Bool => Column::Bool(
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        c.parse()
                            .map_err(|_| bad(i, format!("{c:?} is not true or false")))
                    })
                    .collect::<Result<_>>()?,
            ),
            Type::Text => Column::Text(cells.clone()),
            Type::Date => Column::Date(
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        citybrain_core::Date::parse(c)
                            .map(|d| d.0)
                            .map_err(|e| bad(i, e.to_string()))
                    })
                    .collect::<Result<_>>()?,
            ),
            Type::Int => Column::Int(
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        c.parse()
                            .map_err(|_| bad(i, format!("{c:?} is not a whole number")))
                    })
                    .collect::<Result<_>>()?,
            ),
            Type::Money | Type::MoneyExact => Column::Money(
                cells
                    .iter()
                    .enumerate()
                    .map(
                        |(i, c)| match fact(Type::Money, &serde_json::Value::String(c.clone())) {
                            Ok(citybrain_rules::Value::Num(r)) => {
                                i64::try_from(r.num).map_err(|_| bad(i, "too large".into()))
                            }
                            Ok(_) => Err(bad(i, "not money".into())),
                            Err(e) => Err(bad(i, e)),
                        },
                    )
                    .collect::<Result<_>>()?,
            ),
            Type::Rate => Column::Rate(
                cells
                    .iter()
                    .enumerate()
                    .map(
                        |(i, c)| match fact(Type::Rate, &serde_json::Value::String(c.clone())) {
                            Ok(citybrain_rules::Value::Num(r)) => Ok(r),
                            Ok(_) => Err(bad(i, "not a rate".into())),
                            Err(e) => Err(bad(i, e)),
                        },
                    )
                    .collect::<Result<_>>()?,
            ),
        };
        typed.insert((name.to_string(), ty.name()), c.clone());
        Ok(c)
    };
    let mut sink = match out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let mut decide_time = std::time::Duration::ZERO;
    println!(
        "{:<26} {:>10} {:>20} {:>20} {:>18}  errors",
        "policy", "eligible", "qualified for", "paid", "budget"
    );
    let (mut all_eligible, mut all_total) = (0u64, 0i64);
    for (_, policy) in &policies {
        let ast = &policy.ast;
        let mut columns = std::collections::HashMap::new();
        for input in &ast.inputs {
            columns.insert(input.name.clone(), column(&input.name, input.ty)?);
        }
        let on = ast.effective.map_or(citybrain_core::Date(0), |e| e.0);
        let t = std::time::Instant::now();
        let outcomes = decide_all(ast, &columns, on, threads)?;
        decide_time += t.elapsed();
        let (mut claims, mut rows_paid, mut errors) = (Vec::new(), Vec::new(), 0u64);
        for (i, o) in outcomes.iter().enumerate() {
            match o {
                Ok(o) if o.eligible => {
                    claims.push(o.amount.unwrap_or(citybrain_core::Fen(0)));
                    rows_paid.push(i);
                }
                Ok(_) => {}
                Err(_) => errors += 1,
            }
        }
        let budget = ast
            .budget
            .as_ref()
            .and_then(|b| citybrain_rules::eval::constant(b).ok())
            .and_then(|v| match v {
                citybrain_rules::Value::Num(r) if r.den == 1 => i64::try_from(r.num).ok(),
                _ => None,
            });
        // Rows are in application order: the table's order.
        let paid = match budget {
            Some(b) => {
                citybrain_rules::budget::allocate(&claims, citybrain_core::Fen(b), ast.budget_rule)
            }
            None => claims.clone(),
        };
        let eligible = claims.len() as u64;
        let asked: i64 = claims.iter().map(|c| c.0).sum();
        let total: i64 = paid.iter().map(|c| c.0).sum();
        if let Some(w) = sink.as_mut() {
            for ((row, claim), pay) in rows_paid.iter().zip(&claims).zip(&paid) {
                std::io::Write::write_fmt(
                    w,
                    format_args!(
                        "{{\"enterprise_id\":{},\"policy\":\"{}\",\"qualified_fen\":{},\"paid_fen\":{}}}\n",
                        raw[ids_at][*row], ast.id, claim.0, pay.0
                    ),
                )?;
            }
        }
        println!(
            "{:<26} {:>10} {:>20} {:>20} {:>18}  {}",
            ast.id,
            eligible,
            citybrain_rules::eval::yuan(citybrain_core::Fen(asked)),
            citybrain_rules::eval::yuan(citybrain_core::Fen(total)),
            budget.map_or("-".to_string(), |b| format!(
                "{} {}",
                citybrain_rules::eval::yuan(citybrain_core::Fen(b)),
                match ast.budget_rule {
                    citybrain_rules::syntax::BudgetRule::ProRata => "pro rata",
                    citybrain_rules::syntax::BudgetRule::FirstCome => "first come",
                }
            )),
            errors,
        );
        all_eligible += eligible;
        all_total += total;
    }
    if let Some(mut w) = sink {
        std::io::Write::flush(&mut w)?;
    }
    println!(
        "{} policies × {rows} enterprises: {all_eligible} decisions to pay, {} in all; read the table in {:.2} s, decided in {:.2} s on {threads} threads",
        policies.len(),
        citybrain_rules::eval::yuan(citybrain_core::Fen(all_total)),
        loaded.as_secs_f64(),
        decide_time.as_secs_f64()
    );
    Ok(())
}
