//! A city's road network from its GIS files, as the hub's link table: links between
//! adjacent checkpoints (the cameras) with their length and free-flow time.
//!
//! Roads come as GeoJSON lines (`geojson`) or an OpenStreetMap extract (`osm`),
//! checkpoints as points. Each checkpoint is
//! snapped to the nearest road within `snap_m` and splits it there; then from each
//! checkpoint a shortest-time search follows the roads (their directions) until it meets
//! other checkpoints: each one met first along a path is a link. Free-flow time is length
//! at the road's speed limit, or at a speed by road class when it has none. A link's
//! district is its upstream checkpoint's, by point in polygon when district polygons are
//! given. Distances are on a local flat projection around the network's centre, exact to
//! well under 0.5 % across a city.
//!
//! No file I/O: bytes in, rows out (the CLI's `network import` reads and writes the files).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

pub mod geojson;
pub mod osm;

pub use geojson::{parse_checkpoints, parse_districts, parse_roads};
pub use osm::parse_osm_pbf;

/// Which way a road may be driven, relative to the order of its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneWay {
    Both,
    Forward,
    Backward,
}

/// One road line.
#[derive(Debug, Clone)]
pub struct Road {
    /// `(lon, lat)` in order.
    pub points: Vec<(f64, f64)>,
    pub oneway: OneWay,
    pub speed_mps: f64,
    /// The speed is the default, for want of a limit or a known class.
    pub speed_by_default: bool,
    pub lanes: Option<u32>,
}

/// A camera site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checkpoint {
    pub id: i64,
    pub lon: f64,
    pub lat: f64,
}

/// A named district: polygons, each an outer ring then holes.
#[derive(Debug, Clone)]
pub struct District {
    pub name: String,
    pub polygons: Vec<Vec<Vec<(f64, f64)>>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A checkpoint further than this from every road is left out (and listed).
    pub snap_m: f64,
    /// A checkpoint this close to an intersection (a point where two roads or three road
    /// pieces meet) is taken to be at it: a camera there sees every approach.
    pub intersection_m: f64,
    /// Links longer than this are not searched for (checkpoints that far apart are not
    /// adjacent in any useful sense).
    pub max_link_m: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            snap_m: 50.0,
            intersection_m: 30.0,
            max_link_m: 5_000.0,
        }
    }
}

/// A row of `transport.links`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    pub link_id: i64,
    pub from: i64,
    pub to: i64,
    pub length_m: f64,
    pub freeflow_s: f64,
    /// The fewest lanes along the link, when every road on it says.
    pub lanes: Option<u32>,
    pub district: Option<String>,
}

/// A row of `transport.checkpoints`: where the checkpoint was snapped to.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRow {
    pub id: i64,
    pub lon: f64,
    pub lat: f64,
    pub district: Option<String>,
    /// How far it was moved onto its road, in metres.
    pub snapped_m: f64,
}

/// What an import made, and what it could not use.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub links: Vec<LinkRow>,
    pub checkpoints: Vec<CheckpointRow>,
    /// Checkpoints with no road within `snap_m`: (id, distance to the nearest road in m,
    /// or infinity when there is none).
    pub unmatched: Vec<(i64, f64)>,
    /// Checkpoints on the network that no link leaves or reaches.
    pub isolated: Vec<i64>,
    /// Checkpoint ids given more than once (the first is kept).
    pub duplicates: Vec<i64>,
    /// Roads whose speed is the default.
    pub roads_at_default_speed: usize,
}

/// A flat projection in metres around a centre.
#[derive(Debug, Clone, Copy)]
struct Projection {
    lon0: f64,
    lat0: f64,
    kx: f64,
    ky: f64,
}

impl Projection {
    fn around(points: impl Iterator<Item = (f64, f64)>) -> Self {
        let (mut n, mut lon, mut lat) = (0.0, 0.0, 0.0);
        for (x, y) in points {
            n += 1.0;
            lon += x;
            lat += y;
        }
        let (lon0, lat0) = if n > 0.0 {
            (lon / n, lat / n)
        } else {
            (0.0, 0.0)
        };
        // Metres per degree at the centre (WGS-84 ellipsoid, first terms).
        let phi = lat0.to_radians();
        let ky = 111_132.92 - 559.82 * (2.0 * phi).cos() + 1.175 * (4.0 * phi).cos();
        let kx = 111_412.84 * phi.cos() - 93.5 * (3.0 * phi).cos();
        Self { lon0, lat0, kx, ky }
    }

