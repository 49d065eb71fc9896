//! `citybrain up --config FILE`: where a node keeps what. Without a file (what `scripts/up`
//! runs) everything is embedded in the data directory; the file moves pieces onto the
//! distributed engines a city already runs (issue 25, docs/cluster.md): the log in NATS
//! JetStream, the catalog and governance in PostgreSQL, and sealed segments in a directory
//! every node shares, through which each node reads the whole cluster's records.

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
    #[serde(default)]
    catalog: CatalogSection,
    #[serde(default)]
    segments: SegmentsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentsSection {
    /// `local` (each node's own data directory, the default), `directory` (one every node
    /// shares) or `s3` (a bucket every node reads).
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    path: Option<std::path::PathBuf>,
    /// S3: the endpoint (`http://10.0.0.7:9000`; AWS's when absent), bucket, key prefix,
    /// region, and keys (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
    #[serde(default)]
    timeout_s: Option<u64>,
}

/// Where a cluster's sealed segments are shared, and what the query engine must register
/// to read them in place (object storage).
pub struct SharedSegments {
    pub store: Arc<dyn citybrain_hub::cluster::SegmentStore>,
    pub engine: Option<(String, Arc<dyn citybrain_objects::ObjectStore>)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogSection {
    /// `embedded` (SQLite files in the data directory, the default) or `postgres`.
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    timeout_s: Option<u64>,
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
        deployment.catalog()?;
        let shares = matches!(
            deployment.segments.backend.as_deref(),
            Some("directory" | "s3")
        );
        if shares && (deployment.log.backend != "jetstream" || deployment.catalog()?.is_none()) {
            bail!(
                "{}: shared [segments] need [log] backend = \"jetstream\" and [catalog] backend = \"postgres\": nodes read each other's records through the stream and the seals through the catalog (docs/cluster.md)",
                path.display()
            );
        }
        Ok(deployment)
    }

