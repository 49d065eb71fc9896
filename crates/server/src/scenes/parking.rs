//! The live parking scene: gate reads and berth sensor readings ingested into
//! `parking.gate_events` and `parking.sensor_events` flow, after their fsync, through
//! [`Parking`] on its own thread. Indices land in `parking.index`, bills in `parking.bills`,
//! anomalies in `parking.anomalies`, and all of them on the indices' event stream.
//!
//! Bills are issued exactly once: a bill's id is fixed by its stay, the ids already stored
//! are loaded at start, and a bill whose id is stored is never stored again. After a crash
//! the stored gate reads are replayed (`warm`), so a bill whose stay ended before the crash
//! but was not yet stored is issued then, and no other twice. Anomalies and index rows of the
//! crash window are recovered the same way (see [`Stored`]).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use citybrain_core::{Fen, Timestamp};
use citybrain_parking::{
    Anomaly, Direction, GateEvent, GuideEntry, GuideQuery, Lot, LotId, LotKind, Parking,
    SensorReading, Tariff,
};
use serde_json::json;

use crate::scene::{SceneContext, Worker};

mod api;
pub use api::ParkingScene;

pub const GATE_EVENTS: &str = "parking.gate_events";
pub const SENSOR_EVENTS: &str = "parking.sensor_events";

/// One read of either kind.
enum Event {
    Gate(GateEvent),
    Sensor(SensorReading),
}

impl Event {
    fn ts(&self) -> Timestamp {
        match self {
            Event::Gate(e) => e.ts,
            Event::Sensor(SensorReading::Lot { ts, .. } | SensorReading::Spot { ts, .. }) => *ts,
        }
    }
}

/// The scene's handle: the lots' state, for guidance.
#[derive(Debug, Clone)]
pub struct LiveParking {
    state: Arc<RwLock<Parking>>,
    /// Reads applied to the scene so far (for benchmarks and health).
    applied: Arc<std::sync::atomic::AtomicU64>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, String> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| format!("no column {name}"))
}

/// The batch's rows as events: a row with a `direction` is a gate read, one with a
/// `status` a sensor reading.
fn read_events(batch: &RecordBatch) -> Result<Vec<Event>, String> {
    let ts = column(batch, "ts")?.as_primitive::<TimestampMicrosecondType>();
    let lot = column(batch, "lot_id")?.as_primitive::<Int64Type>();
    let text = |name: &str| crate::scene::text_column(batch, name).ok();
    let (plate, direction, spot, status) = (
        text("plate"),
        text("direction"),
        text("spot"),
        text("status"),
    );
    let available = batch
        .column_by_name("available")
        .and_then(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).ok())
        .map(|c| c.as_primitive::<Int64Type>().clone());
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let (ts, lot) = (Timestamp(ts.value(i)), LotId(lot.value(i) as u32));
        let value = |c: &Option<arrow::array::StringArray>| {
            c.as_ref()
                .filter(|c| c.is_valid(i))
                .map(|c| c.value(i).to_string())
        };
        if let (Some(direction), Some(plate)) = (value(&direction), value(&plate)) {
            let direction = match direction.as_str() {
                "in" => Direction::In,
                "out" => Direction::Out,
                other => return Err(format!("row {i}: direction '{other}' is not in or out")),
            };
            out.push(Event::Gate(GateEvent {
                ts,
                lot,
                plate,
                direction,
            }));
        } else if value(&status).as_deref() == Some("count") {
            let free = available
                .as_ref()
                .filter(|c| c.is_valid(i))
                .map(|c| c.value(i))
                .ok_or_else(|| format!("row {i}: a count without 'available'"))?;
            out.push(Event::Sensor(SensorReading::Lot {
                lot,
                free: free.max(0) as u32,
                ts,
            }));
        } else if let (Some(status), Some(spot)) = (value(&status), value(&spot)) {
            let occupied = match status.as_str() {
                "occupied" => Some(true),
                "free" => Some(false),
                _ => None,
            };
            out.push(Event::Sensor(SensorReading::Spot {
                lot,
                spot,
                occupied,
                ts,
            }));
        } else {
            return Err(format!("row {i}: neither a gate read nor a sensor reading"));
        }
    }
    Ok(out)
}

