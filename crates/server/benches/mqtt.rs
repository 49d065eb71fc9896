//! Berth sensor messages over MQTT, end to end: a publisher sends FIWARE ParkingSpot
//! messages at QoS 1 to a real Mosquitto; citybrain's subscriber stores them (fsync) in
//! `parking.sensor_events`, acknowledges them, and the parking scene applies them. The rate
//! is messages applied by the scene per second from the first publish.
//!
//! `cargo bench --workspace --bench mqtt` (needs `mosquitto`; CITYBRAIN_BENCH_MESSAGES sets
//! how many, default 300,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_core::{Fen, GeoPoint, Timestamp};
use citybrain_gov::Gov;
use citybrain_hub::{DatasetDef, Hub, HubConfig};
use citybrain_parking::{Lot, LotId, LotKind, Parking, SessionConfig, Tariff};
use citybrain_server::live_parking::LiveParking;
use citybrain_server::mqtt::{MqttSource, spawn, start_mosquitto};
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
    let lots = (1..=LOTS)
        .map(|i| Lot {
            id: LotId(i),
            name: format!("lot {i}"),
            loc: GeoPoint {
                lon: 120.1 + f64::from(i % 40) * 0.002,
                lat: 30.2 + f64::from(i / 40) * 0.002,
            },
            capacity: BERTHS,
            kind: LotKind::OnStreet,
            district: format!("d{}", i % 8),
            tariff: Tariff {
                daily_cap: Some(Fen(6_000)),
                ..Tariff::city_centre()
            },
        })
        .collect();
    let parking = Parking::new(lots, SessionConfig::default()).unwrap();
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut mosquitto, port) = start_mosquitto(dir.path()).unwrap();
    runtime.block_on(async {
        let alerts = citybrain_server::live_alerts::LiveAlerts::new(
            hub.clone(),
            events.clone(),
            Default::default(),
        );
        let scene = LiveParking::start(hub.clone(), parking, Default::default(), events, alerts);
        let sql = citybrain_sql::SqlEngine::new(hub.clone(), citybrain_sql::SqlLimits::default())
            .with_gov(gov.clone());
        let state = AppState {
            hub: hub.clone(),
            sql,
            gov,
            live: None,
            parking: Some(scene.clone()),
            signals: None,
            policy: None,
            body_limit: 1 << 20,
            conn: Default::default(),
        };
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
