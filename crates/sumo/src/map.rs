//! A SUMO network as a map: its roads and traffic lights in longitude and latitude, for the
//! cockpit's signals page. The controller ([`crate::net`]) needs no geometry; a person does.
//!
//! SUMO keeps coordinates in metres. A network imported from OpenStreetMap says how they
//! were projected (`<location projParameter="+proj=utm +zone=32 ..." netOffset=...>`); UTM,
//! what SUMO's importers write, is inverted here. A network SUMO generated (`netgenerate`)
//! or one in another projection has no place on Earth we can compute: its metres are laid
//! out around longitude 0, latitude 0 at true scale, and [`NetMap::georeferenced`] says so,
//! so the page can say the map is a diagram and not the city.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::SumoError;

/// A network's roads and lights, in longitude and latitude.
#[derive(Debug, Clone, PartialEq)]
pub struct NetMap {
    /// Whether positions are on Earth (a UTM network) or a diagram around (0, 0).
    pub georeferenced: bool,
    /// Each non-internal edge: its id and its first lane's line.
    pub edges: Vec<(String, Vec<[f64; 2]>)>,
    /// Each traffic light (a `tlLogic` id, as the controller names intersections).
    pub lights: Vec<Light>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Light {
    pub id: String,
    /// Where it stands: the mean of the junctions it controls.
    pub at: [f64; 2],
    /// How many signal indices (links) it shows.
    pub links: usize,
}

/// How metres become longitude and latitude.
#[derive(Debug, Clone, Copy)]
enum Projection {
    Utm {
        zone: u8,
        south: bool,
        offset: [f64; 2],
    },
    /// Not on Earth: metres laid out around (0, 0).
    Local,
}

/// Metres per degree along a meridian (and the equator), near enough for a diagram.
const METRES_PER_DEGREE: f64 = 111_320.0;

impl Projection {
    fn read(doc: &roxmltree::Document) -> Self {
        let Some(location) = doc.descendants().find(|n| n.has_tag_name("location")) else {
            return Self::Local;
        };
        let proj = location.attribute("projParameter").unwrap_or("!");
        let offset = location
            .attribute("netOffset")
            .and_then(|o| o.split_once(','))
            .and_then(|(x, y)| Some([x.trim().parse().ok()?, y.trim().parse().ok()?]));
        let mut zone = None;
        let mut utm = false;
        let mut south = false;
        for part in proj.split_whitespace() {
            match part.split_once('=') {
                Some(("+proj", "utm")) => utm = true,
                Some(("+zone", z)) => zone = z.parse::<u8>().ok().filter(|z| (1..=60).contains(z)),
                None if part == "+south" => south = true,
                _ => {}
            }
        }
        match (utm, zone, offset) {
            (true, Some(zone), Some(offset)) => Self::Utm {
                zone,
                south,
                offset,
            },
            _ => Self::Local,
        }
    }