/// Lots as stored in `parking.lots`; their tariffs' local times are in `zone` (the city's).
pub fn lots_from_batch(
    batch: &RecordBatch,
    zone: &citybrain_core::TimeZone,
) -> Result<Vec<Lot>, String> {
    let int = |name: &str| -> Result<_, String> {
        Ok(column(batch, name)?.as_primitive::<Int64Type>().clone())
    };
    let string = |name: &str| crate::scene::text_column(batch, name);
    let (id, capacity, free, unit) = (
        int("lot_id")?,
        int("capacity")?,
        int("free_minutes")?,
        int("unit_minutes")?,
    );
    let (day, night, start, end, cap) = (
        int("day_unit")?,
        int("night_unit")?,
        int("day_start_min")?,
        int("day_end_min")?,
        int("daily_cap")?,
    );
    let (name, kind, district) = (string("name")?, string("kind")?, string("district")?);
    let loc = citybrain_hub::geo_points(column(batch, "loc")?)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for (i, loc) in loc.into_iter().enumerate() {
        let kind = match kind.value(i) {
            "on_street" => LotKind::OnStreet,
            "garage" => LotKind::Garage,
            "hospital_pool" => LotKind::HospitalPool,
            other => {
                return Err(format!(
                    "lot {}: kind '{other}' is not on_street, garage or hospital_pool",
                    id.value(i)
                ));
            }
        };
        out.push(Lot {
            id: LotId(id.value(i) as u32),
            name: name.value(i).to_string(),
            loc: loc.ok_or_else(|| format!("lot {}: no location", id.value(i)))?,
            capacity: capacity.value(i).max(0) as u32,
            kind,
            district: district.value(i).to_string(),
            tariff: Tariff {
                id: format!("lot-{}", id.value(i)),
                free_minutes: free.value(i).max(0) as u32,
                unit_minutes: unit.value(i).max(0) as u32,
                day_unit: Fen(day.value(i)),
                night_unit: Fen(night.value(i)),
                day_start_min: start.value(i).max(0) as u32,
                day_end_min: end.value(i).max(0) as u32,
                daily_cap: cap.is_valid(i).then(|| Fen(cap.value(i))),
                zone: zone.clone(),
            },
        });
    }
    Ok(out)
}

/// What a scene stored before a restart, so that replaying the stored reads (`warm`) stores
/// each bill, anomaly and index row once.
#[derive(Debug, Default)]
pub struct Stored {
    /// Ids of the bills stored (all of them: a bill must never be issued twice).
    pub bills: HashSet<i64>,
    /// The anomalies stored within the replayed window.
    pub anomalies: HashSet<AnomalyKey>,
    /// The newest index instant stored. Outputs are stored bills, then anomalies, then
    /// index rows, one batch after another, so everything the scene yielded by the time its
    /// clock reached this instant was stored.
    pub index_up_to: Option<Timestamp>,
}

/// An anomaly as stored: time, lot, plate and kind.
pub type AnomalyKey = (i64, i64, String, String);

fn anomaly_key(a: &Anomaly) -> AnomalyKey {
    (
        a.ts.0,
        i64::from(a.lot.0),
        a.plate.clone(),
        a.kind.name().to_string(),
    )
}

/// The scene's worker: applies reads, stores what they yield.
struct ParkingWorker {
    ctx: SceneContext,
    state: Arc<RwLock<Parking>>,
    stored: Stored,
    applied: Arc<std::sync::atomic::AtomicU64>,
    /// Reads applied before the restart (both datasets, in time order), replayed first.
    warm: Vec<RecordBatch>,
}

impl Worker for ParkingWorker {
    fn warm(&mut self) {
        let batches = std::mem::take(&mut self.warm);
        self.replay(&batches);
    }

