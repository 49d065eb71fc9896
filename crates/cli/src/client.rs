//! How a command talks to a running server: where the server is and which token file to
//! read ([`ServerArgs`], flattened into every client command), one authenticated HTTP call
//! ([`request`]) with its JSON shorthands ([`get`], [`post`]), and the writing of the token
//! files that `up` leaves in the data directory for clients ([`ensure_token_file`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use citybrain_gov::Gov;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The citybrain server.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "CITYBRAIN_SERVER"
    )]
    server: String,
    /// File holding the bearer token.
    #[arg(
        long,
        default_value = "./citybrain-data/admin.token",
        env = "CITYBRAIN_TOKEN_FILE"
    )]
    token_file: PathBuf,
}

/// One HTTP call with the bearer token; API errors are shown with their message.
pub fn request(
    server: &ServerArgs,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Vec<u8>> {
    request_with(server, method, path, body, &[])
}

/// [`request`] with extra headers (`Idempotency-Key`).
pub fn request_with(
    server: &ServerArgs,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> Result<Vec<u8>> {
    let token = std::fs::read_to_string(&server.token_file)
        .with_context(|| {
            format!(
                "reading the token from {} (start the server with `citybrain up`, or pass --token-file)",
                server.token_file.display()
            )
        })?
        .trim()
        .to_string();
    let url = format!("{}{}", server.server.trim_end_matches('/'), path);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let auth = format!("Bearer {token}");
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
        ("POST", None) => agent.post(&url).header("Authorization", &auth).send_empty(),
        (m, Some((content_type, bytes))) => {
            let req = if m == "PUT" {
                agent.put(&url)
            } else {
                agent.post(&url)
            };
            let mut req = req
                .header("Authorization", &auth)
                .header("Content-Type", content_type);
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            req.send(&bytes[..])
        }
        (m, None) => bail!("{m} needs a body"),
    }
    .with_context(|| {
        format!(
            "could not reach citybrain at {}; is `citybrain up` running?",
            server.server
        )
    })?;
    let status = response.status();
    let bytes = response
        .into_body()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()?;
    if !status.is_success() {
        let answer = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
        let mut message = answer
            .as_ref()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        // A refused batch lists its bad records: show the first few.
        if let Some(problems) = answer
            .as_ref()
            .and_then(|v| v.pointer("/details/problems"))
            .and_then(|p| p.as_array())
        {
            for p in problems.iter().take(5) {
                message.push_str(&format!(
                    "\n  line {} of the request, field '{}': {}",
                    p["line"],
                    p["field"].as_str().unwrap_or("-"),
                    p["reason"].as_str().unwrap_or("")
                ));
            }
            if problems.len() > 5 {
                message.push_str(&format!("\n  … and {} more", problems.len() - 5));
            }
        }
        bail!("the server answered {status}: {message}");
    }
    Ok(bytes)
}

/// A GET whose answer is JSON.
pub fn get(server: &ServerArgs, path: &str) -> Result<Value> {
    Ok(serde_json::from_slice(&request(
        server, "GET", path, None,
    )?)?)
}

/// A POST of a JSON body whose answer is JSON.
pub fn post(server: &ServerArgs, path: &str, body: Value) -> Result<Value> {
    let bytes = request(
        server,
        "POST",
        path,
        Some(("application/json", body.to_string().into_bytes())),
    )?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// The hub admin's token, in DATA/admin.token (mode 0600): issued on first start, and
/// again whenever the file is missing or no longer valid.
pub fn ensure_token_file(
    gov: &Gov,
    path: &Path,
    issue: impl FnOnce() -> Result<citybrain_gov::IssuedToken>,
) -> Result<()> {
    if let Ok(token) = std::fs::read_to_string(path)
        && gov
            .authenticate(token.trim(), citybrain_server::now())
            .is_ok()
    {
        return Ok(());
    }
    let issued = issue()?;
    citybrain_gov::write_private(path, issued.token.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