    fn lon_lat(self, x: f64, y: f64) -> [f64; 2] {
        match self {
            Self::Utm {
                zone,
                south,
                offset,
            } => {
                let northing = y - offset[1] - if south { 10_000_000.0 } else { 0.0 };
                utm_to_lon_lat(zone, x - offset[0], northing)
            }
            Self::Local => [x / METRES_PER_DEGREE, y / METRES_PER_DEGREE],
        }
    }
}

/// Inverse transverse Mercator on WGS84 with UTM's constants (Snyder, *Map Projections: A
/// Working Manual*, USGS PP 1395, eqs. 8-18 to 8-25): easting in metres including the false
/// 500 km, northing from the equator (negative south of it). Good to well under a metre
/// within a zone, far finer than a map of roads needs.
pub fn utm_to_lon_lat(zone: u8, easting: f64, northing: f64) -> [f64; 2] {
    const A: f64 = 6_378_137.0;
    const F: f64 = 1.0 / 298.257_223_563;
    const K0: f64 = 0.9996;
    let e2 = F * (2.0 - F);
    let ep2 = e2 / (1.0 - e2);
    let x = easting - 500_000.0;
    let m = northing / K0;
    let mu = m / (A * (1.0 - e2 / 4.0 - 3.0 * e2 * e2 / 64.0 - 5.0 * e2 * e2 * e2 / 256.0));
    let e1 = (1.0 - (1.0 - e2).sqrt()) / (1.0 + (1.0 - e2).sqrt());
    let phi1 = mu
        + (3.0 * e1 / 2.0 - 27.0 * e1.powi(3) / 32.0) * (2.0 * mu).sin()
        + (21.0 * e1 * e1 / 16.0 - 55.0 * e1.powi(4) / 32.0) * (4.0 * mu).sin()
        + (151.0 * e1.powi(3) / 96.0) * (6.0 * mu).sin()
        + (1097.0 * e1.powi(4) / 512.0) * (8.0 * mu).sin();
    let (sin1, cos1) = phi1.sin_cos();
    let tan1 = sin1 / cos1;
    let c1 = ep2 * cos1 * cos1;
    let t1 = tan1 * tan1;
    let w = 1.0 - e2 * sin1 * sin1;
    let n1 = A / w.sqrt();
    let r1 = A * (1.0 - e2) / w.powf(1.5);
    let d = x / (n1 * K0);
    let lat = phi1
        - (n1 * tan1 / r1)
            * (d * d / 2.0
                - (5.0 + 3.0 * t1 + 10.0 * c1 - 4.0 * c1 * c1 - 9.0 * ep2) * d.powi(4) / 24.0
                + (61.0 + 90.0 * t1 + 298.0 * c1 + 45.0 * t1 * t1 - 252.0 * ep2 - 3.0 * c1 * c1)
                    * d.powi(6)
                    / 720.0);
    let lon0 = f64::from(zone) * 6.0 - 183.0;
    let lon = lon0
        + ((d - (1.0 + 2.0 * t1 + c1) * d.powi(3) / 6.0
            + (5.0 - 2.0 * c1 + 28.0 * t1 - 3.0 * c1 * c1 + 8.0 * ep2 + 24.0 * t1 * t1)
                * d.powi(5)
                / 120.0)
            / cos1)
            .to_degrees();
    [lon, lat.to_degrees()]
}

fn shape(text: &str) -> Vec<[f64; 2]> {
    text.split_whitespace()
        .filter_map(|p| {
            let (x, y) = p.split_once(',')?;
            // A 3-D shape point ("x,y,z") keeps its first two.
            let y = y.split(',').next()?;
            Some([x.parse().ok()?, y.parse().ok()?])
        })
        .collect()
}

/// Reads a `.net.xml`'s geometry.
pub fn geometry(text: &str) -> Result<NetMap, SumoError> {
    let doc = roxmltree::Document::parse(text).map_err(|e| SumoError::Net(e.to_string()))?;
    let projection = Projection::read(&doc);
    let mut junctions: HashMap<&str, [f64; 2]> = HashMap::new();
    for j in doc.descendants().filter(|n| n.has_tag_name("junction")) {
        let (Some(id), Some(x), Some(y)) = (j.attribute("id"), j.attribute("x"), j.attribute("y"))
        else {
            continue;
        };
        if let (Ok(x), Ok(y)) = (x.parse(), y.parse()) {
            junctions.insert(id, [x, y]);
        }
    }
    let mut edges = Vec::new();
    let mut edge_to: HashMap<&str, &str> = HashMap::new();
    for e in doc.descendants().filter(|n| n.has_tag_name("edge")) {
        if e.attribute("function") == Some("internal") {
            continue;
        }
        let Some(id) = e.attribute("id") else {
            continue;
        };
        if let Some(to) = e.attribute("to") {
            edge_to.insert(id, to);
        }
        let line = e
            .children()
            .find(|n| n.has_tag_name("lane"))
            .and_then(|l| l.attribute("shape"))
            .or_else(|| e.attribute("shape"))
            .map(shape)
            .unwrap_or_default();
        if line.len() >= 2 {
            let line = line
                .iter()
                .map(|&[x, y]| projection.lon_lat(x, y))
                .collect();
            edges.push((id.to_string(), line));
        }
    }
    // The junctions each light controls: where its connections' incoming edges end.
    let mut controlled: HashMap<&str, Vec<&str>> = HashMap::new();
    for c in doc.descendants().filter(|n| n.has_tag_name("connection")) {
        let (Some(tl), Some(from)) = (c.attribute("tl"), c.attribute("from")) else {
            continue;
        };
        if let Some(&junction) = edge_to.get(from) {
            let list = controlled.entry(tl).or_default();
            if !list.contains(&junction) {
                list.push(junction);
            }
        }
    }
    let mut lights = Vec::new();
    for tl in doc.descendants().filter(|n| n.has_tag_name("tlLogic")) {
        let Some(id) = tl.attribute("id") else {
            continue;
        };
        if lights.iter().any(|l: &Light| l.id == id) {
            continue; // another programme of the same light
        }
        let links = tl
            .children()
            .filter(|n| n.has_tag_name("phase"))
            .filter_map(|p| p.attribute("state"))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let points: Vec<[f64; 2]> = controlled
            .get(id)
            .map(|js| {
                js.iter()
                    .filter_map(|j| junctions.get(j).copied())
                    .collect()
            })
            .filter(|p: &Vec<_>| !p.is_empty())
            .or_else(|| junctions.get(id).map(|&p| vec![p]))
            .unwrap_or_default();
        if points.is_empty() {
            continue; // a light placed nowhere cannot be drawn
        }
        let n = points.len() as f64;
        let x = points.iter().map(|p| p[0]).sum::<f64>() / n;
        let y = points.iter().map(|p| p[1]).sum::<f64>() / n;
        lights.push(Light {
            id: id.to_string(),
            at: projection.lon_lat(x, y),
            links,
        });
    }
    Ok(NetMap {
        georeferenced: matches!(projection, Projection::Utm { .. }),
        edges,
        lights,
    })
}

impl NetMap {
    /// As the page draws it: GeoJSON of the roads and of the lights, and the extent.
    pub fn to_json(&self) -> Value {
        let round = |v: f64| (v * 1e7).round() / 1e7;
        let point = |p: &[f64; 2]| json!([round(p[0]), round(p[1])]);
        let mut bounds = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        let mut grow = |p: &[f64; 2]| {
            bounds[0] = bounds[0].min(p[0]);
            bounds[1] = bounds[1].min(p[1]);
            bounds[2] = bounds[2].max(p[0]);
            bounds[3] = bounds[3].max(p[1]);
        };
        self.edges.iter().flat_map(|(_, l)| l).for_each(&mut grow);
        self.lights.iter().map(|l| &l.at).for_each(&mut grow);
        let edges: Vec<Value> = self
            .edges
            .iter()
            .map(|(id, line)| {
                json!({"type": "Feature", "properties": {"edge": id},
                       "geometry": {"type": "LineString", "coordinates": line.iter().map(point).collect::<Vec<_>>()}})
            })
            .collect();
        let lights: Vec<Value> = self
            .lights
            .iter()
            .map(|l| {
                json!({"type": "Feature", "properties": {"intersection": l.id, "links": l.links},
                       "geometry": {"type": "Point", "coordinates": point(&l.at)}})
            })
            .collect();
        json!({
            "georeferenced": self.georeferenced,
            "bounds": if bounds[0] <= bounds[2] { json!([[bounds[0], bounds[1]], [bounds[2], bounds[3]]]) } else { Value::Null },
            "edges": {"type": "FeatureCollection", "features": edges},
            "lights": {"type": "FeatureCollection", "features": lights},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SUMO's own Berlin example's location (tools/game/DRT/osm.net.xml): its origin lands
    /// where PROJ puts it (pyproj 3.7, `+proj=utm +zone=33` to EPSG:4326: 13.5115812,
    /// 52.4240545; its origBoundary is the OpenStreetMap extract's box, wider than the net).
    #[test]
    fn a_utm_network_lands_where_openstreetmap_had_it() {
        let net = r#"<net>
  <location netOffset="-398790.46,-5809246.45" convBoundary="0.00,0.00,2628.33,3333.57" origBoundary="13.453860,52.424406,13.575739,52.459757" projParameter="+proj=utm +zone=33 +ellps=WGS84 +datum=WGS84 +units=m +no_defs"/>
  <edge id="a" from="j1" to="j2"><lane id="a_0" index="0" speed="13.9" length="100" shape="0.00,0.00 2628.33,3333.57"/></edge>
  <edge id="b" from="j2" to="j1"><lane id="b_0" index="0" speed="13.9" length="100" shape="2628.33,3333.57 0.00,0.00"/></edge>
  <tlLogic id="j2" type="static" programID="0" offset="0"><phase duration="30" state="Gr"/><phase duration="30" state="rG"/></tlLogic>
  <junction id="j1" type="priority" x="0.00" y="0.00"/>
  <junction id="j2" type="traffic_light" x="2628.33" y="3333.57"/>
  <connection from="a" to="b" fromLane="0" toLane="0" tl="j2" linkIndex="0"/>
</net>"#;
        let map = geometry(net).unwrap();
        assert!(map.georeferenced);
        let [lon, lat] = map.edges[0].1[0];
        assert!(
            (lon - 13.511_581_2).abs() < 1e-7 && (lat - 52.424_054_5).abs() < 1e-7,
            "{lon} {lat}"
        );
        let [lon, lat] = map.lights[0].at;
        assert!(
            lon > 13.53 && lat > 52.45,
            "north-east of the origin: {lon} {lat}"
        );
        assert_eq!(map.lights[0].links, 2);
        let json = map.to_json();
        assert_eq!(
            json["lights"]["features"][0]["properties"]["intersection"],
            "j2"
        );
        assert_eq!(json["edges"]["features"].as_array().unwrap().len(), 2);
    }

    /// Points whose answers PROJ gave (pyproj 3.7, once, by hand): a zone's central
    /// meridian on the equator, Hangzhou in zone 51, Sydney in the south (northings count
    /// from 10,000 km there), Ingolstadt in zone 32.
    #[test]
    fn utm_inverse_matches_proj() {
        let cases = [
            (50, 500_000.0, 0.0, 117.0, 0.0),
            (51, 226_000.0, 3_350_000.0, 120.152_476_49, 30.250_723_63),
            (
                56,
                334_000.0,
                6_252_000.0 - 10_000_000.0,
                151.205_514_69,
                -33.859_261_70,
            ),
            (32, 677_926.91, 5_405_149.17, 11.421_756_38, 48.773_885_70),
        ];
        for (zone, e, n, lon, lat) in cases {
            let got = utm_to_lon_lat(zone, e, n);
            assert!(
                (got[0] - lon).abs() < 1e-7 && (got[1] - lat).abs() < 1e-7,
                "zone {zone} {e} {n}: {got:?}, PROJ says {lon} {lat}"
            );
        }
    }

    #[test]
    fn a_generated_network_is_a_diagram_around_zero() {
        let net = r#"<net><location netOffset="0.00,0.00" convBoundary="0,0,400,400" origBoundary="0,0,400,400" projParameter="!"/>
  <edge id="a" from="j1" to="j2"><lane id="a_0" index="0" speed="13.9" length="100" shape="0,0 111.32,0"/></edge>
  <tlLogic id="j2" type="static" programID="0" offset="0"><phase duration="30" state="G"/></tlLogic>
  <junction id="j2" type="traffic_light" x="111.32" y="222.64"/></net>"#;
        let map = geometry(net).unwrap();
        assert!(!map.georeferenced);
        assert_eq!(map.edges[0].1[1], [0.001, 0.0]);
        // No connection names the light: it stands at its own junction.
        assert_eq!(map.lights[0].at, [0.001, 0.002]);
    }
}
