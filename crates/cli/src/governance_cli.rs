//! The governance subcommands: thin calls to the API, printed as tables.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::{AuditCommand, DepartmentsCommand, GrantsCommand, PrincipalsCommand, TokensCommand};
use crate::client::{ServerArgs, get, post, request};

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

/// A timestamp field (microseconds) as RFC 3339, or `-`.
fn when(v: &Value) -> String {
    v.as_i64().map_or("-".to_string(), |us| {
        citybrain_core::Timestamp(us).to_string()
    })
}

pub fn departments(command: DepartmentsCommand) -> Result<()> {
    match command {
        DepartmentsCommand::List { server } => {
            println!("{:<20} name", "id");
            for d in list(&get(&server, "/api/v1/departments")?, "departments") {
                println!("{:<20} {}", text(d, "id"), text(d, "name"));
            }
        }
        DepartmentsCommand::Create { id, name, server } => {
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

pub fn principals(command: PrincipalsCommand) -> Result<()> {
    match command {
        PrincipalsCommand::List { server } => {
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
        PrincipalsCommand::Create {
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

pub fn tokens(command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Issue {
            principal,
            expires_in_days,
            out,
            server,
        } => {
            let issued = post(
                &server,
                &format!("/api/v1/principals/{principal}/tokens"),
                json!({"expires_in_days": expires_in_days}),
            )?;
            let token = text(&issued, "token");
            match out {
                Some(path) => {
                    citybrain_gov::write_private(&path, token.as_bytes())?;
                    println!(
                        "token {} for {principal} written to {} (shown nowhere else)",
                        text(&issued, "id"),
                        path.display()
                    );
                }
                None => {
                    println!("{token}");
                    eprintln!(
                        "token {} for {principal}: keep it now, it is not shown again",
                        text(&issued, "id")
                    );
                }
            }
        }
        TokensCommand::List { server } => {
            println!(
                "{:<10} {:<24} {:<28} {:<28} revoked",
                "id", "principal", "created", "expires"
            );
            for t in list(&get(&server, "/api/v1/tokens")?, "tokens") {
                println!(
                    "{:<10} {:<24} {:<28} {:<28} {}",
                    text(t, "id"),
                    text(t, "principal"),
                    when(&t["created_at"]),
                    when(&t["expires_at"]),
                    when(&t["revoked_at"])
                );
            }
        }
        TokensCommand::Revoke {
            id,
            keep_issued,
            server,
        } => {
            let answer = request(
                &server,
                "DELETE",
                &format!("/api/v1/tokens/{id}?cascade={}", !keep_issued),
                None,
            )?;
            println!("revoked token {id}");
            let with_it: Vec<String> = serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["revoked_with_it"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if !with_it.is_empty() {
                println!("revoked with it (issued with it): {}", with_it.join(", "));
            }
        }
    }
    Ok(())
}

pub fn grants(command: GrantsCommand) -> Result<()> {
    let decide = |server: &ServerArgs, id: i64, verb: &str, reason: String| -> Result<()> {
        let grant = post(
            server,
            &format!("/api/v1/grants/{id}/{verb}"),
            json!({"reason": reason}),
        )?;
        println!(
            "grant #{id} on {} for {}: {}",
            text(&grant, "dataset"),
            text(&grant, "department"),
            text(&grant, "state")
        );
        Ok(())
    };
    match command {
        GrantsCommand::List { server } => {
            println!(
                "{:>4} {:<32} {:<16} {:<10} {:<28} purpose",
                "id", "dataset", "department", "status", "expires"
            );
            for g in list(&get(&server, "/api/v1/grants")?, "grants") {
                println!(
                    "{:>4} {:<32} {:<16} {:<10} {:<28} {}",
                    g["id"].as_i64().unwrap_or(0),
                    text(g, "dataset"),
                    text(g, "department"),
                    text(g, "status"),
                    when(&g["expires_at"]),
                    text(g, "purpose")
                );
            }
        }
        GrantsCommand::Request {
            dataset,
            purpose,
            fields,
            raw,
            days,
            server,
        } => {
            let grant = post(
                &server,
                "/api/v1/grants",
                json!({"dataset": dataset, "purpose": purpose, "fields": fields, "raw": raw, "days": days}),
            )?;
            println!(
                "requested grant #{} on {dataset}; its owner approves it with `citybrain grants approve {}`",
                grant["id"], grant["id"]
            );
        }
        GrantsCommand::Approve { id, reason, server } => decide(&server, id, "approve", reason)?,
        GrantsCommand::Refuse { id, reason, server } => decide(&server, id, "refuse", reason)?,
        GrantsCommand::Revoke { id, reason, server } => decide(&server, id, "revoke", reason)?,
    }
    Ok(())
}

pub fn audit(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { data } => {
            let key = citybrain_gov::Gov::audit_key(&data)?;
            let report = citybrain_gov::audit::verify(&data.join(citybrain_gov::AUDIT_DIR), &key)?;
            if report.is_intact() {
                println!(
                    "audit trail intact: {} records, chain and MACs check out{}",
                    report.records,
                    report
                        .head
                        .as_ref()
                        .map(|h| format!("; head = record {} mac {}", h.seq, h.mac))
                        .unwrap_or_default()
                );
            } else {
                for problem in &report.problems {
                    eprintln!("  {problem}");
                }
                bail!(
                    "the audit trail was tampered with or damaged ({} problems shown above, {} records readable)",
                    report.problems.len(),
                    report.records
                )
            }
        }
        AuditCommand::WhoRead {
            dataset,
            limit,
            server,
        } => {
            let answer = get(
                &server,
                &format!("/api/v1/datasets/{dataset}/audit?limit={limit}"),
            )?;
            println!(
                "{:<28} {:<20} {:<16} {:<7} {:<8} {:>8}  fields / purpose",
                "at", "principal", "department", "kind", "outcome", "rows"
            );
            for c in list(&answer, "calls") {
                let fields: Vec<&str> = list(c, "datasets")
                    .filter(|t| text(t, "dataset") == dataset)
                    .flat_map(|t| list(t, "fields").filter_map(Value::as_str))
                    .collect();
                // Whatever a caller wrote is shown escaped: a newline must not forge a row,
                // nor an escape sequence rewrite the terminal.
                println!(
                    "{:<28} {:<20} {:<16} {:<7} {:<8} {:>8}  {} / {}",
                    printable(text(c, "at")),
                    printable(text(c, "principal")),
                    printable(text(c, "department")),
                    printable(text(c, "kind")),
                    printable(text(c, "outcome")),
                    c["rows"],
                    printable(&fields.join(",")),
                    printable(text(c, "purpose"))
                );
            }
        }
    }
    Ok(())
}

/// `text` with control characters and direction overrides written as `\u{..}` escapes.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if citybrain_gov::is_unprintable(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn caller_written_text_cannot_forge_rows_or_drive_the_terminal() {
        assert_eq!(
            super::printable("ok\n2026 forged\u{1b}[2J\u{202e}"),
            "ok\\u{a}2026 forged\\u{1b}[2J\\u{202e}"
        );
        assert_eq!(super::printable("交通 ok"), "交通 ok");
    }
}
