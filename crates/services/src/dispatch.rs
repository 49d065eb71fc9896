//! Events to the nearest worker (烟感/跌倒报警 → 网格员): an alarm goes to the available grid
//! worker who can be there first by road, on an SLA clock: not acknowledged within a minute,
//! the next one; not on site within three minutes of the alarm, escalated to the community
//! office. Every step is a [`Step`] the scene stores.
//!
//! Distance is by the city's road network (directed links between intersections): the event
//! and each worker are snapped to their nearest intersection, the legs to and from it count
//! at 1.3 times the straight line, and one Dijkstra search over the reversed links from the
//! event's intersection settles intersections in order of travel time until no unsettled one
//! could beat the best worker found. Workers ride at 15 km/h (an e-bike in a city street).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use citybrain_core::{GeoPoint, Timestamp};
use serde::{Deserialize, Serialize};

/// Metres per second on the road (15 km/h).
pub const SPEED_MPS: f64 = 15.0 / 3.6;
/// A leg off the network (to or from the nearest intersection) is this much longer than
/// the straight line.
pub const DETOUR: f64 = 1.3;
/// Seconds a worker has to acknowledge before the next one is asked.
pub const ACK_S: i64 = 60;
/// Seconds from the alarm by which someone must be on site, or it escalates.
pub const SITE_S: i64 = 180;

/// Cell size of the snapping index, in degrees (about 250 m).
const CELL_DEG: f64 = 0.0025;

/// The disc that holds a city's points: their centre and the distance from it within which
/// nine in ten lie (at least 500 m). Where the demo puts its people on a road network.
pub fn disc(points: &[GeoPoint]) -> Option<(GeoPoint, f64)> {
    if points.is_empty() {
        return None;
    }
    let n = points.len() as f64;
    let centre = GeoPoint {
        lon: points.iter().map(|p| p.lon).sum::<f64>() / n,
        lat: points.iter().map(|p| p.lat).sum::<f64>() / n,
    };
    let mut d: Vec<f64> = points.iter().map(|p| p.distance_m(&centre)).collect();
    d.sort_by(f64::total_cmp);
    Some((centre, d[(d.len() * 9 / 10).min(d.len() - 1)].max(500.0)))
}

/// The road network as a routing graph.
#[derive(Debug, Clone, Default)]
pub struct Roads {
    nodes: Vec<GeoPoint>,
    /// Per node: (node it comes from, metres), i.e. the links reversed.
    incoming: Vec<Vec<(u32, f32)>>,
    cells: HashMap<(i32, i32), Vec<u32>>,
}

fn cell(p: GeoPoint) -> (i32, i32) {
    (
        (p.lon / CELL_DEG).floor() as i32,
        (p.lat / CELL_DEG).floor() as i32,
    )
}

impl Roads {
    /// Intersections and directed links (from, to, length in metres).
    pub fn new(nodes: Vec<GeoPoint>, links: &[(u32, u32, f64)]) -> Self {
        let mut incoming = vec![Vec::new(); nodes.len()];
        for (from, to, length) in links {
            if (*from as usize) < nodes.len() && (*to as usize) < nodes.len() {
                incoming[*to as usize].push((*from, *length as f32));
            }
        }
        let mut cells: HashMap<(i32, i32), Vec<u32>> = HashMap::new();
        for (i, p) in nodes.iter().enumerate() {
            cells.entry(cell(*p)).or_default().push(i as u32);
        }
        Self {
            nodes,
            incoming,
            cells,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nearest intersection and the straight line to it in metres: rings of cells
    /// outwards until the next ring cannot hold a nearer one.
    pub fn snap(&self, p: GeoPoint) -> Option<(u32, f64)> {
        if self.nodes.is_empty() {
            return None;
        }
        let (cx, cy) = cell(p);
        let ring_m = CELL_DEG * 111_320.0 * p.lat.to_radians().cos();
        let mut best: Option<(u32, f64)> = None;
        for r in 0..2_000i32 {
            for x in cx - r..=cx + r {
                for y in cy - r..=cy + r {
                    if (x - cx).abs() != r && (y - cy).abs() != r {
                        continue;
                    }
                    for n in self.cells.get(&(x, y)).into_iter().flatten() {
                        let d = p.distance_m(&self.nodes[*n as usize]);
                        if best.is_none_or(|b| d < b.1) {
                            best = Some((*n, d));
                        }
                    }
                }
            }
            // Anything in ring r + 1 is at least r cells away.
            if best.is_some_and(|b| b.1 <= f64::from(r) * ring_m) {
                break;
            }
        }
        best
    }
}

/// A worker as dispatch sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub id: String,
    pub grid: String,
    pub at: GeoPoint,
    pub on_duty: bool,
    /// Handling an alarm (assigned and not yet released).
    pub busy: bool,
    node: u32,
    leg_m: f64,
}

/// Every worker, by intersection.
#[derive(Debug, Clone, Default)]
pub struct Workers {
    list: Vec<Worker>,
    index: HashMap<String, u32>,
    by_node: HashMap<u32, Vec<u32>>,
}

impl Workers {
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    pub fn get(&self, i: u32) -> &Worker {
        &self.list[i as usize]
    }
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }
    pub fn set_busy(&mut self, i: u32, busy: bool) {
        self.list[i as usize].busy = busy;
    }

