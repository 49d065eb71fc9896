//! Route files: CityFlow flows converted to SUMO routes (the heavier Hangzhou variants come
//! as CityFlow only), trip results read back, and emergency runs written as routes.

use std::fmt::Write as _;

use crate::SumoError;

/// Converts a CityFlow flow file (JSON list of `{route, startTime, endTime, interval}`) to
/// a SUMO route file, one vehicle per departure, sorted by departure.
pub fn cityflow_to_sumo(flow_json: &str) -> Result<String, SumoError> {
    let flows: serde_json::Value =
        serde_json::from_str(flow_json).map_err(|e| SumoError::Routes(e.to_string()))?;
    let flows = flows
        .as_array()
        .ok_or_else(|| SumoError::Routes("a CityFlow flow file is a JSON list".into()))?;
    let mut vehicles: Vec<(f64, usize, String)> = Vec::new();
    for (i, f) in flows.iter().enumerate() {
        let route: Vec<&str> = f["route"]
            .as_array()
            .ok_or_else(|| SumoError::Routes(format!("flow {i}: no route")))?
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        let start = f["startTime"].as_f64().unwrap_or(0.0);
        let end = f["endTime"].as_f64().unwrap_or(start).max(start);
        let interval = f["interval"].as_f64().unwrap_or(1.0).max(0.1);
        let mut t = start;
        while t <= end + 1e-9 {
            vehicles.push((t, vehicles.len(), route.join(" ")));
            t += interval;
            if end <= start {
                break;
            }
        }
    }
    vehicles.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out = String::from(
        "<routes>\n  <vType id=\"pkw\" accel=\"2.0\" decel=\"4.5\" length=\"5.0\" maxSpeed=\"11.111\" minGap=\"2.5\" width=\"2.0\"/>\n",
    );
    for (n, (t, _, edges)) in vehicles.iter().enumerate() {
        let _ = writeln!(
            out,
            "  <vehicle id=\"{n}\" type=\"pkw\" depart=\"{t:.2}\"><route edges=\"{edges}\"/></vehicle>"
        );
    }
    out.push_str("</routes>\n");
    Ok(out)
}

/// An emergency run to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Ambulance {
    pub id: String,
    pub depart_s: u32,
    pub edges: Vec<String>,
    pub priority: u8,
}

/// Picks `n` emergency runs from the routes in a SUMO route file: long routes (crossing
/// at least four lights), from different origins, leaving in pairs at the same time so
/// that runs meet (several at once).
pub fn pick_ambulances(
    routes_xml: &str,
    n: usize,
    horizon_s: u32,
) -> Result<Vec<Ambulance>, SumoError> {
    let doc =
        roxmltree::Document::parse(routes_xml).map_err(|e| SumoError::Routes(e.to_string()))?;
    let mut candidates: Vec<Vec<String>> = Vec::new();
    for r in doc.descendants().filter(|n| n.has_tag_name("route")) {
        let edges: Vec<String> = r
            .attribute("edges")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if edges.len() >= 6 && !candidates.iter().any(|c| c[0] == edges[0]) {
            candidates.push(edges);
        }
    }
    if candidates.is_empty() {
        return Err(SumoError::Routes(
            "no route long enough for an emergency run".into(),
        ));
    }
    let step = (candidates.len() / n.max(1)).max(1);
    Ok((0..n)
        .map(|k| Ambulance {
            id: format!("ambulance_{k}"),
            depart_s: horizon_s / 6
                + (k as u32 / 2) * (horizon_s * 2 / 3) / (n as u32).div_ceil(2).max(1),
            edges: candidates[(k * step) % candidates.len()].clone(),
            priority: (n - k) as u8,
        })
        .collect())
}

/// The route file for emergency runs (SUMO's `emergency` class, no blue-light privileges:
/// it stops at red like anyone, so only the signals can keep it moving).
pub fn ambulances_xml(runs: &[Ambulance]) -> String {
    let mut runs: Vec<&Ambulance> = runs.iter().collect();
    runs.sort_by_key(|a| a.depart_s);
    let mut out = String::from(
        "<routes>\n  <vType id=\"ambulance\" vClass=\"emergency\" accel=\"2.6\" decel=\"4.5\" length=\"6.5\" minGap=\"2.5\" maxSpeed=\"11.111\" speedFactor=\"1\" color=\"1,0,0\"/>\n",
    );
    for a in runs {
        let _ = writeln!(
            out,
            "  <vehicle id=\"{}\" type=\"ambulance\" depart=\"{}\" departSpeed=\"max\" departLane=\"best\"><route edges=\"{}\"/></vehicle>",
            a.id,
            a.depart_s,
            a.edges.join(" ")
        );
    }
    out.push_str("</routes>\n");
    out
}

/// One finished trip, from SUMO's `--tripinfo-output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub id: String,
    pub duration_s: f64,
    pub time_loss_s: f64,
    /// Times the vehicle came to a halt.
    pub stops: u32,
}

pub fn read_trips(xml: &str) -> Result<Vec<Trip>, SumoError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| SumoError::Routes(e.to_string()))?;
    doc.descendants()
        .filter(|n| n.has_tag_name("tripinfo"))
        .map(|t| {
            let num = |a: &str| -> Result<f64, SumoError> {
                t.attribute(a)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| SumoError::Routes(format!("tripinfo without {a}")))
            };
            Ok(Trip {
                id: t.attribute("id").unwrap_or_default().to_string(),
                duration_s: num("duration")?,
                time_loss_s: num("timeLoss")?,
                stops: num("waitingCount")? as u32,
            })
        })
        .collect()
}

/// Vehicles a SUMO route file declares.
pub fn count_vehicles(routes_xml: &str) -> Result<usize, SumoError> {
    let doc =
        roxmltree::Document::parse(routes_xml).map_err(|e| SumoError::Routes(e.to_string()))?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("vehicle"))
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cityflow_flows_become_sorted_sumo_vehicles() {
        let flows = r#"[
          {"route": ["a", "b"], "startTime": 5, "endTime": 5, "interval": 1.0},
          {"route": ["c"], "startTime": 0, "endTime": 2, "interval": 1.0}
        ]"#;
        let xml = cityflow_to_sumo(flows).unwrap();
        assert_eq!(count_vehicles(&xml).unwrap(), 4);
        let first = xml.find("edges=\"c\"").unwrap();
        let last = xml.find("edges=\"a b\"").unwrap();
        assert!(first < last);
        assert!(cityflow_to_sumo("{}").is_err());
    }
}