    fn xy(&self, (lon, lat): (f64, f64)) -> (f64, f64) {
        ((lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky)
    }

    fn lonlat(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (self.lon0 + x / self.kx, self.lat0 + y / self.ky)
    }
}

/// A drivable piece between two nodes.
#[derive(Debug, Clone, Copy)]
struct Segment {
    a: usize,
    b: usize,
    forward: bool,
    backward: bool,
    speed: f64,
    lanes: Option<u32>,
}

fn dist(p: (f64, f64), q: (f64, f64)) -> f64 {
    ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt()
}

/// The point of segment pq nearest to c, as (t along pq in 0..=1, distance).
fn project(c: (f64, f64), p: (f64, f64), q: (f64, f64)) -> (f64, f64) {
    let (dx, dy) = (q.0 - p.0, q.1 - p.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((c.0 - p.0) * dx + (c.1 - p.1) * dy) / len2).clamp(0.0, 1.0)
    };
    (t, dist(c, (p.0 + t * dx, p.1 + t * dy)))
}

fn inside_ring(p: (f64, f64), ring: &[(f64, f64)]) -> bool {
    let mut inside = false;
    let mut j = ring.len().wrapping_sub(1);
    for i in 0..ring.len() {
        let (a, b) = (ring[i], ring[j]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < (b.0 - a.0) * (p.1 - a.1) / (b.1 - a.1) + a.0 {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// The first district whose polygon holds `p` (lon, lat).
pub fn district_of(p: (f64, f64), districts: &[District]) -> Option<&str> {
    districts
        .iter()
        .find(|d| {
            d.polygons.iter().any(|rings| {
                rings.first().is_some_and(|outer| inside_ring(p, outer))
                    && !rings[1..].iter().any(|hole| inside_ring(p, hole))
            })
        })
        .map(|d| d.name.as_str())
}

/// A directed arc: (to, length in m, free-flow time in s, lanes).
type Arc = (usize, f64, f64, Option<u32>);

/// Grid of segments by cell, for finding the roads near a point.
struct Grid {
    cell: f64,
    cells: HashMap<(i64, i64), Vec<usize>>,
    /// Segments too long to file cell by cell (a line across a continent would be millions
    /// of cells; found by fuzzing): looked at for every point.
    long: Vec<usize>,
}

/// Cells a segment may be filed under before it counts as long.
const MAX_CELLS: i64 = 1024;

impl Grid {
    fn new(cell: f64, nodes: &[(f64, f64)], segments: &[Segment]) -> Self {
        let mut cells: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
        let mut long = Vec::new();
        for (k, s) in segments.iter().enumerate() {
            let (p, q) = (nodes[s.a], nodes[s.b]);
            let (x0, x1) = (p.0.min(q.0), p.0.max(q.0));
            let (y0, y1) = (p.1.min(q.1), p.1.max(q.1));
            let (cx0, cx1) = ((x0 / cell).floor() as i64, (x1 / cell).floor() as i64);
            let (cy0, cy1) = ((y0 / cell).floor() as i64, (y1 / cell).floor() as i64);
            let span = (cx1 - cx0 + 1).saturating_mul(cy1 - cy0 + 1);
            if !(0..=MAX_CELLS).contains(&span) {
                long.push(k);
                continue;
            }
            for cx in cx0..=cx1 {
                for cy in cy0..=cy1 {
                    cells.entry((cx, cy)).or_default().push(k);
                }
            }
        }
        Self { cell, cells, long }
    }

    /// Segments in the cells within one cell of `p`.
    fn near(&self, p: (f64, f64)) -> impl Iterator<Item = usize> + '_ {
        let (cx, cy) = (
            (p.0 / self.cell).floor() as i64,
            (p.1 / self.cell).floor() as i64,
        );
        (cx - 1..=cx + 1)
            .flat_map(move |x| (cy - 1..=cy + 1).map(move |y| (x, y)))
            .filter_map(|c| self.cells.get(&c))
            .flatten()
            .chain(&self.long)
            .copied()
    }
}

#[derive(Debug, PartialEq)]
struct Queued {
    time: f64,
    node: usize,
}

impl Eq for Queued {}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // A min-heap on time.
        other
            .time
            .total_cmp(&self.time)
            .then(other.node.cmp(&self.node))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Builds the link table of `checkpoints` over `roads`.
pub fn import(
    roads: &[Road],
    checkpoints: &[Checkpoint],
    districts: &[District],
    options: Options,
) -> Imported {
    let proj = Projection::around(roads.iter().flat_map(|r| r.points.iter().copied()));
    let mut out = Imported {
        roads_at_default_speed: roads.iter().filter(|r| r.speed_by_default).count(),
        ..Imported::default()
    };
    // Nodes are the roads' points, shared where roads share a point (to 1 cm).
    let mut nodes: Vec<(f64, f64)> = Vec::new();
    let mut node_of: HashMap<(i64, i64), usize> = HashMap::new();
    let mut segments = Vec::new();
    // Per node, the last road through it and how many roads meet there.
    let mut roads_at: Vec<(usize, u32)> = Vec::new();
    for (r, road) in roads.iter().enumerate() {
        let mut last: Option<usize> = None;
        for &p in &road.points {
            let xy = proj.xy(p);
            let key = ((xy.0 * 100.0).round() as i64, (xy.1 * 100.0).round() as i64);
            let n = *node_of.entry(key).or_insert_with(|| {
                nodes.push(xy);
                roads_at.push((usize::MAX, 0));
                nodes.len() - 1
            });
            if roads_at[n].0 != r {
                roads_at[n] = (r, roads_at[n].1 + 1);
            }
            if let Some(a) = last
                && a != n
            {
                segments.push(Segment {
                    a,
                    b: n,
                    forward: road.oneway != OneWay::Backward,
                    backward: road.oneway != OneWay::Forward,
                    speed: road.speed_mps.max(0.1),
                    lanes: road.lanes,
                });
            }
            last = Some(n);
        }
    }

    // Snap each checkpoint to its nearest intersection, or else its nearest segment.
    let grid = Grid::new(
        options.snap_m.max(options.intersection_m).max(1.0),
        &nodes,
        &segments,
    );
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for s in &segments {
        for (x, y) in [(s.a, s.b), (s.b, s.a)] {
            if !neighbours[x].contains(&y) {
                neighbours[x].push(y);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut snaps: HashMap<usize, Vec<(f64, usize)>> = HashMap::new();
    let mut checkpoint_node: Vec<(i64, usize)> = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for c in checkpoints {
        if !seen.insert(c.id) {
            out.duplicates.push(c.id);
            continue;
        }
        let xy = proj.xy((c.lon, c.lat));
        let crossing = grid
            .near(xy)
            .flat_map(|k| [segments[k].a, segments[k].b])
            .filter(|&n| (neighbours[n].len() >= 3 || roads_at[n].1 >= 2) && !taken.contains(&n))
            .map(|n| (dist(xy, nodes[n]), n))
            .filter(|(d, _)| *d <= options.intersection_m)
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        if let Some((d, n)) = crossing {
            taken.insert(n);
            checkpoint_node.push((c.id, n));
            let (lon, lat) = proj.lonlat(nodes[n]);
            out.checkpoints.push(CheckpointRow {
                id: c.id,
                lon,
                lat,
                district: district_of((c.lon, c.lat), districts).map(str::to_string),
                snapped_m: d,
            });
            continue;
        }
        let best = grid
            .near(xy)
            .map(|k| {
                let (t, d) = project(xy, nodes[segments[k].a], nodes[segments[k].b]);
                (d, k, t)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        match best {
            Some((d, k, t)) if d <= options.snap_m => {
                let (p, q) = (nodes[segments[k].a], nodes[segments[k].b]);
                let at = (p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1));
                // On (within a metre of) a road's point, usually an intersection: the
                // checkpoint is that node, so every road through it passes the camera.
                let end = [segments[k].a, segments[k].b]
                    .into_iter()
                    .find(|&e| dist(nodes[e], at) < 1.0 && !taken.contains(&e));
                let n = match end {
                    Some(e) => e,
                    None => {
                        nodes.push(at);
                        let n = nodes.len() - 1;
                        snaps.entry(k).or_default().push((t, n));
                        n
                    }
                };
                taken.insert(n);
                checkpoint_node.push((c.id, n));
                let (lon, lat) = proj.lonlat(at);
                out.checkpoints.push(CheckpointRow {
                    id: c.id,
                    lon,
                    lat,
                    district: district_of((c.lon, c.lat), districts).map(str::to_string),
                    snapped_m: d,
                });
            }
            other => out
                .unmatched
                .push((c.id, other.map_or(f64::INFINITY, |b| b.0))),
        }
    }
    // Split the segments checkpoints sit on.
    let mut split = Vec::with_capacity(segments.len() + checkpoint_node.len());
    for (k, s) in segments.iter().enumerate() {
        match snaps.get_mut(&k) {
            None => split.push(*s),
            Some(on) => {
                on.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let mut from = s.a;
                for &(_, n) in on.iter() {
                    split.push(Segment {
                        a: from,
                        b: n,
                        ..*s
                    });
                    from = n;
                }
                split.push(Segment {
                    a: from,
                    b: s.b,
                    ..*s
                });
            }
        }
    }
    let mut arcs: Vec<Vec<Arc>> = vec![Vec::new(); nodes.len()];
    for s in &split {
        let len = dist(nodes[s.a], nodes[s.b]);
        if s.forward {
            arcs[s.a].push((s.b, len, len / s.speed, s.lanes));
        }
        if s.backward {
            arcs[s.b].push((s.a, len, len / s.speed, s.lanes));
        }
    }
    let is_checkpoint: HashMap<usize, i64> =
        checkpoint_node.iter().map(|(id, n)| (*n, *id)).collect();
    let district_by_id: HashMap<i64, Option<String>> = out
        .checkpoints
        .iter()
        .map(|c| (c.id, c.district.clone()))
        .collect();

    // From each checkpoint, the checkpoints first met along the roads.
    let mut found: Vec<(i64, i64, f64, f64, Option<u32>)> = Vec::new();
    let mut time = vec![f64::INFINITY; nodes.len()];
    let mut length = vec![0.0; nodes.len()];
    let mut lanes: Vec<Option<u32>> = vec![None; nodes.len()];
    let mut touched = Vec::new();
    for &(id, start) in &checkpoint_node {
        for n in touched.drain(..) {
            time[n] = f64::INFINITY;
        }
        let mut heap = BinaryHeap::new();
        time[start] = 0.0;
        length[start] = 0.0;
        lanes[start] = Some(u32::MAX);
        touched.push(start);
        heap.push(Queued {
            time: 0.0,
            node: start,
        });
        while let Some(Queued { time: t, node }) = heap.pop() {
            if t > time[node] {
                continue;
            }
            if node != start
                && let Some(&to) = is_checkpoint.get(&node)
            {
                let l = lanes[node].filter(|l| *l != u32::MAX);
                found.push((id, to, length[node], time[node], l));
                continue;
            }
            for &(next, len, dt, road_lanes) in &arcs[node] {
                let (nt, nl) = (t + dt, length[node] + len);
                if nl > options.max_link_m || nt >= time[next] {
                    continue;
                }
                if time[next].is_infinite() {
                    touched.push(next);
                }
                time[next] = nt;
                length[next] = nl;
                lanes[next] = match (lanes[node], road_lanes) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
                heap.push(Queued {
                    time: nt,
                    node: next,
                });
            }
        }
    }
    found.sort_by_key(|f| (f.0, f.1));
    let mut linked = std::collections::HashSet::new();
    for (k, (from, to, len, t, l)) in found.into_iter().enumerate() {
        if from == to {
            continue;
        }
        linked.insert(from);
        linked.insert(to);
        out.links.push(LinkRow {
            link_id: k as i64 + 1,
            from,
            to,
            length_m: len,
            freeflow_s: t,
            lanes: l,
            district: district_by_id.get(&from).cloned().flatten(),
        });
    }
    out.isolated = checkpoint_node
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !linked.contains(id))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metres to degrees near (120, 30), for building test networks in metres.
    fn at(x: f64, y: f64) -> (f64, f64) {
        (120.0 + x / 96_490.0, 30.0 + y / 110_850.0)
    }

    fn road(points: &[(f64, f64)], oneway: OneWay, kmh: f64) -> Road {
        Road {
            points: points.iter().map(|p| at(p.0, p.1)).collect(),
            oneway,
            speed_mps: kmh / 3.6,
            speed_by_default: false,
            lanes: Some(2),
        }
    }

    fn cp(id: i64, x: f64, y: f64) -> Checkpoint {
        let (lon, lat) = at(x, y);
        Checkpoint { id, lon, lat }
    }

    #[test]
    fn links_join_adjacent_checkpoints_along_the_roads_in_their_directions() {
        // A street along x from 0 to 2000 m (both ways) with checkpoints at 0, 1000 and
        // 2000 m, and a one-way street north from x = 1000 to a checkpoint at y = 600.
        let roads = [
            road(
                &[(0.0, 0.0), (1000.0, 0.0), (2000.0, 0.0)],
                OneWay::Both,
                36.0,
            ),
            road(&[(1000.0, 0.0), (1000.0, 600.0)], OneWay::Forward, 36.0),
        ];
        // Checkpoint 2 is 10 m off the street, 3 sits mid-segment.
        let checkpoints = [
            cp(1, 0.0, 0.0),
            cp(2, 1000.0, 10.0),
            cp(3, 2000.0, 0.0),
            cp(4, 1000.0, 600.0),
            cp(5, 5000.0, 5000.0),
        ];
        let got = import(&roads, &checkpoints, &[], Options::default());
        let pairs: Vec<(i64, i64)> = got.links.iter().map(|l| (l.from, l.to)).collect();
        assert_eq!(pairs, [(1, 2), (2, 1), (2, 3), (2, 4), (3, 2)]);
        let l = &got.links[0];
        assert!((l.length_m - 1000.0).abs() < 5.0, "{l:?}");
        assert!((l.freeflow_s - 100.0).abs() < 0.5, "{l:?}");
        assert_eq!(l.lanes, Some(2));
        // Not through checkpoint 2: 1 -> 3 is no link.
        assert!(!pairs.contains(&(1, 3)));
        assert_eq!(got.unmatched.len(), 1);
        assert_eq!(got.unmatched[0].0, 5);
        assert!((got.checkpoints[1].snapped_m - 10.0).abs() < 0.5);
        // One way: 4 is reached from 2, and no link leaves 4.
        assert!(!pairs.iter().any(|p| p.0 == 4));
    }

    #[test]
    fn a_camera_beside_an_intersection_sees_every_road_through_it() {
        // A crossing at (0, 0) of an east-west and a north-south street, with checkpoints
        // 500 m out on each arm and one 12 m from the crossing.
        let roads = [
            road(
                &[(-500.0, 0.0), (0.0, 0.0), (500.0, 0.0)],
                OneWay::Both,
                36.0,
            ),
            road(
                &[(0.0, -500.0), (0.0, 0.0), (0.0, 500.0)],
                OneWay::Both,
                36.0,
            ),
        ];
        let checkpoints = [
            cp(1, -500.0, 0.0),
            cp(2, 500.0, 0.0),
            cp(3, 0.0, -500.0),
            cp(4, 0.0, 500.0),
            cp(9, 8.0, 9.0),
        ];
        let got = import(&roads, &checkpoints, &[], Options::default());
        let pairs: Vec<(i64, i64)> = got.links.iter().map(|l| (l.from, l.to)).collect();
        // Every arm links to the crossing's camera and back, and no arm to another.
        assert_eq!(pairs.len(), 8, "{pairs:?}");
        assert!(pairs.iter().all(|p| p.0 == 9 || p.1 == 9), "{pairs:?}");
    }

    /// Found by fuzzing: a road across half the globe was filed in every 50 m cell it
    /// crosses (hours of work); now it is looked at for every checkpoint instead.
    #[test]
    fn a_road_across_a_continent_is_imported_at_once() {
        let roads = [Road {
            points: vec![(-170.0, -60.0), (170.0, 75.0)],
            oneway: OneWay::Both,
            speed_mps: 10.0,
            speed_by_default: false,
            lanes: None,
        }];
        let checkpoints = [
            Checkpoint {
                id: 1,
                lon: -170.0,
                lat: -60.0,
            },
            Checkpoint {
                id: 2,
                lon: 170.0,
                lat: 75.0,
            },
        ];
        let got = import(
            &roads,
            &checkpoints,
            &[],
            Options {
                max_link_m: f64::INFINITY,
                ..Options::default()
            },
        );
        assert_eq!(got.checkpoints.len(), 2);
        assert_eq!(got.links.len(), 2);
    }

    #[test]
    fn districts_by_polygon_with_holes() {
        let square = |x0: f64, y0: f64, s: f64| {
            vec![
                at(x0, y0),
                at(x0 + s, y0),
                at(x0 + s, y0 + s),
                at(x0, y0 + s),
                at(x0, y0),
            ]
        };
        let districts = [District {
            name: "east".into(),
            polygons: vec![vec![
                square(0.0, -500.0, 3000.0),
                square(1500.0, -100.0, 200.0),
            ]],
        }];
        assert_eq!(district_of(at(100.0, 0.0), &districts), Some("east"));
        assert_eq!(
            district_of(at(1600.0, 0.0), &districts),
            None,
            "in the hole"
        );
        assert_eq!(district_of(at(-100.0, 0.0), &districts), None);
    }
}