    /// A worker's position and duty (a new worker, or a move).
    pub fn set(&mut self, roads: &Roads, id: &str, grid: &str, at: GeoPoint, on_duty: bool) {
        let Some((node, leg_m)) = roads.snap(at) else {
            return;
        };
        let i = match self.index.get(id) {
            Some(i) => {
                let old = self.list[*i as usize].node;
                if let Some(v) = self.by_node.get_mut(&old) {
                    v.retain(|w| w != i);
                }
                let w = &mut self.list[*i as usize];
                w.grid = grid.to_string();
                w.at = at;
                w.on_duty = on_duty;
                w.node = node;
                w.leg_m = leg_m;
                *i
            }
            None => {
                let i = self.list.len() as u32;
                self.list.push(Worker {
                    id: id.to_string(),
                    grid: grid.to_string(),
                    at,
                    on_duty,
                    busy: false,
                    node,
                    leg_m,
                });
                self.index.insert(id.to_string(), i);
                i
            }
        };
        self.by_node.entry(node).or_default().push(i);
    }
}

/// Seconds for `worker` to reach `at` by road, or None when no road leads there.
pub fn travel_s(roads: &Roads, worker: &Worker, at: GeoPoint) -> Option<f64> {
    let (target, leg) = roads.snap(at)?;
    let mut dist = vec![f64::INFINITY; roads.len()];
    let mut heap = BinaryHeap::new();
    dist[target as usize] = 0.0;
    heap.push(Reverse((0u64, target)));
    while let Some(Reverse((d_mm, n))) = heap.pop() {
        let d = d_mm as f64 / 1000.0;
        if d > dist[n as usize] {
            continue;
        }
        if n == worker.node {
            return Some(((worker.leg_m + leg) * DETOUR + d) / SPEED_MPS);
        }
        for (from, len) in &roads.incoming[n as usize] {
            let nd = d + f64::from(*len);
            if nd < dist[*from as usize] {
                dist[*from as usize] = nd;
                heap.push(Reverse(((nd * 1000.0) as u64, *from)));
            }
        }
    }
    None
}

/// The available worker (on duty, not busy, not in `exclude`) who reaches `at` first by
/// road, with the seconds it takes; or None.
pub fn nearest(
    roads: &Roads,
    workers: &Workers,
    at: GeoPoint,
    exclude: &HashSet<u32>,
) -> Option<(u32, f64)> {
    let (target, event_leg) = roads.snap(at)?;
    let event_leg_m = event_leg * DETOUR;
    let mut dist = vec![f64::INFINITY; roads.len()];
    let mut heap = BinaryHeap::new();
    dist[target as usize] = 0.0;
    heap.push(Reverse((0u64, target)));
    let mut best: Option<(u32, f64)> = None;
    while let Some(Reverse((d_mm, n))) = heap.pop() {
        let d = d_mm as f64 / 1000.0;
        if d > dist[n as usize] {
            continue;
        }
        // Metres: no intersection settled later can beat the best (legs are ≥ 0).
        if best.is_some_and(|b| d + event_leg_m >= b.1) {
            break;
        }
        for w in self_workers(workers, n) {
            let worker = &workers.list[*w as usize];
            if !worker.on_duty || worker.busy || exclude.contains(w) {
                continue;
            }
            let total = d + event_leg_m + worker.leg_m * DETOUR;
            if best.is_none_or(|b| total < b.1) {
                best = Some((*w, total));
            }
        }
        for (from, len) in &roads.incoming[n as usize] {
            let nd = d + f64::from(*len);
            if nd < dist[*from as usize] {
                dist[*from as usize] = nd;
                heap.push(Reverse(((nd * 1000.0) as u64, *from)));
            }
        }
    }
    best.map(|(w, metres)| (w, metres / SPEED_MPS))
}

fn self_workers(workers: &Workers, node: u32) -> &[u32] {
    workers.by_node.get(&node).map_or(&[], Vec::as_slice)
}

