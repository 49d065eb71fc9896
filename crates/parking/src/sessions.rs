//! Leave first, pay later (先离场后付费): gate ANPR reads become parking sessions and bills.
//!
//! Gate reads come late, twice, or not at all. Events are held for the allowed lateness and
//! applied in time order, per lot and plate:
//! - an entry opens a session; an entry again within the duplicate window is a duplicate;
//! - an entry while a session is open (its exit was missed) closes nothing: the open session
//!   is recorded as an anomaly for review and the new entry opens a session;
//! - an exit closes the open session, which is priced and billed;
//! - an exit with no open session is a duplicate (within the window after the last exit) or
//!   an exit without entry; either way an anomaly, never a bill;
//! - an event older than what was already applied is recorded as late and not applied;
//! - a session still open a day after its entry (configurable) is recorded once as having no
//!   exit: its exit read was missed and no later entry showed it. It stays open, so an exit
//!   read after all is still billed. The check runs on the gates' own clock (the newest
//!   applied read), not the sensors', so a gate feed that lags never loses reads as late.
//!
//! A bill's id is derived from the lot, the plate and the entry time, so replaying the same
//! events (after a crash) yields the same ids and a ledger keyed by id bills each stay once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use citybrain_core::{Fen, Timestamp};
use serde::{Deserialize, Serialize};

use crate::LotId;
use crate::tariff::{Charge, Tariff};

const MICROS: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

/// One gate camera read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateEvent {
    pub ts: Timestamp,
    pub lot: LotId,
    pub plate: String,
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    DuplicateEntry,
    DuplicateExit,
    ExitWithoutEntry,
    /// A second entry while a session was open: the first session's exit was missed.
    EntryWithoutExit,
    /// A session still open long after its entry: no exit read and no later entry.
    NoExit,
    /// Older than the events already applied (beyond the lateness).
    Late,
    UnknownLot,
    Unpriceable,
}

impl AnomalyKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::DuplicateEntry => "duplicate_entry",
            Self::DuplicateExit => "duplicate_exit",
            Self::ExitWithoutEntry => "exit_without_entry",
            Self::EntryWithoutExit => "entry_without_exit",
            Self::NoExit => "no_exit",
            Self::Late => "late",
            Self::UnknownLot => "unknown_lot",
            Self::Unpriceable => "unpriceable",
        }
    }
}

/// Something at a gate that was recorded instead of billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub ts: Timestamp,
    pub lot: LotId,
    pub plate: String,
    pub kind: AnomalyKind,
    pub detail: String,
}

/// A bill's id: the same stay always gets the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BillId(pub u64);

impl BillId {
    /// FNV-1a over lot, plate and entry time: stable across runs and platforms.
    pub fn of(lot: LotId, plate: &str, entry: Timestamp) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&lot.0.to_le_bytes());
        eat(plate.as_bytes());
        eat(&entry.0.to_le_bytes());
        // Ids fit a signed 64-bit column.
        Self(h >> 1)
    }
}

/// A finished stay, priced: the bill the driver receives after leaving (a stay within the
/// free minutes gets one too, for nothing, so every stay has its record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    pub id: BillId,
    pub lot: LotId,
    pub plate: String,
    pub entry: Timestamp,
    pub exit: Timestamp,
    pub amount: Fen,
    pub charge: Charge,
    /// Unpaid after this, the bill is flagged for follow-up.
    pub due: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long events are held for late arrivals, in seconds.
    pub lateness_s: i64,
    /// Reads of the same plate and direction this close together are one passage.
    pub duplicate_window_s: i64,
    /// How long a driver has to pay, in seconds.
    pub grace_s: i64,
    /// A session open this long, in seconds, is recorded as having no exit.
    pub no_exit_after_s: i64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            lateness_s: 300,
            duplicate_window_s: 120,
            grace_s: 48 * 3600,
            no_exit_after_s: 24 * 3600,
        }
    }
}

/// What the session builder produced since it was last asked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionOutputs {
    pub bills: Vec<Bill>,
    pub anomalies: Vec<Anomaly>,
}

type Key = (LotId, String);