    /// Replayed changes (the catch-up, which may hold reads applied before a crash) are
    /// applied together in time order, as they happened, and stored without repeating what
    /// was stored; live batches that queued up are applied together and stored once.
    fn apply(&mut self, changes: Vec<citybrain_hub::Change>) {
        let (replayed, live): (Vec<_>, Vec<_>) = changes.into_iter().partition(|c| c.replayed);
        let batches: Vec<RecordBatch> = replayed.into_iter().flat_map(|c| c.batches).collect();
        self.replay(&batches);
        if live.is_empty() {
            return;
        }
        for change in &live {
            for batch in &change.batches {
                self.apply_events(read_batch(batch));
            }
        }
        self.store(false);
    }
}

fn read_batch(batch: &RecordBatch) -> Vec<Event> {
    read_events(batch).unwrap_or_else(|error| {
        tracing::error!(message = "A parking batch was unusable.", %error);
        Vec::new()
    })
}

impl ParkingWorker {
    /// Reads that may have been applied before a restart, in time order; only what was not
    /// stored yet is stored.
    fn replay(&mut self, batches: &[RecordBatch]) {
        if batches.is_empty() {
            return;
        }
        let mut events: Vec<Event> = batches.iter().flat_map(read_batch).collect();
        events.sort_by_key(Event::ts);
        self.apply_events(events);
        self.store(true);
    }

    fn apply_events(&self, events: Vec<Event>) {
        self.applied
            .fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut parking = self.state.write().expect("parking lock");
        for event in events {
            // An unknown lot's reads are dropped: lots come from parking.lots at start.
            let _ = match event {
                Event::Gate(e) => parking.push_gate(e),
                Event::Sensor(r) => parking.push_sensor(r),
            };
        }
    }

    /// Stores what the scene yielded since the last call. In a replay, only what was not
    /// stored before the restart: bills by id; anomalies and index rows yielded after the
    /// clock passed the newest stored instant (earlier ones were stored, and a replay that
    /// starts mid-stay yields exits without entries that never happened), anomalies also
    /// checked against those stored.
    fn store(&mut self, warm: bool) {
        let (mut out, clock) = {
            let mut parking = self.state.write().expect("parking lock");
            (parking.take(), parking.clock())
        };
        let alerts = &self.ctx.alerts;
        let bills = &mut self.stored.bills;
        out.bills.retain(|b| bills.insert(b.id.0 as i64));
        if warm {
            let up_to = self.stored.index_up_to.map_or(i64::MIN, |t| t.0);
            // The alert board learns from the replay; what was stored then is not stored again.
            let (old, new): (Vec<_>, Vec<_>) = out
                .index
                .iter()
                .cloned()
                .partition(|r| clock <= up_to || r.at.0 <= up_to);
            alerts.lots(&old, false);
            alerts.lots(&new, true);
            if clock <= up_to {
                out.anomalies.clear();
                out.index.clear();
            }
            let seen = &self.stored.anomalies;
            out.anomalies.retain(|a| !seen.contains(&anomaly_key(a)));
            out.index.retain(|r| r.at.0 > up_to);
        }
        let bills: Vec<_> = out
            .bills
            .iter()
            .map(|b| {
                json!({"bill_id": b.id.0, "lot_id": b.lot.0, "plate": b.plate,
                       "entry": b.entry.to_string(), "exit": b.exit.to_string(),
                       "minutes": b.charge.minutes, "amount": b.amount.0,
                       "due": b.due.to_string()})
            })
            .collect();
        let (hub, events) = (&self.ctx.hub, &self.ctx.events);
        crate::scene::store(hub, "parking.bills", &bills, events);
        let anomalies: Vec<_> = out
            .anomalies
            .iter()
            .map(|a| {
                json!({"ts": a.ts.to_string(), "lot_id": a.lot.0, "plate": a.plate,
                       "kind": a.kind.name(), "detail": a.detail})
            })
            .collect();
        crate::scene::store(hub, "parking.anomalies", &anomalies, events);
        crate::scene::store(hub, "parking.index", &out.index, events);
        if !warm {
            alerts.lots(&out.index, true);
        }
    }
}

impl LiveParking {
    /// Reads applied so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn guide(&self, query: &GuideQuery) -> Vec<GuideEntry> {
        // A reader never leaves the state half-changed, so a poisoned lock is still usable.
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .guide(query)
    }
}