/// An alarm as it arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub alarm_id: String,
    /// smoke, fall, water_leak, ...
    pub kind: String,
    pub loc: GeoPoint,
    #[serde(with = "citybrain_core::time::as_text")]
    pub raised_at: Timestamp,
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Asked to go; `eta_s` by road.
    Assigned {
        eta_s: f64,
    },
    Acknowledged,
    /// Did not acknowledge in time; the next is asked.
    TimedOut,
    OnSite,
    /// Nobody on site within [`SITE_S`], or nobody available: to the community office.
    Escalated {
        why: &'static str,
    },
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Assigned { .. } => "assigned",
            StepKind::Acknowledged => "acknowledged",
            StepKind::TimedOut => "timed_out",
            StepKind::OnSite => "on_site",
            StepKind::Escalated { .. } => "escalated",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub alarm_id: String,
    /// The step's number within the alarm (its id is the alarm's and this).
    pub seq: u32,
    pub kind: StepKind,
    pub worker: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
struct Case {
    alarm: Alarm,
    tried: HashSet<u32>,
    /// The worker asked now, when they were asked, whether they acknowledged.
    current: Option<(u32, Timestamp, bool)>,
    on_site: bool,
    escalated: bool,
    steps: u32,
}

/// Alarms being handled, on a clock the caller passes in.
#[derive(Debug, Clone, Default)]
pub struct Dispatcher {
    cases: HashMap<String, Case>,
}

/// A report refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("no alarm {0} being handled")]
    UnknownAlarm(String),
    #[error("alarm {alarm} is not assigned to {worker} now")]
    NotAssigned { alarm: String, worker: String },
}

impl Dispatcher {
    pub fn len(&self) -> usize {
        self.cases.len()
    }
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    fn step(case: &mut Case, kind: StepKind, worker: Option<&Worker>, at: Timestamp) -> Step {
        case.steps += 1;
        Step {
            alarm_id: case.alarm.alarm_id.clone(),
            seq: case.steps,
            kind,
            worker: worker.map(|w| w.id.clone()),
            at,
        }
    }

    fn assign(case: &mut Case, roads: &Roads, workers: &mut Workers, now: Timestamp) -> Vec<Step> {
        match nearest(roads, workers, case.alarm.loc, &case.tried) {
            Some((w, eta_s)) => {
                case.tried.insert(w);
                case.current = Some((w, now, false));
                workers.set_busy(w, true);
                vec![Self::step(
                    case,
                    StepKind::Assigned { eta_s },
                    Some(workers.get(w)),
                    now,
                )]
            }
            None => {
                case.current = None;
                if case.escalated {
                    return Vec::new();
                }
                case.escalated = true;
                vec![Self::step(
                    case,
                    StepKind::Escalated {
                        why: "no worker available",
                    },
                    None,
                    now,
                )]
            }
        }
    }

    /// A new alarm: the nearest available worker is asked (a second raise of one id is
    /// ignored).
    pub fn raise(
        &mut self,
        roads: &Roads,
        workers: &mut Workers,
        alarm: Alarm,
        now: Timestamp,
    ) -> Vec<Step> {
        if self.cases.contains_key(&alarm.alarm_id) {
            return Vec::new();
        }
        let mut case = Case {
            alarm,
            tried: HashSet::new(),
            current: None,
            on_site: false,
            escalated: false,
            steps: 0,
        };
        let steps = Self::assign(&mut case, roads, workers, now);
        self.cases.insert(case.alarm.alarm_id.clone(), case);
        steps
    }

    fn current(&mut self, alarm: &str, worker: u32) -> Result<&mut Case, ReportError> {
        let case = self
            .cases
            .get_mut(alarm)
            .ok_or_else(|| ReportError::UnknownAlarm(alarm.to_string()))?;
        match case.current {
            Some((w, _, _)) if w == worker => Ok(case),
            _ => Err(ReportError::NotAssigned {
                alarm: alarm.to_string(),
                worker: worker.to_string(),
            }),
        }
    }

    /// The worker asked says they are going.
    pub fn acknowledge(
        &mut self,
        workers: &Workers,
        alarm: &str,
        worker: u32,
        now: Timestamp,
    ) -> Result<Vec<Step>, ReportError> {
        let case = self.current(alarm, worker)?;
        match case.current {
            Some((_, _, true)) => Ok(Vec::new()),
            Some((w, asked, false)) => {
                case.current = Some((w, asked, true));
                Ok(vec![Self::step(
                    case,
                    StepKind::Acknowledged,
                    Some(workers.get(w)),
                    now,
                )])
            }
            None => Ok(Vec::new()),
        }
    }

