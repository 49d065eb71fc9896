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

/// The demand a route file declares: vehicles (`<vehicle>`, `<trip>`, and the vehicles a
/// `<flow>` makes) and the window in which they depart.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Demand {
    pub vehicles: usize,
    /// Earliest and latest departure, seconds (0, 0 when there are none).
    pub first_depart_s: f64,
    pub last_depart_s: f64,
}

impl Demand {
    /// Both files' demand together.
    pub fn and(self, other: Demand) -> Demand {
        if self.vehicles == 0 {
            return other;
        }
        if other.vehicles == 0 {
            return self;
        }
        Demand {
            vehicles: self.vehicles + other.vehicles,
            first_depart_s: self.first_depart_s.min(other.first_depart_s),
            last_depart_s: self.last_depart_s.max(other.last_depart_s),
        }
    }
}

/// Reads a route file's demand. A flow counts its `number`, else the vehicles its `period`
/// or `vehsPerHour` makes between `begin` and `end` (a `probability` flow its expected
/// number). Departures SUMO takes from elsewhere (`triggered`) do not move the window.
pub fn demand(routes_xml: &str) -> Result<Demand, SumoError> {
    let doc =
        roxmltree::Document::parse(routes_xml).map_err(|e| SumoError::Routes(e.to_string()))?;
    let mut vehicles = 0usize;
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    let num = |n: &roxmltree::Node<'_, '_>, a: &str| -> Option<f64> {
        n.attribute(a).and_then(|v| v.parse::<f64>().ok())
    };
    for n in doc.root_element().children().filter(|n| n.is_element()) {
        match n.tag_name().name() {
            "vehicle" | "trip" => {
                vehicles += 1;
                if let Some(t) = num(&n, "depart") {
                    first = first.min(t);
                    last = last.max(t);
                }
            }
            "flow" => {
                let begin = num(&n, "begin").unwrap_or(0.0);
                let end = num(&n, "end").unwrap_or(begin + 86_400.0).max(begin);
                let span = end - begin;
                let count = if let Some(k) = num(&n, "number") {
                    k
                } else if let Some(p) = num(&n, "period") {
                    (span / p.max(1e-3)).floor()
                } else if let Some(h) = num(&n, "vehsPerHour") {
                    (span * h / 3600.0).floor()
                } else if let Some(p) = num(&n, "probability") {
                    (span * p).round()
                } else {
                    0.0
                };
                if count > 0.0 {
                    vehicles += count as usize;
                    first = first.min(begin);
                    last = last.max(end);
                }
            }
            _ => {}
        }
    }
    Ok(if vehicles == 0 || !first.is_finite() {
        Demand {
            vehicles,
            ..Demand::default()
        }
    } else {
        Demand {
            vehicles,
            first_depart_s: first,
            last_depart_s: last,
        }
    })
}

/// Picks `n` emergency runs from the routes in a SUMO route file (routed: `<route>`
/// elements; [`crate::route_trips`] makes them for `<trip>`s): the routes crossing the most
/// signals, from different origins, leaving in pairs at the same time so that runs meet,
/// spread over the middle two thirds of the demand's window (`window_s`: first and last
/// departure), where the traffic is.
pub fn pick_ambulances(
    routes_xml: &str,
    network: &citybrain_signals::Network,
    n: usize,
    window_s: (f64, f64),
) -> Result<Vec<Ambulance>, SumoError> {
    let doc =
        roxmltree::Document::parse(routes_xml).map_err(|e| SumoError::Routes(e.to_string()))?;
    // (signals crossed, edges) per candidate, one per origin.
    let mut candidates: Vec<(usize, Vec<String>)> = Vec::new();
    for r in doc.descendants().filter(|n| n.has_tag_name("route")) {
        let edges: Vec<String> = r
            .attribute("edges")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let lights = edges
            .iter()
            .take(edges.len().saturating_sub(1))
            .filter(|e| {
                network
                    .edge_by_name(e)
                    .is_some_and(|e| network.edges[e.0 as usize].to_signal.is_some())
            })
            .count();
        if lights == 0 || edges.len() < 2 {
            continue;
        }
        match candidates.iter_mut().find(|c| c.1[0] == edges[0]) {
            Some(c) if c.0 < lights => *c = (lights, edges),
            Some(_) => {}
            None => candidates.push((lights, edges)),
        }
    }
    if candidates.is_empty() {
        return Err(SumoError::Routes(
            "no route crosses a signal: nothing for an emergency run".into(),
        ));
    }
    // Most signals first; ties by origin name, so the pick does not depend on file order.
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1[0].cmp(&b.1[0])));
    let (begin, end) = window_s;
    let span = (end - begin).max(0.0);
    let pairs = n.div_ceil(2).max(1) as f64;
    Ok((0..n)
        .map(|k| Ambulance {
            id: format!("ambulance_{k}"),
            depart_s: (begin + span / 6.0 + (k / 2) as f64 * (span * 2.0 / 3.0) / pairs).round()
                as u32,
            edges: candidates[k % candidates.len()].1.clone(),
            priority: (n - k) as u8,
        })
        .collect())
}

