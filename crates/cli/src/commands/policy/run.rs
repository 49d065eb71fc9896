//! `citybrain policy run`: the dry run of every policy in a directory over a CSV table of
//! enterprises, with the fast evaluator: the table read into its typed columns, then per
//! policy who qualifies and for how much, against its budget.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::load_dir;

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
pub(super) fn run(
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