    /// Where the file shares sealed segments between nodes; None: each node keeps its own
    /// in its data directory, and reads only its own records.
    pub fn segments(&self) -> Result<Option<SharedSegments>> {
        let section = &self.segments;
        let backend = section.backend.as_deref().unwrap_or("local");
        let s3_only = [
            ("endpoint", section.endpoint.is_some()),
            ("bucket", section.bucket.is_some()),
            ("prefix", section.prefix.is_some()),
            ("region", section.region.is_some()),
            ("access_key_id", section.access_key_id.is_some()),
            ("secret_access_key", section.secret_access_key.is_some()),
            ("timeout_s", section.timeout_s.is_some()),
        ];
        if backend != "s3"
            && let Some((name, _)) = s3_only.iter().find(|(_, set)| *set)
        {
            bail!("[segments] {name} is for backend = \"s3\"");
        }
        match backend {
            "local" => {
                if section.path.is_some() {
                    bail!("[segments] path is for backend = \"directory\"");
                }
                Ok(None)
            }
            "directory" => {
                let Some(path) = &section.path else {
                    bail!(
                        "[segments] backend = \"directory\" needs path = \"/a/directory/every/node/mounts\""
                    );
                };
                let store = citybrain_hub::cluster::SegmentDirectory::new(path)
                    .with_context(|| format!("[segments] path: creating {}", path.display()))?;
                Ok(Some(SharedSegments {
                    store: Arc::new(store),
                    engine: None,
                }))
            }
            "s3" => {
                if section.path.is_some() {
                    bail!("[segments] path is for backend = \"directory\"");
                }
                let Some(bucket) = section.bucket.clone() else {
                    bail!("[segments] backend = \"s3\" needs bucket = \"NAME\"");
                };
                let key = |value: &Option<String>, env: &str| {
                    value
                        .clone()
                        .or_else(|| std::env::var(env).ok())
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "[segments] backend = \"s3\" needs {} (or {env} in the environment)",
                                env.trim_start_matches("AWS_").to_lowercase()
                            )
                        })
                };
                let mut prefix = section.prefix.clone().unwrap_or_default();
                if !prefix.is_empty() && !prefix.ends_with('/') {
                    prefix.push('/');
                }
                let timeout = section.timeout_s.unwrap_or(30);
                if !(1..=600).contains(&timeout) {
                    bail!("[segments] timeout_s must be 1 to 600");
                }
                let settings = citybrain_objects::Settings {
                    endpoint: section.endpoint.clone(),
                    bucket,
                    prefix,
                    region: section
                        .region
                        .clone()
                        .unwrap_or_else(|| "us-east-1".to_string()),
                    access_key_id: key(&section.access_key_id, "AWS_ACCESS_KEY_ID")?,
                    secret_access_key: key(&section.secret_access_key, "AWS_SECRET_ACCESS_KEY")?,
                    timeout: Duration::from_secs(timeout),
                };
                let store = Arc::new(citybrain_objects::S3Segments::connect(settings)?);
                Ok(Some(SharedSegments {
                    engine: Some(store.engine_store()),
                    store,
                }))
            }
            other => bail!(
                "[segments] backend = \"{other}\": the backends are \"local\" (the default), \"directory\" and \"s3\""
            ),
        }
    }

    /// The PostgreSQL database the file puts the catalog and governance in; None: SQLite
    /// in the data directory.
    pub fn catalog(&self) -> Result<Option<citybrain_metadb::Postgres>> {
        let section = &self.catalog;
        match section.backend.as_deref().unwrap_or("embedded") {
            "embedded" => {
                if section.url.is_some() || section.timeout_s.is_some() {
                    bail!("[catalog] url and timeout_s are for backend = \"postgres\"");
                }
                Ok(None)
            }
            "postgres" => {
                let Some(url) = &section.url else {
                    bail!(
                        "[catalog] backend = \"postgres\" needs url = \"postgresql://USER:PASSWORD@HOST:PORT/DATABASE\""
                    );
                };
                let mut pg = citybrain_metadb::Postgres::new(url.clone());
                if let Some(seconds) = section.timeout_s {
                    if !(1..=600).contains(&seconds) {
                        bail!("[catalog] timeout_s must be 1 to 600");
                    }
                    pg.timeout = Duration::from_secs(seconds);
                }
                pg.config()
                    .map_err(|e| anyhow::anyhow!("[catalog] url: {e}"))?;
                Ok(Some(pg))
            }
            other => bail!(
                "[catalog] backend = \"{other}\": the backends are \"embedded\" (SQLite, the default) and \"postgres\""
            ),
        }
    }

    /// Where the catalog is, as the data directory records it (`DATA/catalog.json`).
    fn catalog_place(&self) -> serde_json::Value {
        match self.catalog().ok().flatten() {
            Some(pg) => serde_json::json!({"backend": "postgres", "place": pg.shown()}),
            None => serde_json::json!({"backend": "embedded"}),
        }
    }

    /// Where the log is, as the data directory records it (`DATA/log.json`).
    fn log_place(&self) -> serde_json::Value {
        match self.log.backend.as_str() {
            "jetstream" => {
                let defaults = citybrain_jetstream::Settings::default();
                serde_json::json!({
                    "backend": "jetstream",
                    "url": self.log.url.clone().unwrap_or(defaults.url),
                    "stream": self.log.stream.clone().unwrap_or(defaults.stream),
                })
            }
            _ => serde_json::json!({"backend": "embedded"}),
        }
    }

    /// Checks that the data directory's unsealed records and catalog are where this
    /// deployment looks for them, and records where they will be. A directory whose log is
    /// in JetStream, started without that file, would not see its unsealed records (and a
    /// seal would never cover them); one whose catalog is in PostgreSQL would start empty
    /// beside its own segments: both refused, saying what to do.
    pub fn claim(&self, data: &Path) -> Result<()> {
        let log = self.log_place();
        let recorded = recorded(&data.join("log.json"));
        if recorded["backend"] == "jetstream" && log["backend"] != "jetstream" {
            bail!(
                "{}'s unsealed records are in NATS JetStream ({} stream {}): start with the deployment file that says so (--config), or, to return to the embedded log, delete {} once every dataset is sealed (docs/cluster.md)",
                data.display(),
                recorded["url"].as_str().unwrap_or("?"),
                recorded["stream"].as_str().unwrap_or("?"),
                data.join("log.json").display()
            );
        }
        let catalog = self.catalog_place();
        let recorded = self::recorded(&data.join("catalog.json"));
        if recorded["backend"] == "postgres" && catalog["backend"] != "postgres" {
            bail!(
                "{}'s catalog and governance are in {}: start with the deployment file that says so (--config); an embedded start would see none of its datasets, departments or tokens (docs/cluster.md)",
                data.display(),
                recorded["place"].as_str().unwrap_or("PostgreSQL"),
            );
        }
        record(data, "log.json", &log, log["backend"] == "jetstream")?;
        record(
            data,
            "catalog.json",
            &catalog,
            catalog["backend"] == "postgres",
        )
    }

    /// The shared log the file asks for, connected, as the log of the node whose data
    /// directory is `data`; None for the embedded log.
    pub fn shared_log(
        &self,
        data: &Path,
    ) -> Result<Option<Arc<dyn citybrain_hub::log::SharedLog>>> {
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
                    owner: node_id(data)?,
                };
                if !(1..=5).contains(&settings.replicas) {
                    bail!("[log] replicas must be 1 to 5 (JetStream's limit); 3 in a cluster");
                }
                // A chunk sent again is recognised by its message id only within the
                // stream's duplicate window (two minutes by default).
                if settings.timeout.is_zero() || settings.timeout > Duration::from_secs(110) {
                    bail!(
                        "[log] timeout_s must be 1 to 110: retries within it rely on JetStream's two-minute duplicate window"
                    );
                }
                if settings.stream.is_empty()
                    || !settings
                        .stream
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    bail!("[log] stream must be a JetStream stream name: letters, digits, _ and -");
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

