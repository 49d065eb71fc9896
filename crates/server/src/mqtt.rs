//! Berth sensors over MQTT: citybrain subscribes to a broker (Mosquitto), reads FIWARE
//! `ParkingSpot` / `OffStreetParking` messages, stores them in `parking.sensor_events` and
//! hands them to the parking scene.
//!
//! Delivery is at least once and nothing acknowledged is lost: the subscription is QoS 1 on
//! a persistent session, and a message is acknowledged to the broker only after the batch it
//! is in has been fsynced. A crash before that leaves the messages with the broker, which
//! delivers them again; a reading applied twice sets the same state. A message that cannot
//! be read is logged with its topic and the field at fault, counted, and acknowledged (a
//! second delivery would not mend it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use citybrain_core::DatasetName;
use citybrain_gov::{Call, CallKind, Outcome, Touch};
use citybrain_hub::{Format, OnError};
use citybrain_parking::{SensorReading, parse_fiware};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::json;

use crate::AppState;
use crate::scenes::parking::SENSOR_EVENTS;

/// Messages per stored batch at most; a batch also closes after [`BATCH_WAIT`].
const BATCH: usize = 5_000;
const BATCH_WAIT: Duration = Duration::from_millis(20);

/// Where the sensors publish.
#[derive(Debug, Clone)]
pub struct MqttSource {
    pub host: String,
    pub port: u16,
    /// e.g. `citybrain/parking/#`
    pub topic: String,
}

/// Starts Mosquitto on a free loopback port with its state in `DATA/mqtt`; it ends with us.
pub fn start_mosquitto(data: &std::path::Path) -> Result<(std::process::Child, u16), String> {
    let dir = data.join("mqtt");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let conf = dir.join("mosquitto.conf");
    // Loopback only, so anonymous sensors are the machine's own gateways. No limit on
    // messages in flight: citybrain acknowledges a whole fsynced batch at once.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0\npersistence true\npersistence_location {}/\n",
            dir.display()
        ),
    )
    .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let binary = ["mosquitto", "/usr/sbin/mosquitto"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("-h")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok()
        })
        .ok_or("Mosquitto is not installed: apt-get install mosquitto (or pass --mqtt-broker HOST:PORT)")?;
    let child = std::process::Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting mosquitto: {e}"))?;
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed().as_secs() > 10 {
            return Err(format!(
                "mosquitto did not listen on port {port} within 10 s"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok((child, port))
}

/// Counts the MQTT path keeps (shown on `/metrics` by the caller if wanted).
#[derive(Debug, Default)]
pub struct MqttStats {
    pub stored: AtomicU64,
    pub unreadable: AtomicU64,
}

fn row(reading: &SensorReading) -> serde_json::Value {
    match reading {
        SensorReading::Spot {
            lot,
            spot,
            occupied,
            ts,
        } => json!({
            "ts": ts.to_string(), "lot_id": lot.0, "spot": spot,
            "status": match occupied { Some(true) => "occupied", Some(false) => "free", None => "unknown" },
        }),
        SensorReading::Lot { lot, free, ts } => json!({
            "ts": ts.to_string(), "lot_id": lot.0,
            "spot": format!("urn:ngsi-ld:OffStreetParking:{}", lot.0),
            "status": "count", "available": free,
        }),
    }
}

/// Connects with a persistent session and subscribes to `topics` (again after every
/// reconnection); publishes come out of the channel, to be acknowledged by the caller once
/// stored.
fn connect(
    host: &str,
    port: u16,
    client_id: &str,
    topics: Vec<String>,
) -> (AsyncClient, tokio::sync::mpsc::Receiver<Publish>) {
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_manual_acks(true)
        // A persistent session: the broker keeps our subscription and queues QoS 1
        // messages while citybrain is down.
        .set_clean_session(false)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 4 * BATCH);
    let (tx, rx) = tokio::sync::mpsc::channel::<Publish>(8 * BATCH);
    let subscriber = client.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for topic in &topics {
                        tracing::info!(message = "Connected to the MQTT broker.", topic = %topic);
                        if let Err(error) =
                            subscriber.subscribe(topic.clone(), QoS::AtLeastOnce).await
                        {
                            tracing::error!(message = "MQTT subscribe failed.", %error);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if tx.send(publish).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(message = "MQTT connection lost; reconnecting.", %error);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    (client, rx)
}

/// The next batch: the first publish, then whatever follows within [`BATCH_WAIT`].
async fn next_batch(rx: &mut tokio::sync::mpsc::Receiver<Publish>) -> Option<Vec<Publish>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + BATCH_WAIT;
    while batch.len() < BATCH {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) => batch.push(p),
            _ => break,
        }
    }
    Some(batch)
}

