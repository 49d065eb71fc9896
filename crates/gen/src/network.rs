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
        // By id, once: a search per road was quadratic (minutes at 50,000 links).
        let by_id: std::collections::HashMap<u64, usize> = intersections
            .iter()
            .enumerate()
            .map(|(k, i)| (i.id, k))
            .collect();
        let index_of = |id: u64| by_id.get(&id).copied();
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

    /// A synthetic road network of about `links` one-way links: a square grid of two-way
    /// roads `spacing_m` apart around `centre` (lon, lat), each intersection moved up to a
    /// fifth of the spacing by `seed`, every other one signalised, in CBEngine text (what
    /// `parse`, `gen --network` and `up --demo-network` read). For measuring at a size the
    /// real networks shipped here do not reach, not a model of any city.
    pub fn grid_text(links: usize, centre: (f64, f64), spacing_m: f64, seed: u64) -> String {
        use std::fmt::Write as _;
        // n x n intersections carry 4 n (n - 1) one-way links.
        let n = ((1.0 + (1.0 + links as f64).sqrt()) / 2.0).ceil().max(2.0) as usize;
        let metres_per_deg_lat = 111_320.0;
        let metres_per_deg_lon = metres_per_deg_lat * centre.1.to_radians().cos();
        let jitter = |i: usize, axis: u64| -> f64 {
            // splitmix64: a fixed, seeded offset in [-0.2, 0.2) of the spacing.
            let mut z = seed
                .wrapping_add((i as u64) << 1 | axis)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.4 * spacing_m
        };
        let half = (n - 1) as f64 * spacing_m / 2.0;
        let mut at = Vec::with_capacity(n * n);
        let mut text = String::new();
        let _ = writeln!(text, "{}", n * n);
        for row in 0..n {
            for col in 0..n {
                let i = row * n + col;
                let x = col as f64 * spacing_m - half + jitter(i, 0);
                let y = row as f64 * spacing_m - half + jitter(i, 1);
                let (lat, lon) = (
                    centre.1 + y / metres_per_deg_lat,
                    centre.0 + x / metres_per_deg_lon,
                );
                at.push((x, y));
                let _ = writeln!(
                    text,
                    "{lat:.7} {lon:.7} {} {}",
                    i + 1,
                    u8::from((row + col) % 2 == 0)
                );
            }
        }
        let mut roads = Vec::new();
        for row in 0..n {
            for col in 0..n {
                let i = row * n + col;
                if col + 1 < n {
                    roads.push((i, i + 1));
                }
                if row + 1 < n {
                    roads.push((i, i + n));
                }
            }
        }
        let _ = writeln!(text, "{}", roads.len());
        for (k, &(a, b)) in roads.iter().enumerate() {
            let length = ((at[a].0 - at[b].0).powi(2) + (at[a].1 - at[b].1).powi(2)).sqrt();
            let _ = writeln!(
                text,
                "{} {} {length:.1} 13.9 2 2 {} {}\n1 1 1 1 1 1\n1 1 1 1 1 1",
                a + 1,
                b + 1,
                2 * k + 1,
                2 * k + 2
            );
        }
        text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_of_fifty_thousand_links_reads_back_as_one() {
        let text = Network::grid_text(50_000, (120.16, 30.27), 250.0, 7);
        let net = Network::parse(&text).unwrap();
        assert_eq!(net.intersections.len(), 113 * 113);
        assert_eq!(net.roads.len(), 4 * 113 * 112);
        for r in &net.roads {
            // Each end moves at most a fifth of the spacing along each axis.
            assert!((140.0..370.0).contains(&r.length_m), "{}", r.length_m);
        }
        // Every intersection is reachable: each has a way out.
        assert!(net.out_roads.iter().all(|o| !o.is_empty()));
        let signalised = net.intersections.iter().filter(|i| i.signalized).count();
        assert_eq!(signalised, (113_usize * 113).div_ceil(2));
        // The same seed, the same city; another seed moves the intersections.
        assert_eq!(text, Network::grid_text(50_000, (120.16, 30.27), 250.0, 7));
        assert_ne!(text, Network::grid_text(50_000, (120.16, 30.27), 250.0, 8));
    }
}
