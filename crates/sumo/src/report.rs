//! The comparison's tables and JSON: one row per controller, the emergency runs' own
//! table (every ambulance listed, also one that never arrived).

use std::fmt::Write as _;

use citybrain_signals::PolicyKind;

use crate::RunResult;

/// One run as JSON (`results.json`).
pub fn to_json(r: &RunResult) -> serde_json::Value {
    serde_json::json!({
        "controller": r.label, "vehicles": r.loaded, "arrived": r.arrived,
        "teleports": r.teleports, "emergency_braking": r.emergency_braking,
        "emergency_stops": r.emergency_stops, "collisions": r.collisions,
        "begin_s": r.begin_s, "end_s": r.end_s, "last_arrival_s": r.last_arrival_s,
        "mean_delay_s": r.mean_time_loss_s, "mean_entry_wait_s": r.mean_entry_wait_s,
        "mean_delay_with_entry_s": r.mean_time_loss_s + r.mean_entry_wait_s,
        "mean_travel_s": r.mean_travel_s,
        "decide_mean_us": r.decide_mean_us, "decide_p99_us": r.decide_p99_us, "decide_p999_us": r.decide_p999_us,
        "decide_max_us": r.decide_max_us, "phase_changes": r.phase_changes,
        "ambulances": r.ambulances.iter().map(|a| serde_json::json!({
            "id": a.id, "travel_s": a.travel_s, "free_flow_s": a.free_flow_s, "stops": a.stops,
            "signal_stops": a.signal_stops,
            "yielded_stops": a.yielded_stops,
        })).collect::<Vec<_>>(),
    })
}

/// The comparison as text. `ambulances`: the emergency runs' ids (empty: none).
pub fn table(flow: &str, results: &[RunResult], ambulances: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{flow}: means over the vehicles that arrived (SUMO tripinfo); delay = timeLoss, +entry = timeLoss + departDelay"
    );
    let _ = writeln!(
        out,
        "{:<36} {:>8} {:>8} {:>8} {:>13} {:>8} {:>8} {:>9} {:>15}",
        "controller",
        "delay s",
        "+entry s",
        "travel s",
        "arrived",
        "teleport",
        "e-brake",
        "last arr",
        "decide µs mean/p99"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<36} {:>8.1} {:>8.1} {:>8.1} {:>6}/{:<6} {:>8} {:>8} {:>9.0} {:>7.0}/{:<7.0}",
            r.label,
            r.mean_time_loss_s,
            r.mean_time_loss_s + r.mean_entry_wait_s,
            r.mean_travel_s,
            r.arrived,
            r.loaded,
            r.teleports,
            r.emergency_braking,
            r.last_arrival_s,
            r.decide_mean_us,
            r.decide_p99_us
        );
    }
    let find = |label: &str| results.iter().find(|r| r.label == label);
    if let (Some(mp), Some(cb)) = (
        find(PolicyKind::MaxPressure.name()),
        find(PolicyKind::Adaptive.name()),
    ) {
        let _ = writeln!(
            out,
            "citybrain / max-pressure: delay {:.3}, delay with entry wait {:.3}",
            cb.mean_time_loss_s / mp.mean_time_loss_s,
            (cb.mean_time_loss_s + cb.mean_entry_wait_s)
                / (mp.mean_time_loss_s + mp.mean_entry_wait_s)
        );
    }
    if ambulances.is_empty() {
        return out;
    }
    let base = find(PolicyKind::Adaptive.name());
    for r in results.iter().filter(|r| r.label.contains("ambulances")) {
        let _ = writeln!(out, "\n{}:", r.label);
        for id in ambulances {
            match r.ambulances.iter().find(|a| &a.id == id) {
                Some(a) => {
                    let _ = writeln!(
                        out,
                        "  {:<14} travel {:>6.1} s, free-flow {:>6.1} s ({:+.1}%), stops {} ({} at signals, {} for another emergency run)",
                        a.id,
                        a.travel_s,
                        a.free_flow_s,
                        (a.travel_s / a.free_flow_s - 1.0) * 100.0,
                        a.stops,
                        a.signal_stops,
                        a.yielded_stops
                    );
                }
                None => {
                    let _ = writeln!(out, "  {id:<14} did not arrive");
                }
            }
        }
        if let Some(base) = base {
            let _ = writeln!(
                out,
                "  other vehicles' mean delay {:.1} s vs {:.1} s without emergency runs ({:+.1}%); with entry wait {:.1} s vs {:.1} s",
                r.mean_time_loss_s,
                base.mean_time_loss_s,
                (r.mean_time_loss_s / base.mean_time_loss_s - 1.0) * 100.0,
                r.mean_time_loss_s + r.mean_entry_wait_s,
                base.mean_time_loss_s + base.mean_entry_wait_s
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AmbulanceResult;

    #[test]
    fn the_ambulance_table_lists_every_run_also_one_that_never_arrived() {
        let base = RunResult {
            label: "citybrain".into(),
            mean_time_loss_s: 40.0,
            ..RunResult::default()
        };
        let with = RunResult {
            label: "citybrain+ambulances".into(),
            mean_time_loss_s: 41.0,
            ambulances: vec![AmbulanceResult {
                id: "ambulance_0".into(),
                travel_s: 110.0,
                free_flow_s: 100.0,
                stops: 0,
                signal_stops: 0,
                yielded_stops: 0,
            }],
            ..RunResult::default()
        };
        let ids = vec!["ambulance_0".to_string(), "ambulance_1".to_string()];
        let text = table("f", &[base, with], &ids);
        assert!(text.contains("ambulance_0    travel  110.0 s"), "{text}");
        assert!(text.contains("ambulance_1    did not arrive"), "{text}");
        assert!(text.contains("(+2.5%)"), "{text}");
    }
}
