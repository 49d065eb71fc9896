//! Alerts (告警): the situations on the cockpit that need somebody's decision, opened and
//! closed as the live indices move. No I/O: the board is fed observations (a link's 15
//! minutes, a lot's occupancy) and answers with the changes to store and broadcast.
//!
//! Rules, with hysteresis so an alert does not flicker at a threshold:
//! - **Congestion** (严重拥堵): a link's delay index at or above `congestion_open` (2.0, the
//!   cockpit's "severe") in `congestion_bins` consecutive 15-minute bins (2: half an hour,
//!   so the ordinary peak's passing slowness is not an alert) with at least
//!   `min_traversals` traversals each (20, as the congestion ranking: fewer say too little;
//!   with 10 the demo city's morning peak opened over 300 alerts at once, too many to act on). It closes at the first bin
//!   with enough traversals under `congestion_close` (1.5, back to "slow"), or after
//!   `stale_after_s` without a bin that says anything.
//! - **Lot full** (车位将满): a lot's parking index (occupied / capacity) at or above
//!   `lot_open` (0.95); it closes under `lot_close` (0.90).
//!
//! - **Threshold** (超标): a sensor's reading past a limit a rules file states
//!   ([`threshold`]); its subject is the sensor's entity id (`subject_ref`).
//!
//! An alert's id is its kind, subject and opening time, so the same alert is never opened
//! twice and a replay after a restart yields the same ids.

use std::collections::{BTreeMap, HashMap};

use citybrain_core::{GeoPoint, Timestamp};
use serde::Serialize;

pub mod threshold;

/// The dataset the changes are stored in, and its definition.
pub const DATASET: &str = "alerts.events";
pub const DEFINITION: (&str, &str) = (
    "alerts.events.toml",
    include_str!("../definitions/alerts.events.toml"),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    Congestion,
    LotFull,
    Threshold,
}

impl AlertKind {
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Congestion => "congestion",
            AlertKind::LotFull => "lot_full",
            AlertKind::Threshold => "threshold",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "congestion" => Some(AlertKind::Congestion),
            "lot_full" => Some(AlertKind::LotFull),
            "threshold" => Some(AlertKind::Threshold),
            _ => None,
        }
    }

    /// What the alert's subject is: a `link`, a `lot` (by number), a `sensor` (by
    /// entity id, in `subject_ref`).
    pub fn subject_word(self) -> &'static str {
        match self {
            AlertKind::Congestion => "link",
            AlertKind::LotFull => "lot",
            AlertKind::Threshold => "sensor",
        }
    }
}

/// What an alert is about: a link or a lot, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    pub kind: AlertKind,
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    pub congestion_open: f64,
    pub congestion_close: f64,
    pub congestion_bins: u32,
    pub min_traversals: u64,
    pub stale_after_s: i64,
    pub lot_open: f64,
    pub lot_close: f64,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            congestion_open: 2.0,
            congestion_close: 1.5,
            congestion_bins: 2,
            min_traversals: 20,
            stale_after_s: 3600,
            lot_open: 0.95,
            lot_close: 0.90,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Closed,
}

impl State {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(State::Open),
            "closed" => Some(State::Closed),
            _ => None,
        }
    }
}

/// One change of one alert: a row of `alerts.events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// When the change happened, in the data's time.
    #[serde(serialize_with = "as_text")]
    pub at: Timestamp,
    pub alert_id: String,
    pub kind: &'static str,
    pub state: State,
    /// `link` or `lot`.
    pub subject: &'static str,
    /// The subject's number (links and lots); 0 when `subject_ref` names it.
    pub subject_id: i64,
    /// The subject's id when it is not a number (a sensor's entity id).
    pub subject_ref: Option<String>,
    pub district: Option<String>,
    pub loc: Option<GeoPoint>,
    /// The delay index or parking index that opened the alert, or closed it.
    pub value: f64,
    /// When the alert opened.
    #[serde(serialize_with = "as_text")]
    pub since: Timestamp,
    pub detail: String,
}

fn as_text<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// An alert that is open now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Active {
    pub alert_id: String,
    pub kind: &'static str,
    pub subject: &'static str,
    /// The subject's number (links and lots); 0 when `subject_ref` names it.
    pub subject_id: i64,
    /// The subject's id when it is not a number (a sensor's entity id).
    pub subject_ref: Option<String>,
    pub district: Option<String>,
    pub loc: Option<GeoPoint>,
    #[serde(serialize_with = "as_text")]
    pub since: Timestamp,
    /// The latest value seen, and the worst since the alert opened.
    pub value: f64,
    pub worst: f64,
    #[serde(serialize_with = "as_text")]
    pub updated: Timestamp,
}

