//! `citybrain up`: the server. Opens (or creates) the data directory, issues the admin's
//! token file, checks the policies, sets up the demo city unless `--no-demo` (`crate::demo`),
//! then serves the API, the cockpit and every scene until SIGINT or SIGTERM, with a
//! Mosquitto of its own for `--mqtt`. Also the bounds that keep one caller from taking the
//! server down (`LimitArgs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use citybrain_gov::Gov;
use citybrain_hub::{DatasetDef, Hub, HubConfig};

use crate::{client, demo};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Serve HTTPS with this PEM certificate (chain) instead of plain HTTP: use it whenever
    /// the server listens beyond loopback, since tokens travel in every request.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also speak the PostgreSQL wire protocol here (e.g. 127.0.0.1:5433), for psql,
    /// BI tools and drivers: user = principal name, password = its token (docs/interop.md).
    #[arg(long, value_name = "ADDR")]
    pg_listen: Option<String>,
    /// Serve the Postgres wire over TLS with this PEM certificate (chain); logins without
    /// TLS are then refused, since a token is a password.
    #[arg(long, value_name = "FILE", requires_all = ["pg_listen", "pg_tls_key"])]
    pg_tls_cert: Option<PathBuf>,
    /// The PEM private key of --pg-tls-cert.
    #[arg(long, value_name = "FILE", requires = "pg_tls_cert")]
    pg_tls_key: Option<PathBuf>,
    /// Data directory.
    #[arg(long, default_value = "./citybrain-data")]
    data: PathBuf,
    /// The deployment file: which backends hold what (`[log] backend = "jetstream"` puts
    /// the log in NATS JetStream; docs/cluster.md). Without one, everything is embedded in
    /// the data directory.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The city profile (default: citybrain.toml in the data directory, written by
    /// `citybrain init`; without one, the demo city's: Hangzhou, Asia/Shanghai, 浙A).
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Do not create or load the demo city (a data directory with another city's profile
    /// never gets it).
    #[arg(long)]
    no_demo: bool,
    /// Size of the demo city (1.0 = 20,000 vehicles).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Generate the demo city on this road network (CBEngine text format) with the data
    /// directory's profile (its plates, its zone) instead of Hangzhou's: a demo of your
    /// own city, or of a second one (tests/data/nanchang).
    #[arg(long, value_name = "FILE")]
    demo_network: Option<PathBuf>,
    /// The demo city's day (YYYY-MM-DD; default today, in the city's zone). Today's runs
    /// live: what happened before now is loaded, the rest arrives as the day goes on. A
    /// past day is loaded whole. A data directory keeps the day it was first made for.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    demo_day: Option<citybrain_core::Date>,
    /// Start the demo clock at this local time of the demo day (HH:MM) instead of now: for
    /// a past day too, which then runs live from there.
    #[arg(long, value_name = "HH:MM", value_parser = parse_hhmm)]
    demo_from: Option<u32>,
    /// Demo seconds per second: 60 runs an hour a minute.
    #[arg(long, default_value_t = 1.0)]
    demo_speed: f64,
    /// Largest accepted request body in MiB.
    #[arg(long, default_value_t = 256)]
    body_limit_mib: usize,
    /// Seal a dataset's unsealed records into Parquet once they number this many.
    #[arg(long, default_value_t = 1_000_000)]
    seal_rows: usize,
    /// Keep every dataset that may leave the hub's governance (readable by every
    /// department, no personal field, or its owner's `open_table = true`) as a Delta Lake
    /// table in this directory, for Spark, Trino, DuckDB or pandas (docs/interop.md).
    #[arg(long, value_name = "DIR")]
    open_tables: Option<PathBuf>,
    /// Take berth sensor messages (FIWARE ParkingSpot/OffStreetParking) over MQTT from a
    /// Mosquitto that citybrain starts on a free loopback port (Debian: apt-get install
    /// mosquitto).
    #[arg(long)]
    mqtt: bool,
    /// Take them from this broker (HOST:PORT) instead of starting one.
    #[arg(long, value_name = "HOST:PORT")]
    mqtt_broker: Option<String>,
    /// Control the signals of this SUMO network (.net.xml), co-simulated in SUMO as the
    /// city's field (with --signals-routes); emergency runs via POST /api/v1/signals/emergency.
    #[arg(long, requires = "signals_routes")]
    signals_net: Option<PathBuf>,
    /// The demand for the co-simulation (a SUMO .rou.xml).
    #[arg(long, requires = "signals_net")]
    signals_routes: Option<PathBuf>,
    /// Simulated seconds per second.
    #[arg(long, default_value_t = 1.0)]
    signals_speed: f64,
    /// The sumo binary (default: $SUMO_HOME/bin/sumo, scripts/install-sumo's venv, or PATH).
    #[arg(long)]
    sumo: Option<PathBuf>,
    /// Deliver the policies in this directory (.policy files) through
    /// POST /api/v1/policy/runs (default: the twenty shipped with citybrain).
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Run the service rules in this directory (.policy files and services.toml of
    /// deadlines; docs/services.md) instead of the eighteen shipped with citybrain.
    #[arg(long)]
    services: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        listen,
        pg_listen,
        pg_tls_cert,
        pg_tls_key,
        tls_cert,
        tls_key,
        data,
        config,
        profile,
        no_demo,
        scale,
        demo_network,
        demo_day,
        demo_from,
        demo_speed,
        body_limit_mib,
        seal_rows,
        open_tables,
        mqtt,
        mqtt_broker,
        signals_net,
        signals_routes,
        signals_speed,
        sumo,
        policies,
        services,
        limits,
    } = args;
    let pg_tls = match pg_tls_cert.zip(pg_tls_key) {
        Some((cert, key)) => Some(citybrain_pg::Tls::from_config(
            citybrain_server::tls_identity(&cert, &key, b"postgresql").map_err(|e| {
                anyhow::anyhow!(
                    "{e} (--pg-tls-cert takes a PEM certificate, --pg-tls-key its PEM private key)"
                )
            })?,
        )),
        None => None,
    };
    let mut limits = limits;
    limits.tls = match tls_cert.zip(tls_key) {
        Some((cert, key)) => Some(
            citybrain_server::HttpTls::from_pem_files(&cert, &key).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (--tls-cert takes a PEM certificate, --tls-key its PEM private key)"
                )
            })?,
        ),
        None => None,
    };
    let deployment = match &config {
        Some(path) => super::deploy::Deployment::read(path)?,
        None => super::deploy::Deployment::default(),
    };
    deployment.claim(&data)?;
    let shared_log = deployment.shared_log(&data)?;
    if let Some(shared) = &shared_log {
        println!("The log is in {}.", shared.describe());
    }
    let catalog = deployment.catalog()?;
    if let Some(pg) = &catalog {
        println!("The catalog and governance are in {}.", pg.shown());
    }
    let (segments, engine_store) = match deployment.segments()? {
        Some(shared) => {
            println!(
                "Sealed segments are shared in {}; every node reads the whole cluster's records.",
                shared.store.describe()
            );
            (Some(shared.store), shared.engine)
        }
        None => (None, None),
    };
    let (city, city_from) = match profile {
        Some(path) => (
            citybrain_hub::profile::read_profile(&path).map_err(anyhow::Error::msg)?,
            path.display().to_string(),
        ),
        None => match citybrain_hub::profile::load_profile(&data).map_err(anyhow::Error::msg)? {
            Some(city) => (
                city,
                data.join(citybrain_hub::profile::PROFILE_FILE)
                    .display()
                    .to_string(),
            ),
            None => (
                citybrain_core::CityProfile::hangzhou(),
                "the demo city's (`citybrain init` writes your own)".to_string(),
            ),
        },
    };
    // The demo is Hangzhou's data: another city's directory does not get it mixed in.
    let demo_city = citybrain_core::CityProfile::hangzhou();
    let demo_refused = !no_demo && city.name != demo_city.name && demo_network.is_none();
    let zone = city.time_zone.clone();
    if demo_refused {
        println!(
            "The demo city ({}) is not loaded into {}'s data directory.",
            demo_city.name, city.name
        );
    }
    up(
        &listen,
        pg_listen.as_deref().map(|a| (a, pg_tls)),
        &data,
        (city.clone(), city_from),
        (!no_demo && !demo_refused).then_some(demo::DemoCity {
            scale,
            network: demo_network,
            profile: city,
            day: demo_day,
            from: demo_from,
            speed: demo_speed,
        }),
        body_limit_mib,
        &limits,
        HubConfig {
            seal_rows,
            zone,
            open_tables,
            shared_log,
            catalog,
            segments,
        },
        engine_store,
        Mqtt::choose(mqtt, mqtt_broker)?,
        signals_net
            .zip(signals_routes)
            .map(|(net, routes)| SignalsArgs {
                net,
                routes,
                speed: signals_speed,
                sumo: super::signals::find_sumo(sumo),
            }),
        (policies.as_deref(), services.as_deref()),
    )
}

