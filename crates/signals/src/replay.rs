//! Safety, checked after the fact: a run's signal states, one string per second, replayed
//! against the rules no policy may break. This reads only what was shown, not how the
//! controller decided it, so it checks [`crate::Signal`] and [`crate::Controller`] from the
//! outside (on recorded SUMO runs too).
//!
//! Rules, per signal index: a green that began at red lasts at least the minimum green
//! (unless the record ends first); a green ends only in yellow; a yellow lasts exactly the
//! yellow time and ends in red; a red turns green only after the all-red time with no
//! yellow anywhere at the intersection.

use crate::Timing;

/// A broken rule: which signal, when (seconds from the record's start), which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub signal: usize,
    pub t: usize,
    pub rule: &'static str,
    pub shown: String,
}

fn green(c: u8) -> bool {
    c == b'G' || c == b'g'
}

/// Every violation in `states` (one intersection's state string per second).
pub fn check(timing: &Timing, states: &[String]) -> Vec<Violation> {
    let mut out = Vec::new();
    let n = states.len();
    let Some(width) = states.first().map(String::len) else {
        return out;
    };
    let at = |t: usize, s: usize| states[t].as_bytes().get(s).copied().unwrap_or(b'?');
    for s in 0..width {
        let mut run_start = 0;
        for t in 1..n {
            let (a, b) = (at(t - 1, s), at(t, s));
            let mut bad = |rule: &'static str| {
                out.push(Violation {
                    signal: s,
                    t,
                    rule,
                    shown: format!("{}→{}", states[t - 1], states[t]),
                })
            };
            if green(a) && !(green(b) || b == b'y') {
                bad("a green ends only in yellow");
            }
            if a == b'y' && b != b'y' {
                if b != b'r' {
                    bad("a yellow ends in red");
                }
                if (t - run_start) as u32 != timing.yellow_s {
                    bad("a yellow lasts the yellow time");
                }
            }
            if a == b'r' && green(b) {
                let cleared = (1..=timing.all_red_s as usize).all(|k| {
                    t >= k && !states[t - k].as_bytes().contains(&b'y') && at(t - k, s) == b'r'
                });
                if !cleared {
                    bad("a red turns green after the all-red");
                }
            }
            if !green(a) && green(b) {
                let len = (t..n).take_while(|&k| green(at(k, s))).count();
                if (len as u32) < timing.min_green_s && t + len < n {
                    bad("a green lasts the minimum green");
                }
            }
            if a != b {
                run_start = t;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn each_rule_can_fail() {
        let t = Timing {
            min_green_s: 2,
            max_green_s: 60,
            yellow_s: 2,
            all_red_s: 1,
            max_wait_s: 90,
        };
        let ok = states(&[
            "Gr", "Gr", "yr", "yr", "rr", "rG", "rG", "ry", "ry", "rr", "Gr",
        ]);
        assert_eq!(check(&t, &ok), vec![]);
        for (bad, rule) in [
            (vec!["Gr", "Gr", "rr"], "a green ends only in yellow"),
            (vec!["Gr", "Gr", "yr", "Gr"], "a yellow ends in red"),
            (
                vec!["Gr", "Gr", "yr", "rr", "rG"],
                "a yellow lasts the yellow time",
            ),
            (
                vec!["Gr", "Gr", "yr", "yr", "rG"],
                "a red turns green after the all-red",
            ),
            (
                vec!["Gr", "Gr", "yr", "yr", "rr", "rG", "ry", "ry", "rr"],
                "a green lasts the minimum green",
            ),
        ] {
            let v = check(&t, &states(&bad));
            assert!(v.iter().any(|v| v.rule == rule), "{bad:?}: {v:?}");
        }
    }
}