/// Gate events in, bills and anomalies out.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    tariffs: HashMap<LotId, Tariff>,
    /// Held events, earliest first; ties: entries before exits, then arrival order.
    held: BinaryHeap<Reverse<(i64, Direction, u64)>>,
    events: HashMap<u64, GateEvent>,
    seq: u64,
    newest: i64,
    applied_up_to: i64,
    open: HashMap<Key, Timestamp>,
    last_entry: HashMap<Key, Timestamp>,
    last_exit: HashMap<Key, Timestamp>,
    open_per_lot: HashMap<LotId, u32>,
    /// When each opened session is due a `NoExit` check, earliest first.
    no_exit_checks: BinaryHeap<Reverse<(i64, LotId, String, Timestamp)>>,
    out: SessionOutputs,
}

impl Sessions {
    pub fn new(config: SessionConfig, tariffs: HashMap<LotId, Tariff>) -> Self {
        Self {
            config,
            tariffs,
            held: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            newest: i64::MIN,
            applied_up_to: i64::MIN,
            open: HashMap::new(),
            last_entry: HashMap::new(),
            last_exit: HashMap::new(),
            open_per_lot: HashMap::new(),
            no_exit_checks: BinaryHeap::new(),
            out: SessionOutputs::default(),
        }
    }

    /// Cars inside `lot` by its gates (open sessions).
    pub fn inside(&self, lot: LotId) -> u32 {
        self.open_per_lot.get(&lot).copied().unwrap_or(0)
    }

    pub fn push(&mut self, event: GateEvent) {
        if event.ts.0 < self.applied_up_to {
            self.anomaly(
                &event,
                AnomalyKind::Late,
                "arrived after later events were applied",
            );
            return;
        }
        self.newest = self.newest.max(event.ts.0);
        self.seq += 1;
        self.held
            .push(Reverse((event.ts.0, event.direction, self.seq)));
        self.events.insert(self.seq, event);
        self.release(self.newest - self.config.lateness_s * MICROS);
    }

    /// Applies every held event (the end of a recorded day).
    pub fn flush(&mut self) {
        self.release(i64::MAX);
    }

    pub fn take(&mut self) -> SessionOutputs {
        std::mem::take(&mut self.out)
    }

    fn release(&mut self, up_to: i64) {
        while let Some(Reverse((ts, _, seq))) = self.held.peek().copied() {
            if ts > up_to {
                break;
            }
            self.held.pop();
            let event = self.events.remove(&seq).expect("held events are stored");
            self.applied_up_to = self.applied_up_to.max(ts);
            self.apply(event);
        }
        // Everything up to the watermark is applied: a read older than it comes too late,
        // and the no-exit checks may run up to it even when no read fell just before it.
        if up_to < i64::MAX {
            self.applied_up_to = self.applied_up_to.max(up_to);
        }
        self.check_no_exit();
    }

    /// Records the sessions whose check is due by the gates' clock and are still open.
    fn check_no_exit(&mut self) {
        while let Some(Reverse((due, ..))) = self.no_exit_checks.peek() {
            if *due > self.applied_up_to {
                break;
            }
            let Some(Reverse((_, lot, plate, entry))) = self.no_exit_checks.pop() else {
                break;
            };
            let key = (lot, plate);
            if self.open.get(&key) == Some(&entry) {
                let hours = self.config.no_exit_after_s as f64 / 3600.0;
                self.out.anomalies.push(Anomaly {
                    ts: entry,
                    lot,
                    plate: key.1,
                    kind: AnomalyKind::NoExit,
                    detail: format!(
                        "entered at {entry}; no exit read within {hours} h; not billed unless an exit is read"
                    ),
                });
            }
        }
    }

    fn open_session(&mut self, key: Key, entry: Timestamp) {
        self.no_exit_checks.push(Reverse((
            entry.0 + self.config.no_exit_after_s * MICROS,
            key.0,
            key.1.clone(),
            entry,
        )));
        self.open.insert(key, entry);
    }

    fn anomaly(&mut self, event: &GateEvent, kind: AnomalyKind, detail: impl Into<String>) {
        self.out.anomalies.push(Anomaly {
            ts: event.ts,
            lot: event.lot,
            plate: event.plate.clone(),
            kind,
            detail: detail.into(),
        });
    }

    fn within_window(&self, earlier: Option<&Timestamp>, now: Timestamp) -> bool {
        earlier.is_some_and(|e| now.0 - e.0 <= self.config.duplicate_window_s * MICROS)
    }

