//! Berth sensor messages over MQTT, end to end: a publisher sends FIWARE ParkingSpot
//! messages at QoS 1 to a real Mosquitto; citybrain's subscriber stores them (fsync) in
//! `parking.sensor_events`, acknowledges them, and the parking scene applies them. The rate
//! is messages applied by the scene per second from the first publish.
//!
//! `cargo bench --workspace --bench mqtt` (needs `mosquitto`; CITYBRAIN_BENCH_MESSAGES sets
//! how many, default 300,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_core::Timestamp;
use citybrain_gov::Gov;
use citybrain_hub::{DatasetDef, Hub, HubConfig};
use citybrain_server::mqtt::{MqttSource, spawn, start_mosquitto};
use citybrain_server::scenes::parking::LiveParking;
use citybrain_server::{AppState, now};
use rumqttc::{AsyncClient, MqttOptions, QoS};

const LOTS: u32 = 1_000;
const BERTHS: u32 = 100;

fn main() {
    let n: u64 = std::env::var("CITYBRAIN_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let dir = tempfile::tempdir().unwrap();
    let hub = Arc::new(Hub::open(dir.path(), HubConfig::default()).unwrap());
    let gov = Arc::new(Gov::open(dir.path(), now()).unwrap());
    let definitions = citybrain_gen::DEFINITIONS
        .iter()
        .chain(citybrain_parking::DEFINITIONS)
        .filter(|(file, _)| file.starts_with("parking."));
    for (file, text) in definitions {
        hub.create_dataset(DatasetDef::from_file_text(file, text).unwrap(), now())
            .unwrap();
    }
    // The lots as a city publishes them: the scene reads parking.lots at start.
    let lots: String = (1..=LOTS)
        .map(|i| {
            format!(
                "{{\"lot_id\":{i},\"name\":\"lot {i}\",\"loc\":{{\"lon\":{:.6},\"lat\":{:.6}}},\"capacity\":{BERTHS},\"kind\":\"on_street\",\"district\":\"d{}\",\"free_minutes\":15,\"unit_minutes\":15,\"day_unit\":250,\"night_unit\":50,\"day_start_min\":420,\"day_end_min\":1260,\"daily_cap\":6000}}\n",
                120.1 + f64::from(i % 40) * 0.002,
                30.2 + f64::from(i / 40) * 0.002,
                i % 8
            )
        })
        .collect();
    hub.ingest(
        &citybrain_core::DatasetName::parse("parking.lots").unwrap(),
        citybrain_hub::Format::Ndjson,
        lots.as_bytes(),
        citybrain_hub::OnError::Reject,
        now(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut mosquitto, port) = start_mosquitto(dir.path()).unwrap();
    runtime.block_on(async {
        let sql = citybrain_sql::SqlEngine::new(hub.clone(), citybrain_sql::SqlLimits::default())
            .with_gov(gov.clone());
        let state = AppState::start(
            hub.clone(),
            sql,
            gov,
            Default::default(),
            1 << 20,
            Default::default(),
        )
        .await;
        let scene: LiveParking = state.scenes.handle("parking").unwrap();
        let stats = spawn(
            state,
            MqttSource {
                host: "127.0.0.1".into(),
                port,
                topic: "citybrain/parking/#".into(),
            },
        );
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut options = MqttOptions::new("bench-publisher", "127.0.0.1", port);
        options
            .set_inflight(2_000)
            .set_request_channel_capacity(10_000);
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let base = Timestamp::parse("2026-11-23T08:00:00+08:00").unwrap().0;
        let payloads: Vec<String> = (0..n)
            .map(|k| {
                let lot = 1 + (k % u64::from(LOTS));
                let spot = (k / u64::from(LOTS)) % u64::from(BERTHS);
                let status = if (k / (u64::from(LOTS) * u64::from(BERTHS))) % 2 == 0 {
                    "occupied"
                } else {
                    "free"
                };
                format!(
                    r#"{{"id":"urn:ngsi-ld:ParkingSpot:{lot}:{spot}","type":"ParkingSpot","status":"{status}","refParkingSite":"urn:ngsi-ld:OffStreetParking:{lot}","dateObserved":"{}"}}"#,
                    Timestamp(base + k as i64 * 1_000)
                )
            })
            .collect();
        let started = Instant::now();
        for payload in payloads {
            client
                .publish("citybrain/parking/bench", QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        let published = started.elapsed();
        while scene.applied() < n {
            if started.elapsed() > Duration::from_secs(600) {
                panic!("only {} of {n} applied after 10 minutes", scene.applied());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let total = started.elapsed();
        println!(
            "{n} messages: published in {:.2} s; stored {} and applied by the parking scene in {:.2} s: {:.0} messages/s end to end",
            published.as_secs_f64(),
            stats.stored.load(std::sync::atomic::Ordering::Relaxed),
            total.as_secs_f64(),
            n as f64 / total.as_secs_f64()
        );
    });
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();
}