/// A link's 15 minutes, as the traffic indices close them.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkBin {
    pub bin: Timestamp,
    pub link_id: i64,
    pub district: String,
    pub delay_index: f64,
    pub traversals: u64,
}

/// A lot's occupancy at an instant, as the parking scene computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LotReading {
    pub at: Timestamp,
    pub lot_id: i64,
    pub district: Option<String>,
    pub parking_index: f64,
    pub free: u32,
    pub capacity: u32,
}

/// What a change says besides its subject and state.
struct Facts {
    at: Timestamp,
    since: Timestamp,
    value: f64,
    district: Option<String>,
    detail: String,
}

/// Per link: the run of severe bins so far, and the last bin that said anything.
#[derive(Debug, Clone, Default)]
struct LinkTrack {
    severe_run: u32,
    run_start: Option<Timestamp>,
    last_bin: Option<Timestamp>,
}

/// The open alerts and what the rules need to remember.
#[derive(Debug, Default)]
pub struct AlertBoard {
    rules: AlertRules,
    places: HashMap<Subject, GeoPoint>,
    links: HashMap<i64, LinkTrack>,
    active: BTreeMap<Subject, Active>,
}

const BIN_S: i64 = 900;

impl AlertBoard {
    pub fn new(rules: AlertRules) -> Self {
        Self {
            rules,
            ..Self::default()
        }
    }

    /// Where links (their midpoints) and lots are, so alerts carry a place.
    pub fn set_place(&mut self, subject: Subject, at: GeoPoint) {
        self.places.insert(subject, at);
    }

    pub fn rules(&self) -> &AlertRules {
        &self.rules
    }

    /// The open alerts, worst first within each kind.
    pub fn active(&self) -> Vec<Active> {
        let mut all: Vec<Active> = self.active.values().cloned().collect();
        all.sort_by(|a, b| {
            a.kind
                .cmp(b.kind)
                .then(b.value.total_cmp(&a.value))
                .then(a.subject_id.cmp(&b.subject_id))
        });
        all
    }

    fn event(&self, subject: Subject, state: State, facts: Facts) -> AlertEvent {
        AlertEvent {
            at: facts.at,
            alert_id: format!(
                "{}/{}/{}",
                subject.kind.name(),
                subject.id,
                facts.since.as_secs()
            ),
            kind: subject.kind.name(),
            state,
            subject: subject.kind.subject_word(),
            subject_id: subject.id,
            subject_ref: None,
            district: facts.district,
            loc: self.places.get(&subject).copied(),
            value: facts.value,
            since: facts.since,
            detail: facts.detail,
        }
    }

    fn open(&mut self, subject: Subject, facts: Facts) -> AlertEvent {
        let (at, since, value) = (facts.at, facts.since, facts.value);
        let event = self.event(subject, State::Open, facts);
        self.active.insert(
            subject,
            Active {
                alert_id: event.alert_id.clone(),
                kind: event.kind,
                subject: event.subject,
                subject_id: subject.id,
                subject_ref: None,
                district: event.district.clone(),
                loc: event.loc,
                since,
                value,
                worst: value,
                updated: at,
            },
        );
        event
    }

    fn close(
        &mut self,
        subject: Subject,
        at: Timestamp,
        value: f64,
        detail: String,
    ) -> Option<AlertEvent> {
        let active = self.active.remove(&subject)?;
        Some(self.event(
            subject,
            State::Closed,
            Facts {
                at,
                since: active.since,
                value,
                district: active.district,
                detail,
            },
        ))
    }

    fn update(&mut self, subject: Subject, at: Timestamp, value: f64) {
        if let Some(a) = self.active.get_mut(&subject) {
            a.value = value;
            a.updated = at;
            // Both kinds are worse when higher.
            a.worst = a.worst.max(value);
        }
    }

    /// Takes closed link bins (any order within a call; each link's bins in time order
    /// across calls, as the indices close them) and returns the changes.
    pub fn links(&mut self, bins: &[LinkBin]) -> Vec<AlertEvent> {
        let mut sorted: Vec<&LinkBin> = bins.iter().collect();
        sorted.sort_by_key(|b| (b.bin, b.link_id));
        let mut out = Vec::new();
        for b in sorted {
            // Staleness is judged by the bins' own clock: a bin of any link closing an hour
            // after the alert's last word means its link had nothing to say meanwhile.
            out.extend(self.expire(b.bin));
            out.extend(self.link_bin(b));
        }
        out
    }

