//! The road network in CBEngine text format (KDD Cup 2021 City Brain Challenge), as used by
//! `shared/data/traffic/hangzhou_city/hangzhou.txt`.

use std::io::{BufWriter, Write};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Intersection {
    pub id: u64,
    pub lat: f64,
    pub lon: f64,
    pub signalized: bool,
    pub district: &'static str,
}

/// One direction of a road segment.
#[derive(Debug, Clone)]
pub struct Road {
    pub id: u64,
    pub from: usize,
    pub to: usize,
    pub length_m: f64,
    pub speed_limit_mps: f64,
    pub lanes: u8,
}

impl Road {
    /// Free-flow travel time: length at the speed limit.
    pub fn freeflow_s(&self) -> f64 {
        self.length_m / self.speed_limit_mps.max(1.0)
    }
}

#[derive(Debug, Clone)]
pub struct Network {
    pub intersections: Vec<Intersection>,
    pub roads: Vec<Road>,
    /// Roads leaving each intersection (indices into `roads`).
    pub out_roads: Vec<Vec<usize>>,
}

impl Network {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate();
        let mut next = |what: &str| -> Result<(usize, Vec<&str>), String> {
            lines
                .next()
                .map(|(i, l)| (i + 1, l.split_whitespace().collect()))
                .ok_or_else(|| format!("the file ends where {what} was expected"))
        };
        let num = |line: usize, s: &str| -> Result<f64, String> {
            s.parse()
                .map_err(|_| format!("line {line}: '{s}' is not a number"))
        };
        let (line, head) = next("the intersection count")?;
        let n = num(line, head.first().copied().unwrap_or(""))? as usize;
        // A count is a claim of the file's: reserve no more than its lines can hold (a
        // count of 3e33 asked for an impossible allocation; found by fuzzing).
        let lines_left = text.lines().count();
        let mut intersections = Vec::with_capacity(n.min(lines_left));
        for _ in 0..n {
            let (line, f) = next("an intersection")?;
            if f.len() < 4 {
                return Err(format!("line {line}: expected 'lat lon id signalized'"));
            }
            intersections.push(Intersection {
                lat: num(line, f[0])?,
                lon: num(line, f[1])?,
                id: num(line, f[2])? as u64,
                signalized: f[3] == "1",
                district: "",
            });
        }
        let index_of = |id: u64| intersections.iter().position(|i| i.id == id);
        let (line, head) = next("the road count")?;
        let n_roads = num(line, head.first().copied().unwrap_or(""))? as usize;
        let mut roads = Vec::with_capacity(2 * n_roads.min(lines_left));
        for _ in 0..n_roads {
            let (line, f) = next("a road")?;
            if f.len() < 8 {
                return Err(format!(
                    "line {line}: expected 'from to length speed lanes1 lanes2 id1 id2'"
                ));
            }
            let from = index_of(num(line, f[0])? as u64)
                .ok_or(format!("line {line}: unknown intersection {}", f[0]))?;
            let to = index_of(num(line, f[1])? as u64)
                .ok_or(format!("line {line}: unknown intersection {}", f[1]))?;
            let (length_m, speed) = (num(line, f[2])?, num(line, f[3])?);
            roads.push(Road {
                id: num(line, f[6])? as u64,
                from,
                to,
                length_m,
                speed_limit_mps: speed,
                lanes: num(line, f[4])? as u8,
            });
            roads.push(Road {
                id: num(line, f[7])? as u64,
                from: to,
                to: from,
                length_m,
                speed_limit_mps: speed,
                lanes: num(line, f[5])? as u8,
            });
            next("lane permissions")?;
            next("lane permissions")?;
        }
        // Four zones around the network's centre stand in for districts.
        let mid_lat =
            intersections.iter().map(|i| i.lat).sum::<f64>() / intersections.len().max(1) as f64;
        let mid_lon =
            intersections.iter().map(|i| i.lon).sum::<f64>() / intersections.len().max(1) as f64;
        for i in &mut intersections {
            i.district = match (i.lat >= mid_lat, i.lon >= mid_lon) {
                (true, false) => "zone_nw",
                (true, true) => "zone_ne",
                (false, false) => "zone_sw",
                (false, true) => "zone_se",
            };
        }
        let mut out_roads = vec![Vec::new(); intersections.len()];
        for (k, road) in roads.iter().enumerate() {
            out_roads[road.from].push(k);
        }
        Ok(Self {
            intersections,
            roads,
            out_roads,
        })
    }

    /// One checkpoint (an ANPR camera site) per intersection.
    pub fn write_checkpoints(&self, path: &Path) -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        for i in &self.intersections {
            writeln!(
                w,
                "{{\"checkpoint_id\":{},\"loc\":{{\"lon\":{},\"lat\":{}}},\"district\":\"{}\",\"signalized\":{}}}",
                i.id, i.lon, i.lat, i.district, i.signalized
            )?;
        }
        w.flush()
    }

    /// One link per road direction between adjacent checkpoints.
    pub fn write_links(&self, path: &Path) -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        for r in &self.roads {
            writeln!(
                w,
                "{{\"link_id\":{},\"from_checkpoint\":{},\"to_checkpoint\":{},\"length_m\":{:.1},\"freeflow_s\":{:.2},\"lanes\":{},\"district\":\"{}\"}}",
                r.id,
                self.intersections[r.from].id,
                self.intersections[r.to].id,
                r.length_m,
                r.freeflow_s(),
                r.lanes,
                self.intersections[r.from].district
            )?;
        }
        w.flush()
    }
}