/// The emergency vehicles' top speed (their `vType`), m/s.
pub const AMBULANCE_MAX_SPEED_MPS: f64 = 11.111;

/// The route file for emergency runs (SUMO's `emergency` class, no blue-light privileges:
/// it stops at red like anyone, so only the signals can keep it moving).
pub fn ambulances_xml(runs: &[Ambulance]) -> String {
    let mut runs: Vec<&Ambulance> = runs.iter().collect();
    runs.sort_by_key(|a| a.depart_s);
    let mut out = format!(
        "<routes>\n  <vType id=\"ambulance\" vClass=\"emergency\" accel=\"2.6\" decel=\"4.5\" length=\"6.5\" minGap=\"2.5\" maxSpeed=\"{AMBULANCE_MAX_SPEED_MPS}\" speedFactor=\"1\" color=\"1,0,0\"/>\n",
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
    /// Seconds it waited to enter the network after its departure time (SUMO's
    /// `departDelay`): time lost too, though not in `timeLoss`.
    pub entry_wait_s: f64,
    /// When it arrived, seconds.
    pub arrival_s: f64,
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
                entry_wait_s: num("departDelay").unwrap_or(0.0),
                arrival_s: num("arrival")?,
            })
        })
        .collect()
}

/// Vehicles a SUMO route file declares (see [`demand`]).
pub fn count_vehicles(routes_xml: &str) -> Result<usize, SumoError> {
    Ok(demand(routes_xml)?.vehicles)
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

    #[test]
    fn trips_and_flows_count_as_demand_with_their_window() {
        // RESCO's cologne files are <trip>s from 25,200 s; "2046 of 0 arrived" came from
        // counting only <vehicle>s.
        let xml = r#"<routes>
          <vType id="pkw"/>
          <trip id="t0" type="pkw" depart="25200.00" from="a" to="b"/>
          <trip id="t1" type="pkw" depart="28799.00" from="a" to="b"/>
          <vehicle id="v0" depart="25300"><route edges="a b"/></vehicle>
          <flow id="f0" begin="25200" end="26200" period="10" from="a" to="b"/>
          <flow id="f1" begin="26000" end="27800" vehsPerHour="600" from="a" to="b"/>
          <flow id="f2" begin="0" end="100" number="7" from="a" to="b"/>
        </routes>"#;
        let d = demand(xml).unwrap();
        assert_eq!(d.vehicles, 3 + 100 + 300 + 7);
        assert_eq!((d.first_depart_s, d.last_depart_s), (0.0, 28799.0));
        assert_eq!(count_vehicles(xml).unwrap(), 410);
    }

    #[test]
    fn ambulances_leave_inside_the_demand_window_on_routes_crossing_signals() {
        use citybrain_signals::{Edge, Network};
        let edge = |name: &str, signal: Option<usize>| Edge {
            name: name.into(),
            lanes: Vec::new(),
            to_signal: signal,
        };
        let network = Network {
            edges: vec![
                edge("a", Some(0)),
                edge("b", Some(1)),
                edge("c", None),
                edge("d", None),
            ],
            ..Network::default()
        };
        // duarouter's output for trips: a vehicle with its route inside.
        let routed = r#"<routes>
          <vehicle id="t0" depart="25200.00"><route edges="c d"/></vehicle>
          <vehicle id="t1" depart="25210.00"><route edges="a b c"/></vehicle>
          <vehicle id="t2" depart="25220.00"><route edges="b c"/></vehicle>
        </routes>"#;
        let runs = pick_ambulances(routed, &network, 6, (25_200.0, 28_800.0)).unwrap();
        assert_eq!(runs.len(), 6);
        for r in &runs {
            assert!(
                (25_200 + 600..=25_200 + 3_000).contains(&r.depart_s),
                "{r:?}"
            );
            assert_ne!(r.edges, ["c", "d"], "a route crossing no signal");
        }
        // The route crossing two lights first, and departures in pairs.
        assert_eq!(runs[0].edges, ["a", "b", "c"]);
        assert_eq!(runs[0].depart_s, runs[1].depart_s);
        assert!(runs[2].depart_s > runs[1].depart_s);
        // No route crosses a light: said so.
        let none = r#"<routes><vehicle id="x" depart="0"><route edges="c d"/></vehicle></routes>"#;
        assert!(pick_ambulances(none, &network, 2, (0.0, 100.0)).is_err());
    }
}