    /// The worker is there: the case ends and the worker is free again.
    pub fn on_site(
        &mut self,
        workers: &mut Workers,
        alarm: &str,
        worker: u32,
        now: Timestamp,
    ) -> Result<Vec<Step>, ReportError> {
        let case = self.current(alarm, worker)?;
        case.on_site = true;
        let step = Self::step(case, StepKind::OnSite, Some(workers.get(worker)), now);
        self.cases.remove(alarm);
        workers.set_busy(worker, false);
        Ok(vec![step])
    }

    /// The clock moved to `now`: unacknowledged workers are replaced, late alarms escalate.
    pub fn tick(&mut self, roads: &Roads, workers: &mut Workers, now: Timestamp) -> Vec<Step> {
        let mut out = Vec::new();
        let mut ids: Vec<String> = self.cases.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let case = self.cases.get_mut(&id).expect("listed");
            if let Some((w, asked, false)) = case.current
                && now.0 >= asked.0 + ACK_S * 1_000_000
            {
                let at = Timestamp(asked.0 + ACK_S * 1_000_000);
                out.push(Self::step(
                    case,
                    StepKind::TimedOut,
                    Some(workers.get(w)),
                    at,
                ));
                workers.set_busy(w, false);
                out.extend(Self::assign(case, roads, workers, at));
            }
            let deadline = case.alarm.raised_at.0 + SITE_S * 1_000_000;
            if !case.escalated && !case.on_site && now.0 >= deadline {
                case.escalated = true;
                out.push(Self::step(
                    case,
                    StepKind::Escalated {
                        why: "nobody on site within three minutes",
                    },
                    None,
                    Timestamp(deadline),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3 × 3 grid of intersections 200 m apart, two-way streets.
    fn grid() -> Roads {
        let mut nodes = Vec::new();
        for y in 0..3 {
            for x in 0..3 {
                nodes.push(GeoPoint {
                    lon: 120.0 + f64::from(x) * 200.0 / (111_320.0 * 30f64.to_radians().cos()),
                    lat: 30.0 + f64::from(y) * 200.0 / 111_320.0,
                });
            }
        }
        let mut links = Vec::new();
        for i in 0..9u32 {
            if i % 3 < 2 {
                links.push((i, i + 1, 200.0));
                links.push((i + 1, i, 200.0));
            }
            if i < 6 {
                links.push((i, i + 3, 200.0));
                links.push((i + 3, i, 200.0));
            }
        }
        Roads::new(nodes, &links)
    }

    #[test]
    fn the_nearest_by_road_and_the_sla_clock() {
        let roads = grid();
        let node = |i: usize| roads.nodes[i];
        let mut workers = Workers::default();
        workers.set(&roads, "far", "g1", node(8), true);
        workers.set(&roads, "near", "g2", node(1), true);
        workers.set(&roads, "off", "g2", node(0), false);
        assert_eq!(roads.snap(node(4)).unwrap().0, 4);
        let (w, eta) = nearest(&roads, &workers, node(0), &HashSet::new()).unwrap();
        assert_eq!(workers.get(w).id, "near");
        assert!((eta - 200.0 / SPEED_MPS).abs() < 0.5, "{eta}");
        let t0 = Timestamp(1_000_000_000);
        let mut d = Dispatcher::default();
        let alarm = Alarm {
            alarm_id: "A1".into(),
            kind: "smoke".into(),
            loc: node(0),
            raised_at: t0,
        };
        let steps = d.raise(&roads, &mut workers, alarm.clone(), t0);
        assert_eq!(steps[0].worker.as_deref(), Some("near"));
        assert!(d.raise(&roads, &mut workers, alarm, t0).is_empty());
        // No answer in a minute: the next nearest is asked.
        let steps = d.tick(&roads, &mut workers, Timestamp(t0.0 + 61_000_000));
        let names: Vec<&str> = steps.iter().map(|s| s.kind.name()).collect();
        assert_eq!(names, ["timed_out", "assigned"]);
        assert_eq!(steps[1].worker.as_deref(), Some("far"));
        let far = workers.index_of("far").unwrap();
        assert!(
            d.acknowledge(&workers, "A1", workers.index_of("near").unwrap(), t0)
                .is_err()
        );
        d.acknowledge(&workers, "A1", far, Timestamp(t0.0 + 70_000_000))
            .unwrap();
        // Three minutes pass with nobody there: escalated once.
        let steps = d.tick(&roads, &mut workers, Timestamp(t0.0 + 181_000_000));
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].kind.name(), "escalated");
        assert!(
            d.tick(&roads, &mut workers, Timestamp(t0.0 + 200_000_000))
                .is_empty()
        );
        let steps = d
            .on_site(&mut workers, "A1", far, Timestamp(t0.0 + 250_000_000))
            .unwrap();
        assert_eq!(steps[0].seq, 6);
        assert!(!workers.get(far).busy);
    }
}