    fn apply(&mut self, event: GateEvent) {
        if !self.tariffs.contains_key(&event.lot) {
            self.anomaly(&event, AnomalyKind::UnknownLot, "no such lot");
            return;
        }
        let key = (event.lot, event.plate.clone());
        match event.direction {
            Direction::In => {
                if let Some(entry) = self.open.get(&key).copied() {
                    if self.within_window(self.last_entry.get(&key), event.ts) {
                        self.anomaly(
                            &event,
                            AnomalyKind::DuplicateEntry,
                            "read twice at the entry",
                        );
                        return;
                    }
                    self.anomaly(
                        &event,
                        AnomalyKind::EntryWithoutExit,
                        format!(
                            "entered again; the stay from {entry} has no exit and is not billed"
                        ),
                    );
                    self.last_entry.insert(key.clone(), event.ts);
                    self.open_session(key, event.ts);
                    return;
                }
                if self.within_window(self.last_entry.get(&key), event.ts)
                    && self.within_window(self.last_exit.get(&key), event.ts)
                {
                    // In, out and in again within a minute or two: a camera's echo.
                    self.anomaly(
                        &event,
                        AnomalyKind::DuplicateEntry,
                        "read again right after the exit",
                    );
                    return;
                }
                self.last_entry.insert(key.clone(), event.ts);
                self.open_session(key, event.ts);
                *self.open_per_lot.entry(event.lot).or_default() += 1;
            }
            Direction::Out => {
                let Some(entry) = self.open.remove(&key) else {
                    let (kind, detail) = if self.within_window(self.last_exit.get(&key), event.ts) {
                        (AnomalyKind::DuplicateExit, "read twice at the exit")
                    } else {
                        (
                            AnomalyKind::ExitWithoutEntry,
                            "no entry on record; not billed",
                        )
                    };
                    self.anomaly(&event, kind, detail);
                    return;
                };
                if let Some(n) = self.open_per_lot.get_mut(&event.lot) {
                    *n = n.saturating_sub(1);
                }
                self.last_exit.insert(key, event.ts);
                let tariff = &self.tariffs[&event.lot];
                match tariff.price(entry, event.ts) {
                    Ok(charge) => self.out.bills.push(Bill {
                        id: BillId::of(event.lot, &event.plate, entry),
                        lot: event.lot,
                        plate: event.plate,
                        entry,
                        exit: event.ts,
                        amount: charge.total,
                        charge,
                        due: Timestamp(event.ts.0 + self.config.grace_s * MICROS),
                    }),
                    Err(e) => self.anomaly(&event, AnomalyKind::Unpriceable, e.to_string()),
                }
            }
        }
    }
}

