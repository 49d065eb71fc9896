//! Reads a SUMO network (`.net.xml`) into the signal core's [`Network`]: lanes and edges
//! (junction-internal ones left out), and for each traffic light its links (by signal
//! index, from its connections; an index may control several connections or none) and its
//! green phases (the program's phases that give any link green; yellow and all-red phases
//! are the controller's own business).

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
        let states: Vec<&str> = tl
            .children()
            .filter(|n| n.has_tag_name("phase"))
            .map(|p| p.attribute("state").unwrap_or_default())
            .collect();
        // The green phases: those with a green and no yellow. A phase showing yellow is a
        // transition (its greens continue from the phase before); the controller makes its
        // own. A programme with nothing but such phases keeps them.
        let clean = states
            .iter()
            .any(|s| s.contains(['G', 'g']) && !s.contains(['y', 'Y']));
        for state in states {
            if !state.contains(['G', 'g']) || (clean && state.contains(['y', 'Y'])) {
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
        let signals = phases.first().map_or(0, |p| p.green.len());
        let mut stop_go = vec![false; signals];
        for state in tl
            .children()
            .filter(|n| n.has_tag_name("phase"))
            .filter_map(|p| p.attribute("state"))
        {
            for (i, c) in state.chars().enumerate() {
                if c == 's' && i < signals {
                    stop_go[i] = true;
                }
            }
        }
        if phases.iter().any(|p| p.green.len() != signals) {
            return Err(bad(format!("{name}: phases of different lengths")));
        }
        tl_ix.insert(name.to_string(), net.intersections.len());
        net.intersections.push(Intersection {
            name: name.to_string(),
            links: Vec::new(),
            signals,
            stop_go,
            plan_phases: phases.len(),
            phases,
        });
    }
    net.upstream = vec![Vec::new(); net.lanes.len()];
    for c in doc.descendants().filter(|n| n.has_tag_name("connection")) {
        let lane = |edge: &str, lane: &str| -> Option<LaneId> {
            let e = c.attribute(edge)?;
            let l = c.attribute(lane)?;
            lane_ix.get(&format!("{e}_{l}")).copied()
        };
        let (Some(from), Some(to)) = (lane("from", "fromLane"), lane("to", "toLane")) else {
            continue;
        };
        let feeding = &mut net.upstream[to.0 as usize];
        if !feeding.contains(&from) {
            feeding.push(from);
        }
        let (Some(tl), Some(index)) = (c.attribute("tl"), c.attribute("linkIndex")) else {
            continue;
        };
        let Some(&ix) = tl_ix.get(tl) else { continue };
        let signal: usize = index
            .parse()
            .map_err(|_| bad(format!("{tl}: linkIndex {index:?}")))?;
        if signal >= net.intersections[ix].signals {
            return Err(bad(format!("{tl}: linkIndex {signal} beyond its state")));
        }
        net.intersections[ix].links.push(Link { from, to, signal });
        net.edges[net.lanes[from.0 as usize].edge.0 as usize].to_signal = Some(ix);
    }
    // A signal index no connection uses is allowed (SUMO's ingolstadt21 has them): it is
    // shown like any other and controls nothing.
    net.validate().map_err(|e| bad(e.to_string()))?;
    net.add_approach_phases();
    Ok(net)
}
