//! Reading GIS files: roads (LineString and MultiLineString features), checkpoints (Point
//! features) and district polygons from GeoJSON, as OpenStreetMap extracts converted with
//! `osmium export` or `ogr2ogr` and city GIS departments' exports write them. Problems name
//! the feature (its index and `id`) and the property.

use serde_json::Value;

use crate::{Checkpoint, District, OneWay, Road};

/// Road speeds by class when a road has no usable `maxspeed` (km/h): OpenStreetMap's
/// `highway` values and China's urban road classes (快速路, 主干路, 次干路, 支路).
const CLASS_SPEEDS: &[(&str, f64)] = &[
    ("motorway", 100.0),
    ("trunk", 80.0),
    ("expressway", 80.0),
    ("primary", 60.0),
    ("arterial", 60.0),
    ("secondary", 50.0),
    ("tertiary", 40.0),
    ("collector", 40.0),
    ("unclassified", 40.0),
    ("residential", 30.0),
    ("local", 30.0),
    ("living_street", 15.0),
    ("service", 20.0),
];

/// The speed of a road with neither a limit nor a known class, km/h.
pub const DEFAULT_SPEED_KMH: f64 = 40.0;

fn features(text: &str, what: &str) -> Result<Vec<Value>, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("the {what} file is not JSON: {e}"))?;
    match v.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => Ok(v
            .get("features")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()),
        Some("Feature") => Ok(vec![v]),
        _ => Err(format!(
            "the {what} file is not a GeoJSON FeatureCollection (its \"type\" is missing or other)"
        )),
    }
}

/// `feature 12 (id "w123")`, for messages.
fn which(i: usize, f: &Value) -> String {
    match f.get("id").or_else(|| f.pointer("/properties/id")) {
        Some(Value::String(s)) => format!("feature {i} (id \"{s}\")"),
        Some(Value::Number(n)) => format!("feature {i} (id {n})"),
        _ => format!("feature {i}"),
    }
}

fn point(v: &Value) -> Option<(f64, f64)> {
    let a = v.as_array()?;
    let (lon, lat) = (a.first()?.as_f64()?, a.get(1)?.as_f64()?);
    ((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)).then_some((lon, lat))
}

fn line(v: &Value) -> Option<Vec<(f64, f64)>> {
    v.as_array()?.iter().map(point).collect()
}

/// A number in a property written as a number or as text (`"50"`, `"50 km/h"`, `"30 mph"`).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            let end = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let n: f64 = s[..end].parse().ok()?;
            Some(if s[end..].trim().eq_ignore_ascii_case("mph") {
                n * 1.609_344
            } else {
                n
            })
        }
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// OpenStreetMap `highway` values that are not for cars: such lines are not roads here.
const NOT_FOR_CARS: &[&str] = &[
    "footway",
    "pedestrian",
    "path",
    "cycleway",
    "steps",
    "bridleway",
    "track",
    "corridor",
    "platform",
    "construction",
    "proposed",
    "abandoned",
    "elevator",
    "bus_stop",
    "raceway",
];

/// A road's speed, direction and lanes from its properties (GeoJSON properties or OSM
/// tags), without its points; None for a line that is not for cars (`highway=footway`).
pub(crate) fn road_of(props: &Value) -> Option<Road> {
    let limit = ["maxspeed", "speed_kmh"]
        .iter()
        .find_map(|k| props.get(*k).and_then(number))
        .filter(|s| *s > 0.0);
    let class = ["highway", "fclass", "class"]
        .iter()
        .find_map(|k| text(props.get(*k)));
    if class.as_deref().is_some_and(|c| NOT_FOR_CARS.contains(&c)) {
        return None;
    }
    let (speed_kmh, by_default) = match (limit, &class) {
        (Some(s), _) => (s, false),
        (None, Some(c)) => match CLASS_SPEEDS
            .iter()
            .find(|(name, _)| c.trim_end_matches("_link") == *name)
        {
            Some((_, s)) => (*s, false),
            None => (DEFAULT_SPEED_KMH, true),
        },
        (None, None) => (DEFAULT_SPEED_KMH, true),
    };
    let oneway = match text(props.get("oneway"))
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("yes" | "true" | "1" | "f") => OneWay::Forward,
        Some("-1" | "reverse" | "t") => OneWay::Backward,
        // Motorways are one way unless tagged otherwise (OpenStreetMap's rule).
        None if class.as_deref() == Some("motorway") => OneWay::Forward,
        _ => OneWay::Both,
    };
    let lanes = props
        .get("lanes")
        .and_then(number)
        .filter(|l| *l >= 1.0)
        .map(|l| l as u32);
    Some(Road {
        points: Vec::new(),
        oneway,
        speed_mps: speed_kmh / 3.6,
        speed_by_default: by_default,
        lanes,
    })
}

