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
pub fn gen_economy(seed: u64, scale: f64, out: &Path, fen: bool) -> Result<()> {
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

/// Reads the columns `policies` need from a CSV table (`enterprise_id` and the facts) into
/// the fast evaluator's typed columns, streaming: the file is never held as text.
fn load_table(
    path: &Path,
    policies: &[&citybrain_rules::syntax::PolicyAst],
) -> Result<(Vec<String>, citybrain_rules::fast::Table)> {
    use citybrain_rules::syntax::{Type, parse_decimal};
    // The type each column is read as; two policies reading one column as different types
    // is a mistake in the policies, not the data.
    let mut want: Vec<(String, Type, String)> = Vec::new();
    for p in policies {
        for input in &p.inputs {
            let ty = match input.ty {
                Type::MoneyExact => Type::Money,
                t => t,
            };
            match want.iter().find(|(n, _, _)| *n == input.name) {
                Some((_, t, by)) if *t != ty => bail!(
                    "policies {by} and {} read column {} as {} and as {}",
                    p.id,
                    input.name,
                    t.name(),
                    ty.name()
                ),
                Some(_) => {}
                None => want.push((input.name.clone(), ty, p.id.clone())),
            }
        }
    }
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let at = |name: &str| {
        header.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no column {name} (the header has {})",
                path.display(),
                header.join(", ")
            )
        })
    };
    let ids_at = at("enterprise_id")?;
    let cols: Vec<(usize, Type)> = want
        .iter()
        .map(|(n, t, _)| at(n).map(|i| (i, *t)))
        .collect::<Result<_>>()?;
    let mut table = citybrain_rules::fast::Table::new(0);
    let mut ints: Vec<Vec<i64>> = vec![Vec::new(); cols.len()];
    let mut rates: Vec<Vec<citybrain_rules::eval::Ratio>> = vec![Vec::new(); cols.len()];
    let mut ids = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut row = 1usize;
    let signed = |t: &str| {
        parse_decimal(t.trim_start_matches('-')).map(|d| {
            if t.starts_with('-') {
                (-d.num, d.scale)
            } else {
                (d.num, d.scale)
            }
        })
    };
    while reader
        .read_record(&mut record)
        .with_context(|| format!("{}: row {}", path.display(), row + 1))?
    {
        row += 1;
        ids.push(record.get(ids_at).unwrap_or("").to_string());
        for (k, (i, ty)) in cols.iter().enumerate() {
            let c = record.get(*i).unwrap_or("");
            let bad =
                |e: String| anyhow::anyhow!("{}: row {row}, {}: {e}", path.display(), header[*i]);
            let v: i64 = match ty {
                Type::Bool => match c {
                    "true" => 1,
                    "false" => 0,
                    _ => return Err(bad(format!("{c:?} is not true or false"))),
                },
                Type::Text => table.code(c),
                Type::Date => i64::from(
                    citybrain_core::Date::parse(c)
                        .map_err(|e| bad(e.to_string()))?
                        .0,
                ),
                Type::Int => c
                    .parse()
                    .map_err(|_| bad(format!("{c:?} is not a whole number")))?,
                Type::Money | Type::MoneyExact => match signed(c) {
                    Some((num, scale)) if scale <= 2 => i64::try_from(num * 10i128.pow(2 - scale))
                        .map_err(|_| bad(format!("{c:?} is too large")))?,
                    _ => {
                        return Err(bad(format!(
                            "{c:?} is not an amount in yuan with at most two decimals"
                        )));
                    }
                },
                Type::Rate => {
                    let (t, pct) = match c.strip_suffix('%') {
                        Some(t) => (t, 2),
                        None => (c, 0),
                    };
                    match signed(t).and_then(|(n, s)| {
                        citybrain_rules::eval::Ratio::checked(n, 10i128.checked_pow(s + pct)?)
                    }) {
                        Some(r) => {
                            rates[k].push(r);
                            continue;
                        }
                        None => return Err(bad(format!("{c:?} is not a rate (0.15 or 15%)"))),
                    }
                }
            };
            ints[k].push(v);
        }
    }
    let mut out = citybrain_rules::fast::Table::new(ids.len());
    // Codes were given out by the loading table: carry them over in order.
    for w in table.words() {
        out.code(w);
    }
    for (k, ((name, ty, _), (_, _))) in want.iter().zip(&cols).enumerate() {
        let v = std::mem::take(&mut ints[k]);
        match ty {
            Type::Bool => out.add_bool(name, v.into_iter().map(|x| x != 0).collect()),
            Type::Text => out.add_text_codes(name, v),
            Type::Date => out.add_date(name, v.into_iter().map(|x| x as i32).collect()),
            Type::Int => out.add_int(name, v),
            Type::Money | Type::MoneyExact => out.add_money(name, v),
            Type::Rate => out.add_rate(name, std::mem::take(&mut rates[k])),
        }?;
    }
    Ok((ids, out))
}

