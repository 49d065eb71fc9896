//! `citybrain codes`: colour codes (健康码、人才码). `verify` checks a code offline, as a
//! scanner at a door or a desk does: the city's public key
//! (`GET /api/v1/services/codes/key`) and, when given, the list of revoked ids
//! (`GET /api/v1/services/codes/revoked`, saved as a file); no call to the city.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Verify a code offline: signature, expiry, revocation.
    Verify {
        /// The code (CB1....), or - to read it from stdin.
        code: String,
        /// The city's public key (base64url), as GET /api/v1/services/codes/key gives it.
        #[arg(long)]
        key: String,
        /// The revoked ids, as GET /api/v1/services/codes/revoked saved to a file (JSON),
        /// or one id a line.
        #[arg(long)]
        revoked: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Verify { code, key, revoked } => {
            let code = if code == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the code from stdin")?
            } else {
                code
            };
            let revoked: Vec<String> = match revoked {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    match serde_json::from_str::<serde_json::Value>(&text) {
                        Ok(v) => v["revoked"]
                            .as_array()
                            .context("the revocation file has no \"revoked\" list")?
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect(),
                        Err(_) => text.lines().map(|l| l.trim().to_string()).collect(),
                    }
                }
                None => Vec::new(),
            };
            let now = citybrain_server::now();
            let key = citybrain_services::codes::public_key(&key).map_err(|e| {
                anyhow::anyhow!("--key: {e}; give it as GET /api/v1/services/codes/key prints it")
            })?;
            match citybrain_services::codes::verify(&key, &code, now, &|id| {
                revoked.iter().any(|r| r == id)
            }) {
                Ok(p) => {
                    println!(
                        "valid: {} code {} for {} ({}), issued {}, valid until {} (id {})",
                        p.kind, p.value, p.name, p.id_number, p.issued_at, p.valid_until, p.id
                    );
                    Ok(())
                }
                Err(refused) => bail!(
                    "refused ({}): {refused}. Compare the key with GET /api/v1/services/codes/key; a revoked or expired code needs a new one from its issuer.",
                    refused.name()
                ),
            }
        }
    }
}
