//! Reads a SUMO network (`.net.xml`) into the signal core's [`Network`]: lanes and edges
//! (junction-internal ones left out), and for each traffic light its links (by signal
//! index, from its connections) and its green phases (the program's phases that give any
//! link green; yellow and all-red phases are the controller's own business).

use std::collections::HashMap;

use citybrain_signals::{Edge, EdgeId, Intersection, Lane, LaneId, Link, Network, Phase};

use crate::SumoError;

pub fn parse(text: &str) -> Result<Network, SumoError> {
    let doc = roxmltree::Document::parse(text).map_err(|e| SumoError::Net(e.to_string()))?;
    let bad = |what: String| SumoError::Net(what);
    let mut net = Network::default();
    let mut lane_ix: HashMap<String, LaneId> = HashMap::new();
    let mut edge_ix: HashMap<String, EdgeId> = HashMap::new();
    for e in doc.descendants().filter(|n| n.has_tag_name("edge")) {
        if e.attribute("function") == Some("internal") {
            continue;
        }
        let name = e
            .attribute("id")
            .ok_or_else(|| bad("an edge without id".into()))?;
        let edge = EdgeId(net.edges.len() as u32);
        let mut lanes = Vec::new();
        for l in e.children().filter(|n| n.has_tag_name("lane")) {
            let id = l
                .attribute("id")
                .ok_or_else(|| bad(format!("edge {name}: a lane without id")))?;
            let num = |attr: &str| -> Result<f64, SumoError> {
                l.attribute(attr)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad(format!("lane {id}: no {attr}")))
            };
            let lane = LaneId(net.lanes.len() as u32);
            net.lanes.push(Lane {
                name: id.to_string(),
                edge,
                length: num("length")?,
                speed: num("speed")?,
            });
            lane_ix.insert(id.to_string(), lane);
            lanes.push(lane);
        }
        edge_ix.insert(name.to_string(), edge);
        net.edges.push(Edge {
            name: name.to_string(),
            lanes,
            to_signal: None,
        });
    }
    let mut tl_ix: HashMap<String, usize> = HashMap::new();
    for tl in doc.descendants().filter(|n| n.has_tag_name("tlLogic")) {
        let name = tl
            .attribute("id")
            .ok_or_else(|| bad("a tlLogic without id".into()))?;
        if tl_ix.contains_key(name) {
            continue; // another program of the same light: the first is used
        }
        let mut phases: Vec<Phase> = Vec::new();
        for p in tl.children().filter(|n| n.has_tag_name("phase")) {
            let state = p.attribute("state").unwrap_or_default();
            if !state.contains(['G', 'g']) {
                continue;
            }
            let phase = Phase {
                green: state
                    .chars()
                    .map(|c| matches!(c, 'G' | 'g').then_some(c))
                    .collect(),
            };
            if !phases.contains(&phase) {
                phases.push(phase);
            }
        }
        tl_ix.insert(name.to_string(), net.intersections.len());
        net.intersections.push(Intersection {
            name: name.to_string(),
            links: Vec::new(),
            plan_phases: phases.len(),
            phases,
        });
    }
    let mut links: Vec<Vec<Option<Link>>> = net
        .intersections
        .iter()
        .map(|ix| vec![None; ix.phases.first().map_or(0, |p| p.green.len())])
        .collect();
    for c in doc.descendants().filter(|n| n.has_tag_name("connection")) {
        let (Some(tl), Some(index)) = (c.attribute("tl"), c.attribute("linkIndex")) else {
            continue;
        };
        let Some(&ix) = tl_ix.get(tl) else { continue };
        let lane = |edge: &str, lane: &str| -> Option<LaneId> {
            let e = c.attribute(edge)?;
            let l = c.attribute(lane)?;
            lane_ix.get(&format!("{e}_{l}")).copied()
        };
        let (Some(from), Some(to)) = (lane("from", "fromLane"), lane("to", "toLane")) else {
            continue;
        };
        let index: usize = index
            .parse()
            .map_err(|_| bad(format!("{tl}: linkIndex {index:?}")))?;
        if index >= links[ix].len() {
            return Err(bad(format!("{tl}: linkIndex {index} beyond its state")));
        }
        links[ix][index] = Some(Link { from, to });
        net.edges[net.lanes[from.0 as usize].edge.0 as usize].to_signal = Some(ix);
    }
    for (ix, l) in links.into_iter().enumerate() {
        let name = net.intersections[ix].name.clone();
        net.intersections[ix].links = l
            .into_iter()
            .enumerate()
            .map(|(i, l)| l.ok_or_else(|| bad(format!("{name}: no connection for link {i}"))))
            .collect::<Result<_, _>>()?;
    }
    net.validate().map_err(|e| bad(e.to_string()))?;
    net.add_approach_phases();
    Ok(net)
}