/// Stores `body` (fsynced), retrying until it is, and audits it as the MQTT bridge's
/// ingest; only then may its messages be acknowledged. A body the hub refuses whole (a
/// mapping that no longer exists) is logged and given up, since retrying cannot mend it.
async fn store(
    state: &AppState,
    name: &DatasetName,
    mapping: Option<&str>,
    body: Vec<u8>,
    messages: usize,
) -> Option<citybrain_hub::IngestReport> {
    loop {
        let (hub, body_now, name_now) = (state.hub.clone(), body.clone(), name.clone());
        let mapping_now = mapping.map(str::to_string);
        let result = tokio::task::spawn_blocking(move || match &mapping_now {
            // Refused records go to the dead letters with their reasons: kept, not lost.
            Some(m) => hub.ingest_mapped(
                &name_now,
                Format::Ndjson,
                m,
                &body_now,
                OnError::Skip,
                crate::now(),
            ),
            None => hub.ingest(
                &name_now,
                Format::Ndjson,
                &body_now,
                OnError::Reject,
                crate::now(),
            ),
        })
        .await;
        match result {
            Ok(Ok(report)) => {
                let mut call = Call::new(crate::now(), "mqtt", "hub", CallKind::Ingest);
                call.datasets.push(Touch {
                    dataset: name.clone(),
                    fields: Vec::new(),
                });
                call.rows = report.accepted as u64;
                call.outcome = Outcome::Ok;
                call.detail = match mapping {
                    Some(m) => format!(
                        "MQTT {messages} messages through mapping {m}; {} rejected",
                        report.rejected
                    ),
                    None => format!("MQTT {messages} messages"),
                };
                if let Err(error) = state.gov.record(call) {
                    tracing::error!(message = "Auditing an MQTT batch failed.", %error);
                }
                return Some(report);
            }
            Ok(Err(error @ citybrain_hub::HubError::Decode(_))) => {
                tracing::error!(message = "MQTT messages cannot be stored; dropped.", dataset = %name, %error);
                return None;
            }
            Ok(Err(error)) => {
                tracing::error!(message = "Storing MQTT messages failed; retrying.", %error);
            }
            Err(error) => {
                tracing::error!(message = "Storing MQTT messages failed; retrying.", %error);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn ack_all(client: &AsyncClient, batch: &[Publish]) {
    for publish in batch {
        if let Err(error) = client.ack(publish).await {
            tracing::warn!(message = "An MQTT acknowledgement failed.", %error);
        }
    }
}

/// Subscribes and keeps ingesting until the process ends; returns the counters.
pub fn spawn(state: AppState, source: MqttSource) -> Arc<MqttStats> {
    let stats = Arc::new(MqttStats::default());
    let (client, mut rx) = connect(
        &source.host,
        source.port,
        "citybrain-parking",
        vec![source.topic.clone()],
    );
    let counters = stats.clone();
    tokio::spawn(async move {
        let name = DatasetName::parse(SENSOR_EVENTS).expect("a valid name");
        while let Some(batch) = next_batch(&mut rx).await {
            let mut body = Vec::with_capacity(batch.len() * 160);
            let mut readable = 0u64;
            for publish in &batch {
                match parse_fiware(&publish.payload) {
                    Ok(reading) => {
                        body.extend_from_slice(row(&reading).to_string().as_bytes());
                        body.push(b'\n');
                        readable += 1;
                    }
                    Err(error) => {
                        counters.unreadable.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            message = "An MQTT sensor message was unreadable.",
                            topic = %publish.topic,
                            field = error.field,
                            reason = %error.reason
                        );
                    }
                }
            }
            if readable > 0
                && let Some(report) = store(&state, &name, None, body, batch.len()).await
            {
                counters
                    .stored
                    .fetch_add(report.accepted as u64, Ordering::Relaxed);
            }
            ack_all(&client, &batch).await;
        }
    });
    stats
}

/// A feed mapping that takes its records from an MQTT topic (`mqtt_topic` in the mapping).
#[derive(Debug, Clone)]
pub struct MqttFeed {
    pub topic: String,
    pub dataset: DatasetName,
    pub mapping: String,
}

/// The mappings of the hub's datasets that name an MQTT topic.
pub fn declared_feeds(hub: &citybrain_hub::Hub) -> Vec<MqttFeed> {
    let mut feeds = Vec::new();
    for name in hub.names() {
        let Ok(def) = hub.definition(&name) else {
            continue;
        };
        for (mapping, m) in &def.mappings {
            if let Some(topic) = &m.mqtt_topic {
                feeds.push(MqttFeed {
                    topic: topic.clone(),
                    dataset: name.clone(),
                    mapping: mapping.clone(),
                });
            }
        }
    }
    feeds
}

/// Whether an MQTT topic filter (with `+` and `#`) matches a topic.
fn matches(filter: &str, topic: &str) -> bool {
    let mut topic = topic.split('/');
    for part in filter.split('/') {
        match (part, topic.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    topic.next().is_none()
}

/// Takes each feed's messages (a JSON object, or NDJSON lines, per message) through its
/// mapping into its dataset: at least once, acknowledged after the fsync, records the
/// mapping refuses kept in the dataset's dead letters with the source column named.
pub fn spawn_feeds(state: AppState, host: &str, port: u16, feeds: Vec<MqttFeed>) -> Arc<MqttStats> {
    let stats = Arc::new(MqttStats::default());
    let topics = feeds.iter().map(|f| f.topic.clone()).collect();
    let (client, mut rx) = connect(host, port, "citybrain-feeds", topics);
    let counters = stats.clone();
    tokio::spawn(async move {
        while let Some(batch) = next_batch(&mut rx).await {
            let mut bodies: Vec<(Vec<u8>, usize)> = vec![(Vec::new(), 0); feeds.len()];
            for publish in &batch {
                match feeds.iter().position(|f| matches(&f.topic, &publish.topic)) {
                    Some(i) => {
                        bodies[i].0.extend_from_slice(&publish.payload);
                        bodies[i].0.push(b'\n');
                        bodies[i].1 += 1;
                    }
                    None => {
                        counters.unreadable.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            for (feed, (body, messages)) in feeds.iter().zip(bodies) {
                if messages == 0 {
                    continue;
                }
                if let Some(report) =
                    store(&state, &feed.dataset, Some(&feed.mapping), body, messages).await
                {
                    counters
                        .stored
                        .fetch_add(report.accepted as u64, Ordering::Relaxed);
                    counters
                        .unreadable
                        .fetch_add(report.rejected as u64, Ordering::Relaxed);
                }
            }
            ack_all(&client, &batch).await;
        }
    });
    stats
}

#[cfg(test)]
mod tests {
    #[test]
    fn topic_filters() {
        use super::matches;
        assert!(matches("citybrain/feeds/#", "citybrain/feeds/a/b"));
        assert!(matches("citybrain/+/kkbh", "citybrain/x/kkbh"));
        assert!(!matches("citybrain/+/kkbh", "citybrain/x/y/kkbh"));
        assert!(matches("a/b", "a/b") && !matches("a/b", "a/b/c") && !matches("a/b/c", "a/b"));
    }
}
