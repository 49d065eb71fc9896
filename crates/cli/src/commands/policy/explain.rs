//! `citybrain policy explain`: one enterprise's facts (a JSON object) against every policy
//! in a directory, decided clause by clause.

use std::path::Path;

use anyhow::{Context, Result};

use super::load_dir;

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
pub(super) fn explain(dir: &Path, facts_file: &Path, on: Option<&str>) -> Result<()> {
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