    fn link_bin(&mut self, b: &LinkBin) -> Option<AlertEvent> {
        let rules = self.rules.clone();
        let subject = Subject {
            kind: AlertKind::Congestion,
            id: b.link_id,
        };
        let track = self.links.entry(b.link_id).or_default();
        if b.traversals < rules.min_traversals {
            // Too few traversals to say anything; a long silence is handled by `expire`.
            return None;
        }
        let end = Timestamp(b.bin.0 + BIN_S * 1_000_000);
        let consecutive = track
            .last_bin
            .is_some_and(|last| b.bin.0 - last.0 == BIN_S * 1_000_000);
        track.last_bin = Some(b.bin);
        let severe = b.delay_index >= rules.congestion_open;
        if severe {
            if consecutive && track.severe_run > 0 {
                track.severe_run += 1;
            } else {
                track.severe_run = 1;
                track.run_start = Some(b.bin);
            }
        } else {
            track.severe_run = 0;
            track.run_start = None;
        }
        let (run, run_start) = (track.severe_run, track.run_start);
        if self.active.contains_key(&subject) {
            if b.delay_index < rules.congestion_close {
                return self.close(
                    subject,
                    end,
                    b.delay_index,
                    format!(
                        "delay index {:.2} over {} traversals, under {:.1}",
                        b.delay_index, b.traversals, rules.congestion_close
                    ),
                );
            }
            self.update(subject, end, b.delay_index);
            return None;
        }
        if severe && run >= rules.congestion_bins {
            let since = run_start.unwrap_or(b.bin);
            return Some(self.open(
                subject,
                Facts {
                    at: end,
                    since,
                    value: b.delay_index,
                    district: Some(b.district.clone()),
                    detail: format!(
                        "delay index {:.2} over {} traversals; at or above {:.1} for {} minutes",
                        b.delay_index,
                        b.traversals,
                        rules.congestion_open,
                        (end.0 - since.0) / 60_000_000
                    ),
                },
            ));
        }
        None
    }