/// The node's stable id (`DATA/node.json`, made at its first start with a shared log):
/// its frames' subjects in the stream start with it, so nodes sharing a stream never read
/// or purge each other's unsealed records. It moves with the data directory, as the
/// records it names do.
fn node_id(data: &Path) -> Result<String> {
    let path = data.join("node.json");
    if let Some(id) = recorded(&path)["id"].as_str() {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bail!(
                "{}: the node id {id:?} must be lower-case letters, digits and -",
                path.display()
            );
        }
        return Ok(id.to_string());
    }
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).context("drawing the node's id")?;
    let id: String = std::iter::once("node-".to_string())
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect();
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    std::fs::write(&path, serde_json::json!({ "id": id }).to_string() + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// What `path` records of a backend's place (null when nothing).
fn recorded(path: &Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Writes `place` to `DATA/file` when it is shared, or to replace an earlier record.
fn record(data: &Path, file: &str, place: &serde_json::Value, shared: bool) -> Result<()> {
    let path = data.join(file);
    if shared || path.exists() {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        std::fs::write(&path, place.to_string() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("deploy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", text.len()));
        std::fs::write(&path, text).unwrap();
        let result = Deployment::read(&path)
            .and_then(|d| d.segments().map(|_| d))
            .and_then(|d| d.shared_log(&dir).map(|_| ()));
        result.expect_err(text).to_string()
    }

    #[test]
    fn a_file_that_asks_for_what_is_not_there_is_refused_saying_what_is() {
        assert!(refused("[log]\nbackend = \"kafka\"\n").contains("\"embedded\""));
        assert!(refused("[segments]\nbucket = \"b\"\n").contains("for backend = \"s3\""));
        assert!(refused("[segments]\nbackend = \"nfs\"\n").contains("\"directory\""));
        assert!(refused("[segments]\nbackend = \"directory\"\n").contains("need [log]"));
        assert!(refused("[segments]\npath = \"/x\"\n").contains("backend = \"directory\""));
        assert!(refused("[catalog]\nurl = \"postgres://\"\n").contains("backend = \"postgres\""));
        assert!(refused("[catalog]\nbackend = \"postgres\"\n").contains("needs url"));
        assert!(refused("[catalog]\nbackend = \"mysql\"\n").contains("\"postgres\""));
        assert!(
            refused("[catalog]\nbackend = \"postgres\"\nurl = \"postgresql://a@b:99999/c\"\n")
                .contains("[catalog] url")
        );
        assert!(refused("[log]\nurll = \"x\"\n").contains("unknown field"));
        assert!(refused("[log]\nurl = \"nats://x\"\n").contains("jetstream"));
        let jetstream = "[log]\nbackend = \"jetstream\"\n";
        assert!(refused(&format!("{jetstream}replicas = 7\n")).contains("1 to 5"));
        assert!(refused(&format!("{jetstream}timeout_s = 600\n")).contains("duplicate window"));
        assert!(refused(&format!("{jetstream}stream = \"a.b\"\n")).contains("stream name"));
    }

    #[test]
    fn no_file_is_the_embedded_log() {
        let dir = std::env::temp_dir();
        assert!(Deployment::default().shared_log(&dir).unwrap().is_none());
    }
}