/// Every policy in `dir` against every enterprise in a CSV table (`enterprise_id` and the
/// facts), with the fast evaluator on `threads` threads: per policy, how many qualify and
/// how much they would receive, against its budget. Decisions go to `out` as NDJSON.
pub fn run(
    dir: &Path,
    table: &Path,
    out: Option<&Path>,
    summary: Option<&Path>,
    threads: usize,
) -> Result<()> {
    use citybrain_rules::matching::run_all;
    let policies = load_dir(dir)?;
    let asts: Vec<&citybrain_rules::syntax::PolicyAst> =
        policies.iter().map(|(_, p)| &p.ast).collect();
    let started = std::time::Instant::now();
    let (ids, table) = load_table(table, &asts)?;
    let rows = table.rows();
    let loaded = started.elapsed();
    let t = std::time::Instant::now();
    // Payouts are kept only where needed: to share a budget (always), or to write them.
    let (results, not_compiled) = run_all(&asts, &table, threads, |_| out.is_some());
    let decided = t.elapsed();
    for (id, why) in &not_compiled {
        eprintln!("note: {id} runs through the (slower) batch evaluator: {why}");
    }
    let mut sink = match out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    println!(
        "{:<26} {:>10} {:>20} {:>20} {:>18}  errors",
        "policy", "eligible", "qualified for", "paid", "budget"
    );
    let fen = |x: i128| citybrain_rules::eval::yuan(citybrain_core::Fen(x as i64));
    let (mut all_eligible, mut all_total) = (0u64, 0i128);
    let mut lines = Vec::new();
    for (ast, r) in asts.iter().zip(&results) {
        if let Some(w) = sink.as_mut() {
            for (row, claim, pay) in &r.payouts {
                std::io::Write::write_fmt(
                    w,
                    format_args!(
                        "{{\"enterprise_id\":{},\"policy\":\"{}\",\"qualified_fen\":{},\"paid_fen\":{}}}\n",
                        serde_json::Value::String(ids[*row as usize].clone()),
                        ast.id,
                        claim.0,
                        pay.0
                    ),
                )?;
            }
        }
        println!(
            "{:<26} {:>10} {:>20} {:>20} {:>18}  {}",
            ast.id,
            r.eligible,
            fen(r.asked),
            fen(r.paid),
            r.budget.map_or("-".to_string(), |(b, rule)| format!(
                "{} {}",
                fen(i128::from(b.0)),
                match rule {
                    citybrain_rules::syntax::BudgetRule::ProRata => "pro rata",
                    citybrain_rules::syntax::BudgetRule::FirstCome => "first come",
                }
            )),
            match &r.first_error {
                Some((row, e)) => format!("{} (first: {}: {e})", r.errors, ids[*row]),
                None => r.errors.to_string(),
            },
        );
        all_eligible += r.eligible;
        all_total += r.paid;
        lines.push(serde_json::json!({
            "id": ast.id,
            "eligible": r.eligible,
            "asked_fen": r.asked as i64,
            "paid_fen": r.paid as i64,
            "errors": r.errors,
            "checksum": r.checksum,
        }));
    }
    if let Some(mut w) = sink {
        std::io::Write::flush(&mut w)?;
    }
    if let Some(path) = summary {
        let doc = serde_json::json!({
            "enterprises": rows,
            "threads": threads,
            "load_seconds": loaded.as_secs_f64(),
            "decide_seconds": decided.as_secs_f64(),
            "not_compiled": not_compiled,
            "policies": lines,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{} policies × {rows} enterprises: {all_eligible} decisions to pay, {} in all; read the table in {:.2} s, decided in {:.3} s on {threads} threads",
        policies.len(),
        fen(all_total),
        loaded.as_secs_f64(),
        decided.as_secs_f64()
    );
    Ok(())
}

/// Writes `count` policies made from the templates in `from`: the templates themselves
/// first, then copies with their parameters and budgets varied (×0.6 to ×1.6, whole yuan,
/// rates to a tenth of a percent) under new ids. The copies leave the tests to their
/// template (the expected amounts would no longer hold). For matching at the scale of a
/// real programme: Hangzhou's 亲清在线 ran 467 policies.
pub fn variants(from: &Path, count: usize, seed: u64, out: &Path) -> Result<()> {
    let templates = load_dir(from)?;
    if templates.is_empty() {
        bail!("{} holds no .policy files", from.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut factor = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        0.6 + (state % 1001) as f64 / 1000.0
    };
    for i in 0..count {
        let (path, policy) = &templates[i % templates.len()];
        let round = i / templates.len();
        let text = std::fs::read_to_string(path)?;
        let id = &policy.ast.id;
        let name = if round == 0 {
            id.clone()
        } else {
            format!("{id}_v{round:03}")
        };
        let body = if round == 0 {
            text
        } else {
            let mut lines = vec![format!(
                "# Generated by `citybrain policy variants` from {}.policy (variant {round}):\n# parameters and budget varied; the template keeps the tests.",
                id
            )];
            for line in text.lines() {
                if line.starts_with("test ") {
                    break;
                }
                let line = if line.starts_with("policy ") {
                    format!("policy {name}")
                } else if let Some(rest) = line.strip_prefix("title ") {
                    format!("title {} (variant {round})\"", rest.trim_end_matches('"'))
                } else if line.starts_with("param ") || line.starts_with("budget ") {
                    vary(line, factor())
                } else {
                    line.to_string()
                };
                lines.push(line);
            }
            lines.join("\n") + "\n"
        };
        std::fs::write(out.join(format!("{name}.policy")), body)?;
    }
    // What was written must load.
    let written = load_dir(out)?;
    println!(
        "{} policies written to {} ({} templates)",
        written.len(),
        out.display(),
        templates.len()
    );
    Ok(())
}

/// A parameter or budget line with its value times `f`.
fn vary(line: &str, f: f64) -> String {
    let (head, value) = match line.split_once(" = ") {
        Some((h, v)) => (format!("{h} = "), v.trim()),
        None => match line.strip_prefix("budget ") {
            Some(v) => ("budget ".to_string(), v.trim()),
            None => return line.to_string(),
        },
    };
    let (amount, tail) = match value.split_once(' ') {
        Some((a, t)) => (a, format!(" {t}")),
        None => (value, String::new()),
    };
    let varied = if let Some(pct) = amount.strip_suffix('%') {
        match pct.parse::<f64>() {
            Ok(p) => format!("{:.1}%", (p * f * 10.0).round() / 10.0),
            Err(_) => return line.to_string(),
        }
    } else if tail.starts_with(" yuan") {
        match amount.parse::<f64>() {
            Ok(y) if y >= 10.0 => format!("{:.2}", (y * f).round()),
            Ok(y) => format!("{:.2}", (y * f * 100.0).round() / 100.0),
            Err(_) => return line.to_string(),
        }
    } else if amount.bytes().all(|b| b.is_ascii_digit()) {
        match amount.parse::<u64>() {
            Ok(n) => ((n as f64 * f).round() as u64).max(1).to_string(),
            Err(_) => return line.to_string(),
        }
    } else {
        return line.to_string();
    };
    format!("{head}{varied}{tail}")
}

/// Prints a payout run's report (the server's JSON) as a table.
pub fn print_pay_report(bytes: &[u8]) -> Result<()> {
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
