//! The period a panel's query is about. A query names it with `$at` (the instant the cockpit
//! shows), `$day_start` and `$day_end` (the city's local day around `$at`, 23 or 25 hours
//! when clocks change) and `$week_start` (the local midnight seven days before
//! `$day_start`), so one file serves the live view, a look back and the daily briefing.
//! They are bound as timestamp literals the server makes, never as text a viewer sent.

use citybrain_core::{Date, TimeZone, Timestamp};

/// The names a panel's query may use, each written `$name`.
pub const PARAMETERS: &[&str] = &["at", "day_start", "day_end", "week_start"];

/// The instants behind the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub at: Timestamp,
    pub day_start: Timestamp,
    pub day_end: Timestamp,
    pub week_start: Timestamp,
}

impl Period {
    /// The period of the instant `at` in `zone`.
    pub fn around(at: Timestamp, zone: &TimeZone) -> Period {
        let day = zone.local_day(at);
        let start = zone.day_start(day);
        Period {
            at,
            day_start: start,
            day_end: zone.day_start(Date(day.0 + 1)),
            week_start: zone.day_start(Date(day.0 - 7)),
        }
    }

    /// The whole local day `day`: `$at` is its last microsecond.
    pub fn of_day(day: Date, zone: &TimeZone) -> Period {
        let end = zone.day_start(Date(day.0 + 1));
        Period::around(Timestamp(end.0 - 1), zone)
    }

    fn value(&self, name: &str) -> Option<Timestamp> {
        Some(match name {
            "at" => self.at,
            "day_start" => self.day_start,
            "day_end" => self.day_end,
            "week_start" => self.week_start,
            _ => return None,
        })
    }
}

/// What to do at each `$` outside quotes and comments.
fn scan(sql: &str, mut on_dollar: impl FnMut(usize, &str)) {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'$' => {
                let name_len = sql[i + 1..]
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                on_dollar(i, &sql[i + 1..i + 1 + name_len]);
                i += 1 + name_len;
            }
            _ => i += 1,
        }
    }
}

/// The `$name` parameters a statement uses (outside quotes and comments).
pub(crate) fn named(sql: &str) -> Vec<String> {
    let mut names = Vec::new();
    scan(sql, |_, name| {
        if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            names.push(name.to_string());
        }
    });
    names
}

/// Whether a statement uses `$1`-style parameters.
pub(crate) fn positional(sql: &str) -> bool {
    let mut any = false;
    scan(sql, |_, name| {
        any |= name.starts_with(|c: char| c.is_ascii_digit())
    });
    any
}

/// The statement with each known `$name` replaced by its timestamp literal
/// (`TIMESTAMP '2026-11-22T16:00:00Z'`); unknown names are left for the planner to refuse.
pub fn bind(sql: &str, period: &Period) -> String {
    bind_with(sql, |name| {
        period
            .value(name)
            .map(|value| format!("TIMESTAMP '{value}'"))
    })
}

/// The statement with each `$name` (outside quotes and comments) for which `literal` gives
/// SQL text replaced by it; other names are left for the planner to refuse.
pub fn bind_with(sql: &str, literal: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut copied = 0;
    scan(sql, |at, name| {
        if let Some(text) = literal(name) {
            out.push_str(&sql[copied..at]);
            out.push_str(&text);
            copied = at + 1 + name.len();
        }
    });
    out.push_str(&sql[copied..]);
    out
}

/// The `$name` parameters a statement uses (outside quotes and comments), for checks
/// outside this crate.
pub fn names(sql: &str) -> Vec<String> {
    named(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_day_follows_the_city_zone() {
        let zone = TimeZone::parse("Asia/Shanghai").unwrap();
        let at = Timestamp::parse("2026-11-22T01:30:00Z").unwrap(); // 09:30 local
        let p = Period::around(at, &zone);
        assert_eq!(
            p.day_start,
            Timestamp::parse("2026-11-21T16:00:00Z").unwrap()
        );
        assert_eq!(p.day_end, Timestamp::parse("2026-11-22T16:00:00Z").unwrap());
        assert_eq!(
            p.week_start,
            Timestamp::parse("2026-11-14T16:00:00Z").unwrap()
        );
        assert_eq!(
            Period::of_day(zone.local_day(at), &zone).day_start,
            p.day_start
        );
    }

    #[test]
    fn a_day_when_clocks_change_has_23_hours() {
        let zone = TimeZone::parse("Europe/Berlin").unwrap();
        let at = Timestamp::parse("2026-03-29T12:00:00Z").unwrap();
        let p = Period::around(at, &zone);
        assert_eq!(p.day_end.0 - p.day_start.0, 23 * 3_600_000_000);
    }

    #[test]
    fn parameters_are_bound_outside_quotes_and_comments_only() {
        let zone = TimeZone::utc();
        let p = Period::around(Timestamp::parse("2026-11-22T10:00:00Z").unwrap(), &zone);
        let sql = "SELECT '$at', \"$day_end\" FROM t -- $at\nWHERE ts >= $day_start AND ts < $at";
        let bound = bind(sql, &p);
        assert_eq!(
            bound,
            "SELECT '$at', \"$day_end\" FROM t -- $at\nWHERE ts >= TIMESTAMP '2026-11-22T00:00:00Z' AND ts < TIMESTAMP '2026-11-22T10:00:00Z'"
        );
        assert_eq!(named(sql), vec!["day_start", "at"]);
        assert!(!positional(sql) && positional("SELECT $1"));
    }
}
