//! `citybrain up --config FILE`: where a node keeps what. Without a file (what `scripts/up`
//! runs) everything is embedded in the data directory; the file moves pieces onto the
//! distributed engines a city already runs (issue 25, docs/cluster.md). Today: the log in
//! NATS JetStream. The catalog, governance and ledgers in PostgreSQL and segments in
//! object storage are not built yet, and the file refuses them by name rather than
//! ignoring them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    #[serde(default)]
    log: LogSection,
    /// Named so that a file written for a later version fails clearly.
    catalog: Option<toml::Value>,
    segments: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    /// `embedded` (files in the data directory) or `jetstream`.
    #[serde(default = "LogSection::embedded")]
    backend: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    replicas: Option<usize>,
    #[serde(default)]
    timeout_s: Option<u64>,
}

impl LogSection {
    fn embedded() -> String {
        "embedded".into()
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            backend: Self::embedded(),
            url: None,
            stream: None,
            replicas: None,
            timeout_s: None,
        }
    }
}

impl Deployment {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the deployment file {}", path.display()))?;
        let deployment: Deployment = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}(docs/cluster.md lists what the file takes)",
                path.display()
            )
        })?;
        if deployment.catalog.is_some() || deployment.segments.is_some() {
            bail!(
                "{}: [catalog] (PostgreSQL) and [segments] (object storage) are not built yet; \
                 only [log] is (docs/cluster.md)",
                path.display()
            );
        }
        Ok(deployment)
    }

    /// The shared log the file asks for, connected; None for the embedded log.
    pub fn shared_log(&self) -> Result<Option<Arc<dyn citybrain_hub::log::SharedLog>>> {
        let log = &self.log;
        match log.backend.as_str() {
            "embedded" => {
                if log.url.is_some() || log.stream.is_some() || log.replicas.is_some() {
                    bail!("[log] url, stream and replicas are for backend = \"jetstream\"");
                }
                Ok(None)
            }
            "jetstream" => {
                let defaults = citybrain_jetstream::Settings::default();
                let settings = citybrain_jetstream::Settings {
                    url: log.url.clone().unwrap_or(defaults.url),
                    stream: log.stream.clone().unwrap_or(defaults.stream),
                    replicas: log.replicas.unwrap_or(defaults.replicas),
                    timeout: log
                        .timeout_s
                        .map(Duration::from_secs)
                        .unwrap_or(defaults.timeout),
                };
                if !(1..=5).contains(&settings.replicas) {
                    bail!("[log] replicas must be 1 to 5 (JetStream's limit); 3 in a cluster");
                }
                let shared = citybrain_jetstream::JetStreamLog::connect(settings)?;
                Ok(Some(Arc::new(shared)))
            }
            other => bail!(
                "[log] backend = \"{other}\": the backends are \"embedded\" (the default) and \"jetstream\""
            ),
        }
    }
}
