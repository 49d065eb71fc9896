//! Failpoints: the named places where state is made durable, where the crash matrix
//! (`crates/cli/tests/crash_matrix.rs`, docs/reliability.md) makes the process crash, fail
//! with an I/O error, or write half its bytes and crash (a torn write).
//!
//! Off unless armed: the binary arms them from `CITYBRAIN_FAILPOINTS` at start
//! (`log.append=torn@3;audit.head=crash`), and a point that is not armed costs one relaxed
//! atomic load. We keep this small module instead of the `fail` crate because that crate's
//! points exist only under a cargo feature, and a feature that differs between `cargo build`
//! and `cargo test` rebuilds the whole workspace at every switch (ADR
//! 2026-12-02-failpoints). This module stays free of I/O: a torn write goes through the
//! caller's writer.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What an armed point does when its turn comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Abort the process at once (no destructors, no flush): `kill -9` at that line.
    Crash,
    /// The durable step fails with an I/O error, once; the process goes on.
    Error,
    /// Half the bytes reach the file, then the process aborts.
    Torn,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Error => "error",
            Fault::Torn => "torn",
        }
    }
}

#[derive(Debug)]
struct Armed {
    point: String,
    fault: Fault,
    /// Hits left before the fault fires (0: the next hit).
    skip: u32,
    fired: bool,
}

static ON: AtomicBool = AtomicBool::new(false);
static PLAN: Mutex<Vec<Armed>> = Mutex::new(Vec::new());

/// Arms points from a spec: `point=fault[@n]` separated by `;`, where fault is `crash`,
/// `error` or `torn` and `n` (1 by default) is the hit that fires. Replaces what was armed.
pub fn arm(spec: &str) -> Result<(), String> {
    let mut plan = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (point, rest) = part
            .split_once('=')
            .ok_or_else(|| format!("failpoint `{part}`: expected point=fault[@n]"))?;
        let (fault, nth) = match rest.split_once('@') {
            Some((f, n)) => (
                f,
                n.parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("failpoint `{part}`: @n takes a whole number ≥ 1"))?,
            ),
            None => (rest, 1),
        };
        let fault = match fault {
            "crash" => Fault::Crash,
            "error" => Fault::Error,
            "torn" => Fault::Torn,
            other => {
                return Err(format!(
                    "failpoint `{part}`: unknown fault `{other}` (crash, error or torn)"
                ));
            }
        };
        plan.push(Armed {
            point: point.to_string(),
            fault,
            skip: nth - 1,
            fired: false,
        });
    }
    let on = !plan.is_empty();
    *PLAN.lock().expect("failpoint lock") = plan;
    ON.store(on, Ordering::Release);
    Ok(())
}

/// Whether any point is armed (the binary says so loudly at start).
pub fn armed() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Counts a hit of `point`; the fault to apply now, if its turn has come. A crash does
/// not return.
pub fn hit(point: &str) -> Option<Fault> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    let fault = {
        let mut plan = PLAN.lock().expect("failpoint lock");
        let armed = plan.iter_mut().find(|a| a.point == point && !a.fired)?;
        if armed.skip > 0 {
            armed.skip -= 1;
            return None;
        }
        armed.fired = true;
        armed.fault
    };
    if fault == Fault::Crash {
        crash(point);
    }
    Some(fault)
}

fn crash(point: &str) -> ! {
    eprintln!("failpoint {point}: crashing");
    std::process::abort()
}

fn injected(point: &str) -> io::Error {
    io::Error::other(format!("failpoint {point}: injected I/O error"))
}

/// A durable step with no bytes of its own (an fsync, a rename, a commit): crash or fail.
pub fn step(point: &str) -> io::Result<()> {
    match hit(point) {
        None => Ok(()),
        Some(Fault::Error) => Err(injected(point)),
        // A step has nothing to tear: it crashes.
        Some(Fault::Crash | Fault::Torn) => crash(point),
    }
}

/// Before writing `bytes` to `out`: crash, fail, or write the first half and crash.
pub fn write(point: &str, out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    match hit(point) {
        None => Ok(()),
        Some(Fault::Error) => Err(injected(point)),
        Some(Fault::Torn | Fault::Crash) => {
            let _ = out.write_all(&bytes[..bytes.len() / 2]);
            let _ = out.flush();
            crash(point)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_read_and_bad_ones_named() {
        // One test for the global plan: tests run in parallel.
        arm("a=error@2; b=torn").unwrap();
        assert!(armed());
        assert_eq!(hit("a"), None);
        assert_eq!(hit("a"), Some(Fault::Error));
        assert_eq!(hit("a"), None, "an error fires once");
        assert_eq!(hit("c"), None);
        let mut out = Vec::new();
        assert!(step("a").is_ok());
        arm("x=error").unwrap();
        assert!(write("x", &mut out, b"abcd").is_err());
        assert!(out.is_empty());
        for bad in ["a", "a=melt", "a=crash@0", "a=crash@x"] {
            let e = arm(bad).unwrap_err();
            assert!(e.contains(bad.split('@').next().unwrap()), "{e}");
        }
        arm("").unwrap();
        assert!(!armed());
    }
}