    /// Takes lot readings (time order) and returns the changes.
    pub fn lots(&mut self, readings: &[LotReading]) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        for r in readings {
            let subject = Subject {
                kind: AlertKind::LotFull,
                id: r.lot_id,
            };
            let detail = format!(
                "{} of {} berths free (parking index {:.2})",
                r.free, r.capacity, r.parking_index
            );
            if self.active.contains_key(&subject) {
                if r.parking_index < self.rules.lot_close {
                    out.extend(self.close(subject, r.at, r.parking_index, detail));
                } else {
                    self.update(subject, r.at, r.parking_index);
                }
            } else if r.parking_index >= self.rules.lot_open {
                out.push(self.open(
                    subject,
                    Facts {
                        at: r.at,
                        since: r.at,
                        value: r.parking_index,
                        district: r.district.clone(),
                        detail,
                    },
                ));
            }
        }
        out
    }

    /// Closes congestion alerts whose link has said nothing for `stale_after_s` by `now`
    /// (the start of the newest closed bin).
    pub fn expire(&mut self, now: Timestamp) -> Vec<AlertEvent> {
        let stale: Vec<(Subject, Timestamp)> = self
            .active
            .iter()
            .filter(|(s, a)| {
                s.kind == AlertKind::Congestion
                    && now.0 - a.updated.0 >= self.rules.stale_after_s * 1_000_000
            })
            .map(|(s, a)| (*s, a.updated))
            .collect();
        let mut out = Vec::new();
        for (subject, updated) in stale {
            let value = self.active[&subject].value;
            out.extend(self.close(
                subject,
                now,
                value,
                format!("no bin with enough traversals since {updated}; closed as stale"),
            ));
        }
        out
    }

    /// After a restart: the board was rebuilt by replaying what was stored (its changes not
    /// stored again), and `stored_open` are the alerts the dataset says are open. Returns
    /// the changes that make the two agree: alerts the replay opened that were never stored
    /// (the crash came first), and stored ones the replay closed or never opened.
    pub fn reconcile(
        &mut self,
        kind: AlertKind,
        stored_open: &[AlertEvent],
        now: Timestamp,
    ) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        let stored: HashMap<&str, &AlertEvent> = stored_open
            .iter()
            .map(|e| (e.alert_id.as_str(), e))
            .collect();
        for (subject, active) in &self.active {
            if subject.kind == kind && !stored.contains_key(active.alert_id.as_str()) {
                out.push(self.event(
                    *subject,
                    State::Open,
                    Facts {
                        at: active.since,
                        since: active.since,
                        value: active.value,
                        district: active.district.clone(),
                        detail: "opened while citybrain was restarting".to_string(),
                    },
                ));
            }
        }
        let open_now: std::collections::HashSet<&str> =
            self.active.values().map(|a| a.alert_id.as_str()).collect();
        for e in stored_open {
            if AlertKind::parse(e.kind) == Some(kind) && !open_now.contains(e.alert_id.as_str()) {
                let mut closed = e.clone();
                closed.state = State::Closed;
                closed.at = now;
                closed.detail = "closed while citybrain was restarting".to_string();
                out.push(closed);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> Timestamp {
        Timestamp::from_secs(1_763_769_600 + min * 60)
    }

    fn bin(min: i64, link: i64, di: f64, n: u64) -> LinkBin {
        LinkBin {
            bin: t(min),
            link_id: link,
            district: "zone_nw".into(),
            delay_index: di,
            traversals: n,
        }
    }

    #[test]
    fn congestion_opens_after_two_severe_bins_and_closes_below_the_lower_threshold() {
        let mut board = AlertBoard::new(AlertRules::default());
        assert!(
            board.links(&[bin(0, 7, 2.4, 30)]).is_empty(),
            "one bin is not yet an alert"
        );
        let opened = board.links(&[bin(15, 7, 2.2, 30)]);
        assert_eq!(opened.len(), 1);
        let e = &opened[0];
        assert_eq!(
            (e.kind, e.state, e.subject_id),
            ("congestion", State::Open, 7)
        );
        assert_eq!(e.since, t(0), "the alert dates from the first severe bin");
        assert_eq!(e.at, t(30), "known when the second bin closed");
        assert_eq!(board.active().len(), 1);
        // Between the thresholds: still open, no change stored.
        assert!(board.links(&[bin(30, 7, 1.7, 30)]).is_empty());
        assert_eq!(board.active()[0].value, 1.7);
        assert_eq!(board.active()[0].worst, 2.2);
        let closed = board.links(&[bin(45, 7, 1.3, 30)]);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].state, State::Closed);
        assert_eq!(closed[0].alert_id, e.alert_id);
        assert!(board.active().is_empty());
    }

    #[test]
    fn thin_bins_and_gaps_do_not_make_a_run() {
        let mut board = AlertBoard::new(AlertRules::default());
        // A thin bin says nothing; a gap between severe bins breaks the run.
        assert!(
            board
                .links(&[bin(0, 1, 3.0, 30), bin(15, 1, 3.0, 4)])
                .is_empty()
        );
        assert!(board.links(&[bin(30, 1, 3.0, 30)]).is_empty());
        assert_eq!(board.links(&[bin(45, 1, 3.0, 30)]).len(), 1);
        // Silent for an hour: closed as stale.
        assert!(board.expire(t(100)).is_empty());
        let stale = board.expire(t(60 + 60));
        assert_eq!(stale.len(), 1);
        assert!(stale[0].detail.contains("stale"));
    }

    #[test]
    fn a_lot_alert_has_hysteresis() {
        let mut board = AlertBoard::new(AlertRules::default());
        let r = |min, idx: f64| LotReading {
            at: t(min),
            lot_id: 3,
            district: None,
            parking_index: idx,
            free: ((1.0 - idx) * 100.0) as u32,
            capacity: 100,
        };
        let changes = board.lots(&[r(0, 0.9), r(5, 0.96), r(10, 0.93), r(15, 0.89)]);
        let states: Vec<_> = changes.iter().map(|e| (e.state, e.at)).collect();
        assert_eq!(states, vec![(State::Open, t(5)), (State::Closed, t(15))]);
        assert!(changes[0].detail.contains("4 of 100 berths free"));
    }

    #[test]
    fn reconcile_stores_what_a_crash_lost_and_only_that() {
        let mut board = AlertBoard::new(AlertRules::default());
        let opened = board.links(&[
            bin(0, 7, 2.4, 30),
            bin(15, 7, 2.4, 30),
            bin(0, 8, 2.4, 30),
            bin(15, 8, 2.4, 30),
        ]);
        assert_eq!(opened.len(), 2);
        // The store had link 7's open (so nothing to add) and an alert on link 9 the replay
        // no longer has open (to be closed); link 8's open was lost in the crash.
        let mut gone = opened[0].clone();
        gone.alert_id = "congestion/9/1".into();
        gone.subject_id = 9;
        let fixes = board.reconcile(AlertKind::Congestion, &[opened[0].clone(), gone], t(40));
        let summary: Vec<_> = fixes.iter().map(|e| (e.subject_id, e.state)).collect();
        assert_eq!(summary, vec![(8, State::Open), (9, State::Closed)]);
        assert!(board.reconcile(AlertKind::LotFull, &[], t(40)).is_empty());
    }
}