/// Roads from a GeoJSON of LineString/MultiLineString features. Properties read:
/// `maxspeed` (or `speed_kmh`, km/h; 0 is unknown), `highway` (or `fclass`, `class`) for a
/// speed by class, `oneway` (`yes`/`true`/`1`/`F` forward, `-1`/`reverse`/`T` backward),
/// `lanes`. Features of other geometry types, and lines not for cars (`highway=footway`,
/// `cycleway`, ...), are counted, not read.
pub fn parse_roads(text_in: &str) -> Result<(Vec<Road>, usize), String> {
    let mut roads = Vec::new();
    let mut skipped = 0;
    for (i, f) in features(text_in, "roads")?.iter().enumerate() {
        let geometry = f.get("geometry").unwrap_or(&Value::Null);
        let lines: Vec<Vec<(f64, f64)>> = match geometry.get("type").and_then(Value::as_str) {
            Some("LineString") => {
                vec![geometry.get("coordinates").and_then(line).ok_or_else(|| {
                    format!(
                        "{}: coordinates are not [[lon, lat], ...] within range",
                        which(i, f)
                    )
                })?]
            }
            Some("MultiLineString") => geometry
                .get("coordinates")
                .and_then(Value::as_array)
                .and_then(|parts| parts.iter().map(line).collect::<Option<Vec<_>>>())
                .ok_or_else(|| {
                    format!(
                        "{}: coordinates are not [[[lon, lat], ...], ...] within range",
                        which(i, f)
                    )
                })?,
            _ => {
                skipped += 1;
                continue;
            }
        };
        let props = f.get("properties").unwrap_or(&Value::Null);
        let Some(template) = road_of(props) else {
            skipped += 1;
            continue;
        };
        for points in lines {
            if points.len() < 2 {
                return Err(format!("{}: a line needs two points at least", which(i, f)));
            }
            roads.push(Road {
                points,
                ..template.clone()
            });
        }
    }
    Ok((roads, skipped))
}

/// Checkpoints from Point features with an integer `checkpoint_id` (or `id`) property.
pub fn parse_checkpoints(text_in: &str) -> Result<Vec<Checkpoint>, String> {
    let mut out = Vec::new();
    for (i, f) in features(text_in, "checkpoints")?.iter().enumerate() {
        let geometry = f.get("geometry").unwrap_or(&Value::Null);
        if geometry.get("type").and_then(Value::as_str) != Some("Point") {
            return Err(format!("{}: checkpoints are Point features", which(i, f)));
        }
        let (lon, lat) = geometry.get("coordinates").and_then(point).ok_or_else(|| {
            format!(
                "{}: coordinates are not [lon, lat] within range",
                which(i, f)
            )
        })?;
        let props = f.get("properties").unwrap_or(&Value::Null);
        let id = ["checkpoint_id", "id"]
            .iter()
            .find_map(|k| props.get(*k))
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()))
            .ok_or_else(|| {
                format!(
                    "{}: property checkpoint_id is missing or not an integer",
                    which(i, f)
                )
            })?;
        out.push(Checkpoint { id, lon, lat });
    }
    Ok(out)
}

/// District polygons (Polygon or MultiPolygon features) named by `name` (or `district`).
pub fn parse_districts(text_in: &str) -> Result<Vec<District>, String> {
    let mut out = Vec::new();
    for (i, f) in features(text_in, "districts")?.iter().enumerate() {
        let props = f.get("properties").unwrap_or(&Value::Null);
        let name = ["name", "district"]
            .iter()
            .find_map(|k| text(props.get(*k)))
            .ok_or_else(|| format!("{}: property name is missing", which(i, f)))?;
        let geometry = f.get("geometry").unwrap_or(&Value::Null);
        let rings = |v: &Value| -> Option<Vec<Vec<(f64, f64)>>> {
            v.as_array()?.iter().map(line).collect()
        };
        let polygons = match geometry.get("type").and_then(Value::as_str) {
            Some("Polygon") => geometry.get("coordinates").and_then(rings).map(|p| vec![p]),
            Some("MultiPolygon") => geometry
                .get("coordinates")
                .and_then(Value::as_array)
                .and_then(|ps| ps.iter().map(rings).collect()),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "{}: districts are Polygon or MultiPolygon features",
                which(i, f)
            )
        })?;
        out.push(District { name, polygons });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_give_speed_direction_and_lanes_and_mistakes_name_the_feature() {
        let text = r#"{"type":"FeatureCollection","features":[
            {"type":"Feature","properties":{"maxspeed":"30 mph","oneway":"yes","lanes":"2"},"geometry":{"type":"LineString","coordinates":[[113.6,34.7],[113.61,34.7]]}},
            {"type":"Feature","properties":{"fclass":"primary_link","oneway":"T"},"geometry":{"type":"MultiLineString","coordinates":[[[113.6,34.7],[113.6,34.71]],[[113.6,34.71],[113.6,34.72]]]}},
            {"type":"Feature","properties":{"highway":"footway_like","maxspeed":0},"geometry":{"type":"LineString","coordinates":[[113.6,34.7],[113.6,34.69]]}},
            {"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[113.6,34.7]}}
        ]}"#;
        let (roads, skipped) = parse_roads(text).unwrap();
        assert_eq!((roads.len(), skipped), (4, 1));
        assert!((roads[0].speed_mps * 3.6 - 48.28).abs() < 0.01);
        assert_eq!(
            (roads[0].oneway, roads[0].lanes),
            (OneWay::Forward, Some(2))
        );
        assert_eq!(roads[1].oneway, OneWay::Backward);
        assert!(
            (roads[1].speed_mps * 3.6 - 60.0).abs() < 1e-9,
            "a link road has its class's speed"
        );
        assert!(roads[3].speed_by_default && !roads[1].speed_by_default);
        let bad = r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"w9","properties":{},"geometry":{"type":"LineString","coordinates":[[200,34.7],[113.6,34.7]]}}]}"#;
        let e = parse_roads(bad).unwrap_err();
        assert!(
            e.contains("feature 0 (id \"w9\")") && e.contains("coordinates"),
            "{e}"
        );
        let e = parse_checkpoints(r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"x"},"geometry":{"type":"Point","coordinates":[113.6,34.7]}}]}"#).unwrap_err();
        assert!(e.contains("checkpoint_id"), "{e}");
        assert!(
            parse_roads("[1,2]")
                .unwrap_err()
                .contains("FeatureCollection")
        );
    }
}