/// Bounds that keep one caller from taking the server down (docs/security.md).
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Seconds a SQL statement may run before it is cancelled.
    #[arg(long, default_value_t = 60)]
    sql_timeout_s: u64,
    /// Memory SQL operators (sorts, joins, aggregations) may reserve, in MiB.
    #[arg(long, default_value_t = 2048)]
    sql_memory_mib: usize,
    /// Rows a SQL result (or a read or export) may have.
    #[arg(long, default_value_t = 10_000_000)]
    sql_max_rows: usize,
    /// MiB a SQL result may take in memory.
    #[arg(long, default_value_t = 512)]
    sql_max_result_mib: usize,
    /// SQL statements one department may have running or waiting at once (HTTP and the
    /// Postgres wire together); one more is refused with 429 sql_department_busy.
    #[arg(long, default_value_t = 16)]
    sql_per_department: usize,
    /// Memory, in MiB, the SQL operators of one department's statements in flight may
    /// reserve together (HTTP and the Postgres wire); past it: 507 sql_department_memory.
    #[arg(long, default_value_t = 4096)]
    sql_department_memory_mib: usize,
    /// MiB of segment footers and statistics SQL keeps across statements (five sevenths
    /// footers, two statistics); each seal adds a file's worth until the oldest go.
    #[arg(long, default_value_t = 70)]
    sql_cache_mib: usize,
    /// Requests per second one principal may make, sustained; over it: 429 rate_limited
    /// with Retry-After. 0 turns the limit off.
    #[arg(long, default_value_t = 10_000)]
    rate_per_principal: u32,
    /// Requests one principal may make above its rate in a burst.
    #[arg(long, default_value_t = 20_000)]
    rate_burst: u32,
    /// Event streams (GET /api/v1/indices/stream) open at once; one more: 503
    /// too_many_streams.
    #[arg(long, default_value_t = 1_024)]
    max_event_streams: usize,
    /// Connections open at once (default: half the descriptor limit, at most 4096).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers (and a kept-alive connection may
    /// sit idle).
    #[arg(long, default_value_t = 20)]
    header_timeout_s: u64,
    /// Records one ingest call may carry (a small Parquet body can decode to millions).
    #[arg(long, default_value_t = 16_777_216)]
    max_ingest_rows: u64,
    /// MiB the records of one ingest call may take once decoded.
    #[arg(long, default_value_t = 2048)]
    max_ingest_mib: u64,
    /// HTTPS, from --tls-cert and --tls-key.
    #[arg(skip)]
    tls: Option<citybrain_server::HttpTls>,
}