/// Whether an unpaid bill is past its grace period at `now`.
pub fn overdue(bill_due: Timestamp, paid: bool, now: Timestamp) -> bool {
    !paid && now > bill_due
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(minute: i64, plate: &str, direction: Direction) -> GateEvent {
        GateEvent {
            ts: Timestamp(
                Timestamp::parse("2026-11-22T08:00:00+08:00").unwrap().0 + minute * 60 * MICROS,
            ),
            lot: LotId(1),
            plate: plate.into(),
            direction,
        }
    }

    fn run(events: Vec<GateEvent>) -> SessionOutputs {
        let tariffs = HashMap::from([(LotId(1), Tariff::city_centre())]);
        let mut s = Sessions::new(SessionConfig::default(), tariffs);
        for e in events {
            s.push(e);
        }
        s.flush();
        s.take()
    }

    fn kinds(out: &SessionOutputs) -> Vec<AnomalyKind> {
        out.anomalies.iter().map(|a| a.kind).collect()
    }

    use Direction::{In, Out};

    #[test]
    fn an_entry_and_an_exit_make_one_bill_due_after_the_grace() {
        let out = run(vec![ev(0, "A", In), ev(95, "A", Out)]);
        assert_eq!(out.bills.len(), 1);
        let bill = &out.bills[0];
        assert_eq!(bill.amount, Fen(2_000)); // 95 min: four 30-minute day units
        assert_eq!(bill.due.0 - bill.exit.0, 48 * 3600 * MICROS);
        assert!(out.anomalies.is_empty());
        assert!(!overdue(bill.due, false, bill.exit));
        assert!(overdue(bill.due, false, Timestamp(bill.due.0 + 1)));
        assert!(!overdue(bill.due, true, Timestamp(bill.due.0 + 1)));
    }

    #[test]
    fn duplicates_are_recorded_and_not_billed_twice() {
        let out = run(vec![
            ev(0, "A", In),
            ev(1, "A", In),
            ev(60, "A", Out),
            ev(61, "A", Out),
        ]);
        assert_eq!(out.bills.len(), 1);
        assert_eq!(out.bills[0].entry, ev(0, "A", In).ts);
        assert_eq!(
            kinds(&out),
            vec![AnomalyKind::DuplicateEntry, AnomalyKind::DuplicateExit]
        );
    }

    #[test]
    fn a_missing_read_is_an_anomaly_never_a_silent_bill() {
        // Exit without entry: nothing billed.
        let out = run(vec![ev(30, "B", Out)]);
        assert!(out.bills.is_empty());
        assert_eq!(kinds(&out), vec![AnomalyKind::ExitWithoutEntry]);
        // Two entries hours apart (the exit between was missed): the first stay is not
        // billed, the second is.
        let out = run(vec![ev(0, "C", In), ev(300, "C", In), ev(330, "C", Out)]);
        assert_eq!(kinds(&out), vec![AnomalyKind::EntryWithoutExit]);
        assert_eq!(out.bills.len(), 1);
        assert_eq!(out.bills[0].entry, ev(300, "C", In).ts);
    }

    #[test]
    fn a_stay_with_no_exit_and_no_later_entry_is_recorded_once_by_the_gates_clock() {
        let day = 24 * 60;
        // F enters and is never read again. Nothing is said of F while the gates' clock is
        // within a day of its entry ...
        let out = run(vec![
            ev(0, "F", In),
            ev(10, "G", In),
            ev(day - 10, "G", Out),
        ]);
        assert!(out.anomalies.is_empty(), "{:?}", out.anomalies);
        // ... then exactly once, however long the clock runs on; G and H, who left, never.
        let out = run(vec![
            ev(0, "F", In),
            ev(10, "G", In),
            ev(40, "G", Out),
            ev(day + 1, "H", In),
            ev(day + 2, "H", Out),
            ev(3 * day, "K", In),
        ]);
        assert_eq!(kinds(&out), vec![AnomalyKind::NoExit]);
        assert_eq!(
            (out.anomalies[0].plate.as_str(), out.anomalies[0].ts),
            ("F", ev(0, "F", In).ts)
        );
        assert_eq!(out.bills.len(), 2);
        // An exit read after all still bills the stay (the record stays for review).
        let out = run(vec![ev(0, "F", In), ev(day + 30, "F", Out)]);
        assert_eq!(kinds(&out), vec![AnomalyKind::NoExit]);
        assert_eq!(out.bills.len(), 1);
    }

    #[test]
    fn out_of_order_events_within_the_lateness_give_the_same_bills() {
        let ordered = vec![
            ev(0, "A", In),
            ev(2, "B", In),
            ev(40, "A", Out),
            ev(41, "B", Out),
        ];
        let shuffled = vec![
            ev(2, "B", In),
            ev(0, "A", In),
            ev(41, "B", Out),
            ev(40, "A", Out),
        ];
        assert_eq!(run(ordered), run(shuffled));
        // An exit read before its entry (both within the lateness) is still one stay.
        let out = run(vec![ev(3, "D", Out), ev(0, "D", In)]);
        assert!(out.anomalies.is_empty());
        // 3 minutes is within the free minutes: a receipt for nothing.
        assert_eq!((out.bills.len(), out.bills[0].amount), (1, Fen(0)));
    }

    #[test]
    fn too_late_is_recorded_not_applied_and_replays_give_the_same_ids() {
        // B's entry at 70 applies everything up to 65; E's read from 30 then comes too late.
        let out = run(vec![
            ev(0, "A", In),
            ev(60, "A", Out),
            ev(70, "B", In),
            ev(30, "E", In),
        ]);
        assert_eq!(kinds(&out), vec![AnomalyKind::Late]);
        let again = run(vec![ev(0, "A", In), ev(60, "A", Out)]);
        assert_eq!(out.bills[0].id, again.bills[0].id);
        assert_ne!(
            BillId::of(LotId(1), "A", ev(0, "A", In).ts),
            BillId::of(LotId(1), "A", ev(1, "A", In).ts)
        );
    }
}
