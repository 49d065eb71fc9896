//! Live indices: passages ingested into `transport.anpr_passages` flow through the traffic
//! operators on their own thread. Closed windows are stored in the `indices.*` datasets (so
//! SQL, grants and audit cover them) and, with the live view, broadcast to SSE subscribers.
//!
//! The stream's clock is the data's time, not the wall clock, so a replayed day closes its
//! windows as it goes; windows close when later passages arrive.

use std::sync::{Arc, Mutex, mpsc};

use arrow::array::RecordBatch;
use citybrain_core::DatasetName;
use citybrain_hub::{Format, Hub, OnError};
use citybrain_indices::{Link, Live, Outputs, TrafficConfig, TrafficIndices, to_ndjson};
use serde_json::json;
use tokio::sync::broadcast;

/// The dataset whose records feed the traffic indices.
pub const PASSAGES: &str = "transport.anpr_passages";

/// Rows per SSE event at most; the full rows are in the datasets.
const EVENT_ROWS: usize = 500;

/// What the operators' thread is handed.
#[derive(Debug)]
enum Input {
    /// Newly ingested passages: closed windows are stored and broadcast.
    Feed(RecordBatch),
    /// Passages already processed before a restart, replayed to rebuild the operators'
    /// state; the windows they close were stored then, so their rows are dropped.
    Warm(RecordBatch),
}

#[derive(Debug, Clone)]
pub struct LiveIndices {
    tx: mpsc::Sender<Input>,
    alerts: crate::live_alerts::LiveAlerts,
    events: broadcast::Sender<Arc<str>>,
    latest: Arc<Mutex<Option<Live>>>,
    /// Set when the server shuts down, so open event streams end and the graceful
    /// shutdown (which waits for every response to finish) completes.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

pub(crate) fn store<T: serde::Serialize>(
    hub: &Hub,
    dataset: &str,
    rows: &[T],
    events: &broadcast::Sender<Arc<str>>,
) {
    if rows.is_empty() {
        return;
    }
    let name = DatasetName::parse(dataset).expect("index dataset names are valid");
    if hub.names().contains(&name) {
        let body = to_ndjson(rows);
        if let Err(error) = hub.ingest(&name, Format::Ndjson, &body, OnError::Reject, crate::now())
        {
            tracing::error!(message = "Storing index rows failed.", dataset, %error);
        }
    }
    let shown = &rows[rows.len().saturating_sub(EVENT_ROWS)..];
    let event = json!({"type": "rows", "dataset": dataset, "rows": shown, "total": rows.len()});
    let _ = events.send(event.to_string().into());
}

fn publish(hub: &Hub, out: Outputs, events: &broadcast::Sender<Arc<str>>) {
    store(hub, "indices.census_daily", &out.census_days, events);
    store(hub, "indices.census_hourly", &out.census_hours, events);
    store(hub, "indices.census_so_far", &out.census_so_far, events);
    store(hub, "indices.on_road", &out.on_road, events);
    store(hub, "indices.link_travel", &out.link_travel, events);
    store(hub, "indices.delay", &out.delay, events);
}

impl LiveIndices {
    /// Starts the operators' thread over `links`.
    pub fn start(hub: Arc<Hub>, links: Vec<Link>) -> Self {
        let (tx, rx) = mpsc::channel::<Input>();
        let (events, _) = broadcast::channel(1024);
        let latest = Arc::new(Mutex::new(None));
        let alerts = crate::live_alerts::LiveAlerts::new(
            hub.clone(),
            events.clone(),
            citybrain_alerts::AlertRules::default(),
        );
        let (events_out, latest_out, alerts_out) = (events.clone(), latest.clone(), alerts.clone());
        std::thread::Builder::new()
            .name("live-indices".into())
            .spawn(move || {
                let mut indices = TrafficIndices::new(TrafficConfig::default(), links);
                while let Ok(first) = rx.recv() {
                    // Take whatever else is queued too, then publish once.
                    for input in std::iter::once(first).chain(rx.try_iter()) {
                        let (batch, warm) = match &input {
                            Input::Feed(batch) => (batch, false),
                            Input::Warm(batch) => (batch, true),
                        };
                        if let Err(error) = indices.push_batch(batch) {
                            tracing::error!(message = "A passage batch was unusable for the indices.", %error);
                        }
                        if warm {
                            // Stored before the restart; the alert board still learns from it.
                            let out = indices.take_outputs();
                            let now = citybrain_core::Timestamp::parse(&indices.live().at).ok();
                            alerts_out.links(&out.link_travel, now, false);
                        }
                    }
                    let out = indices.take_outputs();
                    let live = indices.live();
                    let now = citybrain_core::Timestamp::parse(&live.at).ok();
                    alerts_out.links(&out.link_travel, now, true);
                    publish(&hub, out, &events_out);
                    let event = json!({"type": "live", "live": &live});
                    *latest_out.lock().expect("latest lock") = Some(live);
                    let _ = events_out.send(event.to_string().into());
                }
            })
            .expect("the indices thread starts");
        let closing = Arc::new(tokio::sync::watch::Sender::new(false));
        Self {
            tx,
            alerts,
            events,
            latest,
            closing,
        }
    }

    /// Hands stored passages to the operators (never blocks the ingest call).
    pub fn feed(&self, batch: RecordBatch) {
        let _ = self.tx.send(Input::Feed(batch));
    }

    /// Replays passages processed before a restart so the live view (vehicles today, on the
    /// road now) and open windows continue where they were; nothing is stored twice.
    pub fn warm(&self, batch: RecordBatch) {
        let _ = self.tx.send(Input::Warm(batch));
    }

    /// The alert board the traffic indices feed (the parking scene feeds it too).
    pub fn alerts(&self) -> &crate::live_alerts::LiveAlerts {
        &self.alerts
    }

    /// Ends every open event stream (at shutdown).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when the streams are to end.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.closing.subscribe();
        async move {
            let _ = receiver.wait_for(|closing| *closing).await;
        }
    }

    /// The event stream's sender, for other live scenes to publish on.
    pub fn sender(&self) -> broadcast::Sender<Arc<str>> {
        self.events.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    pub fn latest(&self) -> Option<Live> {
        self.latest.lock().expect("latest lock").clone()
    }
}