impl LimitArgs {
    fn sql(&self) -> citybrain_sql::SqlLimits {
        citybrain_sql::SqlLimits {
            timeout: std::time::Duration::from_secs(self.sql_timeout_s.max(1)),
            memory_bytes: self.sql_memory_mib << 20,
            max_result_rows: self.sql_max_rows,
            max_result_bytes: self.sql_max_result_mib << 20,
            max_per_department: self.sql_per_department.max(1),
            department_memory_bytes: self.sql_department_memory_mib << 20,
            cache_bytes: self.sql_cache_mib << 20,
            ..Default::default()
        }
    }

    fn ingest(&self) -> citybrain_hub::IngestLimits {
        citybrain_hub::IngestLimits {
            max_rows: self.max_ingest_rows.max(1),
            max_bytes: self.max_ingest_mib.max(1) << 20,
        }
    }

    fn connections(&self) -> citybrain_server::ConnLimits {
        let mut limits = citybrain_server::ConnLimits::default();
        if let Some(n) = self.max_connections {
            limits.max_connections = n.max(1);
        }
        limits.header_timeout = std::time::Duration::from_secs(self.header_timeout_s.max(1));
        limits.rate_per_principal = self.rate_per_principal;
        limits.rate_burst = self.rate_burst;
        limits.max_event_streams = self.max_event_streams.max(1);
        limits.tls = self.tls.clone();
        limits
    }
}

