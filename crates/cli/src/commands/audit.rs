//! `citybrain audit`: check the audit trail offline, or see who touched a dataset; and
//! `printable`, which keeps what callers wrote from forging rows of its tables.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{list, text};
use crate::client::{ServerArgs, get};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check the whole trail (offline, on the data directory): any edited, deleted,
    /// reordered or cut-off record is reported. Exits 1 if the trail is not intact.
    ///
    /// With the hub's secret (the operator, on the server's data directory) every MAC is
    /// checked. With `--public-key` (a department or an outside auditor, on a copy of the
    /// audit directory) no secret is needed: the public hash chain and the signed head are
    /// checked instead.
    Verify {
        /// The server's data directory, or a copy of its `audit` directory.
        #[arg(long, default_value = "./citybrain-data")]
        data: PathBuf,
        /// Check with this public key only (64 hex digits, or a file holding them, e.g.
        /// the trail's `public.key` as published by `citybrain audit key` or
        /// GET /api/v1/audit/key): no secret is read.
        #[arg(long, value_name = "KEY|FILE")]
        public_key: Option<String>,
        /// A head saved earlier (GET /api/v1/audit/head as JSON); it must still be in the
        /// trail, which catches a trail cut back to an older head. Repeat for several.
        #[arg(long, value_name = "FILE")]
        head: Vec<PathBuf>,
        /// A cluster's deployment file (`up --config`): with `[catalog] backend =
        /// "postgres"` the trail checked is the cluster's one chain in that database (the
        /// secret still comes from --data, unless --public-key is given).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the public key that checks the trail's signed heads (offline, from the data
    /// directory; a server gives the same at GET /api/v1/audit/key).
    Key {
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

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Verify {
            data,
            public_key,
            head,
            config,
        } => {
            let shared = match &config {
                Some(path) => super::deploy::Deployment::read(path)?.catalog()?,
                None => None,
            };
            verify(
                &Trail::find(&data, shared)?,
                &data,
                public_key.as_deref(),
                &head,
            )?;
        }
        Command::Key { data } => {
            let key = citybrain_gov::Gov::audit_key(&data)?;
            println!("{}", citybrain_gov::audit::public_key_hex(&key));
        }
        Command::WhoRead {
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

fn kept_heads(kept: &[PathBuf]) -> Result<Vec<citybrain_gov::audit::Head>> {
    let mut heads = Vec::new();
    for path in kept {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the kept head {}", path.display()))?;
        let head: citybrain_gov::audit::Head =
            serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a head (save GET /api/v1/audit/head as it comes)",
                    path.display()
                )
            })?;
        heads.push(head);
    }
    Ok(heads)
}

fn public_key_arg(key: &str) -> Result<citybrain_gov::audit::VerifyingKey> {
    let text = if key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()) {
        key.to_string()
    } else {
        std::fs::read_to_string(key).with_context(|| {
            format!("--public-key {key} is neither 64 hex digits nor a readable file")
        })?
    };
    Ok(citybrain_gov::audit::parse_public_key(&text)?)
}

/// Where the trail to check is: a node's directory, or a cluster's database.
enum Trail {
    Dir(PathBuf),
    Shared(citybrain_metadb::Postgres),
}

impl Trail {
    /// The trail under `data` (a data directory or a copy of its audit directory), or the
    /// cluster's when the deployment file puts it in PostgreSQL.
    fn find(data: &Path, shared: Option<citybrain_metadb::Postgres>) -> Result<Self> {
        if let Some(pg) = shared {
            return Ok(Self::Shared(pg));
        }
        let trail = if data.join(citybrain_gov::audit::LOG_FILE).exists() {
            data.to_path_buf()
        } else {
            data.join(citybrain_gov::AUDIT_DIR)
        };
        if !trail.join(citybrain_gov::audit::LOG_FILE).exists() {
            bail!(
                "no audit trail at {} (expected {}): pass --data with the server's data directory or a copy of its audit directory; a cluster's trail is in PostgreSQL (--config)",
                trail.display(),
                citybrain_gov::audit::LOG_FILE
            );
        }
        Ok(Self::Dir(trail))
    }

    fn verify(&self, key: &[u8]) -> Result<citybrain_gov::audit::Verification> {
        Ok(match self {
            Self::Dir(dir) => citybrain_gov::audit::verify(dir, key)?,
            Self::Shared(pg) => citybrain_gov::audit::verify_shared(pg, key)?,
        })
    }

    fn verify_public(
        &self,
        public: &citybrain_gov::audit::VerifyingKey,
        heads: &[citybrain_gov::audit::Head],
    ) -> Result<citybrain_gov::audit::Verification> {
        Ok(match self {
            Self::Dir(dir) => citybrain_gov::audit::verify_public(dir, public, heads)?,
            Self::Shared(pg) => citybrain_gov::audit::verify_shared_public(pg, public, heads)?,
        })
    }

    fn shown(&self) -> String {
        match self {
            Self::Dir(dir) => dir.display().to_string(),
            Self::Shared(pg) => pg.shown(),
        }
    }
}

fn verify(trail: &Trail, data: &Path, public_key: Option<&str>, kept: &[PathBuf]) -> Result<()> {
    let heads = kept_heads(kept)?;
    let (report, how) = match public_key {
        Some(key) => (
            trail.verify_public(&public_key_arg(key)?, &heads)?,
            "public hashes and signed head check out with the public key",
        ),
        None => {
            let key = citybrain_gov::Gov::audit_key(data)?;
            if !heads.is_empty() {
                let public = citybrain_gov::audit::parse_public_key(
                    &citybrain_gov::audit::public_key_hex(&key),
                )?;
                let kept = trail.verify_public(&public, &heads)?;
                if !kept.is_intact() {
                    for problem in &kept.problems {
                        eprintln!("  {problem}");
                    }
                    bail!("the audit trail does not hold the kept heads");
                }
            }
            (trail.verify(&key)?, "chain and MACs check out")
        }
    };
    report_on(&report, how, heads.len(), &trail.shown())
}

/// Prints a check's outcome; an error when the trail is not intact.
fn report_on(
    report: &citybrain_gov::audit::Verification,
    how: &str,
    kept: usize,
    place: &str,
) -> Result<()> {
    if report.is_intact() {
        println!(
            "audit trail intact: {} records, {how}{}{}",
            report.records,
            report
                .head
                .as_ref()
                .map(|h| format!("; head = record {} sha {}", h.seq, h.sha))
                .unwrap_or_default(),
            if kept == 0 {
                String::new()
            } else {
                format!("; {} kept heads found in the trail", kept)
            }
        );
        Ok(())
    } else {
        for problem in &report.problems {
            eprintln!("  {problem}");
        }
        bail!(
            "the audit trail was tampered with or damaged ({} problems shown above, {} records readable, in {place})",
            report.problems.len(),
            report.records
        )
    }
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