/// Where berth sensor messages come from, if anywhere.
#[derive(Debug)]
enum Mqtt {
    Off,
    /// Start a Mosquitto of our own.
    Local,
    Broker(String, u16),
}

impl Mqtt {
    fn choose(local: bool, broker: Option<String>) -> Result<Self> {
        Ok(match (local, broker) {
            (_, Some(address)) => {
                let (host, port) = address
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
                    .with_context(|| format!("--mqtt-broker '{address}' is not HOST:PORT"))?;
                Self::Broker(host, port)
            }
            (true, None) => Self::Local,
            (false, None) => Self::Off,
        })
    }
}

/// The live signal scene's settings (`up --signals-net ... --signals-routes ...`).
struct SignalsArgs {
    net: PathBuf,
    routes: PathBuf,
    speed: f64,
    sumo: PathBuf,
}

/// The dataset policy runs read by default (`market.enterprises`), created empty so a
/// city can publish into it; and the policies checked before the server starts, so a
/// mistake in one stops `up` with its line instead of leaving the scene failed.
fn prepare_policies(hub: &Hub, dir: Option<&Path>) -> Result<()> {
    let (file, text) = citybrain_gen::economy::DEFINITION;
    let def = DatasetDef::from_file_text(file, text).map_err(anyhow::Error::msg)?;
    if !hub.names().contains(&def.name) {
        hub.create_dataset(def, citybrain_server::now())?;
    }
    citybrain_server::scenes::policy::load(dir).map_err(anyhow::Error::msg)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn up(
    listen: &str,
    pg_listen: Option<(&str, Option<citybrain_pg::Tls>)>,
    data: &Path,
    (city, city_from): (citybrain_core::CityProfile, String),
    demo_city: Option<demo::DemoCity>,
    body_limit_mib: usize,
    limits: &LimitArgs,
    config: HubConfig,
    engine_store: Option<(String, Arc<dyn citybrain_objects::ObjectStore>)>,
    mqtt: Mqtt,
    signals: Option<SignalsArgs>,
    (policies, services): (Option<&Path>, Option<&Path>),
) -> Result<()> {
    let started = std::time::Instant::now();
    let signals_args_shown = signals
        .as_ref()
        .map(|a| (a.net.display().to_string(), a.speed));
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    let catalog = config.catalog.clone();
    let hub = Arc::new(
        Hub::open(data, config)
            .context("opening the data directory")?
            .with_ingest_limits(limits.ingest()),
    );
    if catalog.is_some() {
        // What other nodes create, change or delete in the shared catalog, every two
        // seconds (docs/cluster.md).
        let hub = hub.clone();
        std::thread::Builder::new()
            .name("catalog-sync".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(2));
                    match hub.sync_catalog() {
                        Ok(changed) if !changed.is_empty() => tracing::info!(
                            message = "Took other nodes' dataset changes from the shared catalog.",
                            datasets = %changed.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(
                            message = "Could not read the shared catalog; trying again.",
                            error = %e
                        ),
                    }
                }
            })
            .context("starting the catalog's sync")?;
    }
    let gov = Arc::new(
        Gov::open_with(data, catalog.as_ref(), citybrain_server::now())
            .context("opening governance in the data directory")?,
    );
    client::ensure_token_file(&gov, &data.join("admin.token"), || {
        Ok(gov.issue_admin_token(citybrain_server::now())?)
    })?;
    prepare_policies(&hub, policies)?;
    // Checked before the server starts, so a mistake stops `up` with its file and line.
    citybrain_server::scenes::services::load_rules(services).map_err(|problems| {
        anyhow::anyhow!(
            "the service rules do not load (check them with `citybrain services check DIR`):\n  {}",
            problems.join("\n  ")
        )
    })?;
    citybrain_server::scenes::warnings::load_rules(&data.join(citybrain_server::scenes::warnings::RULES_DIR))
        .map_err(|problems| {
            anyhow::anyhow!(
                "the warning rules in {} do not load (fix them, or move the folder away to run the shipped ones; docs/warnings.md):\n  {}",
                data.join(citybrain_server::scenes::warnings::RULES_DIR).display(),
                problems.join("\n  ")
            )
        })?;
    let forms = citybrain_server::scenes::forms::dir(data);
    citybrain_server::scenes::forms::load(&forms).map_err(|problems| {
        anyhow::anyhow!(
            "the form templates in {} do not load (fix them, or move the folder away to use the shipped ones; docs/forms.md):\n  {}",
            forms.display(),
            problems.join("\n  ")
        )
    })?;
    citybrain_server::scenes::create_datasets(&hub).map_err(anyhow::Error::msg)?;
    let demo = demo_city.is_some();
    let replay = match &demo_city {
        Some(demo_city) => Some(demo::load(&hub, &gov, data, demo_city)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The last handles on the hub and governance are dropped here, outside the runtime:
    // in a cluster they own runtimes of their own (the shared log's, PostgreSQL's), which
    // may not be dropped on an async thread.
    let keep = (hub.clone(), gov.clone());
    let done = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen} (is another server running? pass --listen ADDR)"))?;
        let address = listener.local_addr()?;
        let (pg_listener, pg_tls) = match pg_listen {
            Some((pg, tls)) => (Some(tokio::net::TcpListener::bind(pg).await.with_context(|| {
                format!("listening for the Postgres wire on {pg} (is PostgreSQL or another citybrain on it? pass another --pg-listen ADDR)")
            })?), tls),
            None => (None, None),
        };
        let pg_tls_on = pg_tls.is_some();
        let mut sql = citybrain_sql::SqlEngine::new(hub.clone(), limits.sql())
            .with_gov(gov.clone());
        if let Some((url, store)) = engine_store {
            sql = sql
                .with_object_store(&url, store)
                .map_err(|e| anyhow::anyhow!("[segments]: {e}"))?;
        }
        let pg_server = citybrain_pg::PgServer {
            sql: sql.clone(),
            gov: gov.clone(),
            tls: pg_tls,
        };
        let config = citybrain_server::scene::SceneConfig {
            signals: signals.map(|a| citybrain_server::scenes::signals::SignalsConfig {
                net: a.net,
                routes: a.routes,
                speed: a.speed,
                sumo: a.sumo,
            }),
            policies: policies.map(Path::to_path_buf),
            services: services.map(Path::to_path_buf),
            data_dir: data.to_path_buf(),
            city: city.clone(),
            address: format!(
                "{}://{address}",
                if limits.tls.is_some() { "https" } else { "http" }
            ),
        };
        let state = citybrain_server::AppState::start(
            hub.clone(),
            sql,
            gov,
            config,
            body_limit_mib << 20,
            limits.connections(),
        )
        .await;
        let replay_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let replay_line = replay.as_ref().map(|r| (r.left(), r.day(), r.is_live()));
        let replaying = replay.map(|r| r.spawn(hub.clone(), replay_stop.clone()));
        if demo {
            demo::pay_last_period(&state).await?;
            demo::recognise_planted(&state, data).await?;
            demo::cockpits(&state, data).await?;
        }
        let (mut mosquitto, broker) = match mqtt {
            Mqtt::Off => (None, None),
            Mqtt::Local => {
                let (child, port) = citybrain_server::mqtt::start_mosquitto(data).map_err(anyhow::Error::msg)?;
                (Some(child), Some(("127.0.0.1".to_string(), port)))
            }
            Mqtt::Broker(host, port) => (None, Some((host, port))),
        };
        // Berth sensors for the parking scene, and the feed mappings that name a topic.
        let feeds = citybrain_server::mqtt::declared_feeds(&hub);
        let mut parking_sensors = false;
        if let Some((host, port)) = &broker {
            match state.scenes.handle::<citybrain_server::scenes::parking::LiveParking>("parking") {
                Ok(_) => {
                    parking_sensors = true;
                    citybrain_server::mqtt::spawn(
                        state.clone(),
                        citybrain_server::mqtt::MqttSource {
                            host: host.clone(),
                            port: *port,
                            topic: "citybrain/parking/#".into(),
                        },
                    );
                }
                Err(error) if feeds.is_empty() => {
                    bail!("--mqtt takes berth sensors for the parking scene, and {error}; or feeds whose mapping names an mqtt_topic, and no dataset has one");
                }
                Err(_) => {}
            }
            if !feeds.is_empty() {
                citybrain_server::mqtt::spawn_feeds(state.clone(), host, *port, feeds.clone());
            }
        }
        // Each dataset once; its dead-letter twin is part of it.
        let datasets = hub.names().iter().filter(|n| !n.is_rejected()).count();
        let scheme = if limits.tls.is_some() { "https" } else { "http" };
        println!("citybrain is up on {scheme}://{address}/ (ready in {:.1} s)", started.elapsed().as_secs_f64());
        println!("  data directory: {}  ({datasets} datasets)", data.display());
        if let Some((left, day, live)) = replay_line {
            if live {
                println!("  demo day:       {day}, live: {left} more records arrive as the day goes on (--demo-speed N runs it N times faster)");
            } else {
                println!("  demo day:       {day}, a recorded day, loaded whole (a fresh data directory makes today's, live)");
            }
        }
        println!(
            "  city:           {} ({}, local plates {}) from {city_from}",
            city.name,
            city.time_zone,
            if city.plate_prefixes.is_empty() { "none".to_string() } else { city.plate_prefixes.join(" ") }
        );
        if !citybrain_server::cockpit_built() {
            println!("  cockpit:        not built into this binary (start with scripts/up, or run cockpit/build and rebuild)");
        } else if demo {
            // The token goes in the URL's fragment, which browsers never send to the server;
            // it is read from its file by the shell so it is never printed here.
            println!(
                "  cockpit:        {scheme}://{address}/   signed in as the demo reader: xdg-open \"{scheme}://{address}/#token=$(cat {})\"",
                data.join("cockpit.token").display()
            );
        } else {
            println!("  cockpit:        {scheme}://{address}/  (sign in with a token)");
        }
        if citybrain_server::cockpit_built() {
            println!(
                "  cockpits:       {scheme}://{address}/#/cockpits, one file per role in {} (`citybrain cockpits --help`)",
                citybrain_server::cockpits::dir(data).display()
            );
        }
        println!("  admin token:    {} (send it as 'Authorization: Bearer ...')", data.join("admin.token").display());
        if demo {
            println!("  cockpit token:  {} (reader in city_office: plates masked by its grant)", data.join("cockpit.token").display());
            println!(
                "  market token:   {} (admin in market; the demo paid run {}: `citybrain policy pay --run {}` again pays no one twice)",
                data.join("market.token").display(),
                demo::LAST_RUN,
                demo::LAST_RUN
            );
        }
        if demo {
            println!(
                "  hospital token: {} (a doctor at hz_first_people: POST /api/v1/medical/recognise; docs/medical.md)",
                data.join("hospital.token").display()
            );
            println!(
                "  grid token:     {} (a grid worker in community: GET /api/v1/services/tasks?grid=C0001-G1; docs/services.md)",
                data.join("grid.token").display()
            );
            println!(
                "  desk token:     {} (the West Lake Hotel's front desk: POST /api/v1/verify/checkin; docs/services.md)",
                data.join("desk.token").display()
            );
        }
        println!("  API:            {scheme}://{address}/api/v1/openapi.json   health: {scheme}://{address}/health");
        println!("  live indices:   {scheme}://{address}/api/v1/indices/traffic/live  (SSE: /api/v1/indices/stream; tables: indices.*)");
        if let Some(args) = &signals_args_shown {
            println!("  signals:        {} under citybrain's control in SUMO at {}× (emergency runs: POST /api/v1/signals/emergency; tables: signals.*)", args.0, args.1);
        }
        if let Some(pg) = pg_listener {
            let pg_address = pg.local_addr()?;
            let cockpit_token = data.join("cockpit.token");
            let tls = if pg_tls_on { "?sslmode=require" } else { "" };
            if demo {
                let url = format!("postgresql://cockpit@{pg_address}/citybrain{tls}");
                println!(
                    "  Postgres wire:  {url}  (password: the token; psql: PGPASSWORD=$(cat {}) psql {url})",
                    cockpit_token.display()
                );
            } else {
                println!("  Postgres wire:  postgresql://PRINCIPAL@{pg_address}/citybrain{tls}  (password: the principal's token)");
            }
            tokio::spawn(citybrain_pg::serve(pg, pg_server, state.closed()));
        }
        if let Some((host, port)) = &broker {
            if parking_sensors {
                println!("  MQTT sensors:   mqtt://{host}:{port}  topic citybrain/parking/# (FIWARE ParkingSpot or OffStreetParking, QoS 1)");
            }
            for feed in &feeds {
                println!("  MQTT feed:      mqtt://{host}:{port}  topic {} -> {} through mapping {} (JSON per message, QoS 1)", feed.topic, feed.dataset, feed.mapping);
            }
        }
        if demo {
            println!(
                "  try:            CITYBRAIN_TOKEN_FILE={} citybrain sql \"SELECT checkpoint_id, count(*) AS passages FROM transport.anpr_passages GROUP BY 1 ORDER BY 2 DESC LIMIT 3\"",
                data.join("cockpit.token").display()
            );
        } else {
            println!("  next:           citybrain departments create transport   (then principals, tokens, datasets)");
        }
        citybrain_server::run(listener, state, shutdown_signal()).await?;
        replay_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(replaying) = replaying {
            let _ = replaying.join();
        }
        if let Some(mut child) = mosquitto.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        println!("citybrain stopped cleanly");
        anyhow::Ok(())
    });
    drop(runtime);
    drop(keep);
    done
}

fn parse_date(text: &str) -> Result<citybrain_core::Date, String> {
    citybrain_core::Date::parse(text).map_err(|e| e.to_string())
}

/// `HH:MM` as seconds after midnight.
fn parse_hhmm(text: &str) -> Result<u32, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not HH:MM"))?;
    match (h.parse::<u32>(), m.parse::<u32>()) {
        (Ok(h), Ok(m)) if h < 24 && m < 60 => Ok(h * 3600 + m * 60),
        _ => Err(format!("'{text}' is not a time of day written HH:MM")),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!(message = "Shutting down: finishing in-flight requests.");
}
