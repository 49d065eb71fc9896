//! A city's time zone: local days and hours, and local wall-clock times read as instants.
//!
//! Named by IANA (`Asia/Shanghai`, `Europe/Berlin`) from the tz database compiled into
//! `chrono-tz` (nothing is read from the system or a network), or a fixed offset (`+08:00`,
//! `UTC`). A zone is turned once into the list of its UTC offsets and the instants they start
//! (`spans`), so that asking the offset of an instant is a binary search over a few hundred
//! entries at most, and a constant for zones without daylight saving since 1970 (all of
//! China). The list covers 1970 to 2100: earlier instants take the 1970 offset, later ones
//! the 2100 one.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::{Date, MICROS_PER_SECOND, TimeError, Timestamp};

/// A UTC offset and the instant (UTC seconds) from which it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    from_s: i64,
    offset_s: i32,
}

/// A time zone; cheap to clone.
#[derive(Clone)]
pub struct TimeZone {
    name: Arc<str>,
    /// Sorted by `from_s`; the first starts at `i64::MIN`.
    spans: Arc<[Span]>,
}

const DAY_S: i64 = 86_400;
/// 1970-01-01 and 2100-01-01 in UTC seconds: the range scanned for offset changes.
const SCAN_FROM_S: i64 = 0;
const SCAN_TO_S: i64 = 4_102_444_800;

impl TimeZone {
    pub fn utc() -> Self {
        Self::fixed(0)
    }

    /// A zone that is always `offset_s` seconds ahead of UTC, named like `+08:00`.
    pub fn fixed(offset_s: i32) -> Self {
        let sign = if offset_s < 0 { '-' } else { '+' };
        let abs = offset_s.unsigned_abs();
        let name = if offset_s == 0 {
            "UTC".to_string()
        } else if abs.is_multiple_of(60) {
            format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
        } else {
            format!(
                "{sign}{:02}:{:02}:{:02}",
                abs / 3600,
                abs / 60 % 60,
                abs % 60
            )
        };
        Self {
            name: name.into(),
            spans: Arc::new([Span {
                from_s: i64::MIN,
                offset_s,
            }]),
        }
    }

    /// An IANA name (`Asia/Shanghai`), `UTC`, or a fixed offset `+HH:MM`.
    pub fn parse(name: &str) -> Result<Self, TimeError> {
        let name = name.trim();
        if matches!(name, "UTC" | "Z" | "utc") {
            return Ok(Self::utc());
        }
        if let Some(offset) = parse_fixed(name) {
            return Ok(Self::fixed(offset));
        }
        let tz = chrono_tz::Tz::from_str(name).map_err(|_| TimeError::Zone(name.to_string()))?;
        Ok(Self {
            name: tz.name().into(),
            spans: scan(tz).into(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the offset never changes (after 1970).
    pub fn is_fixed(&self) -> bool {
        self.spans.len() == 1
    }

    /// The offset from UTC, in seconds, at the instant `utc_s` (UTC seconds).
    #[inline]
    pub fn offset_s(&self, utc_s: i64) -> i32 {
        // Most instants a city handles are after its last change (China's was in 1991).
        let last = self.spans[self.spans.len() - 1];
        if utc_s >= last.from_s {
            return last.offset_s;
        }
        let i = self.spans.partition_point(|s| s.from_s <= utc_s);
        self.spans[i.saturating_sub(1)].offset_s
    }

    /// Local wall-clock seconds since 1970-01-01T00:00 local, of the instant `utc_s`.
    #[inline]
    pub fn to_local_s(&self, utc_s: i64) -> i64 {
        utc_s + i64::from(self.offset_s(utc_s))
    }

    /// The local calendar day an instant falls on.
    #[inline]
    pub fn local_day(&self, at: Timestamp) -> Date {
        Date(
            self.to_local_s(at.0.div_euclid(MICROS_PER_SECOND))
                .div_euclid(DAY_S) as i32,
        )
    }

    /// The local wall-clock hour (0..=23) of an instant.
    #[inline]
    pub fn local_hour(&self, at: Timestamp) -> u32 {
        (self
            .to_local_s(at.0.div_euclid(MICROS_PER_SECOND))
            .rem_euclid(DAY_S)
            / 3600) as u32
    }

    /// The instant (UTC seconds) a local wall-clock time names. A time that occurs twice
    /// (clocks going back) is the earlier instant; one that never occurs (clocks going
    /// forward) is read with the offset before the change, so it lands as far after the
    /// change as it was after the last valid time (02:30 in a gap from 02:00 to 03:00 is
    /// 03:30), which is what most systems do.
    pub fn from_local_s(&self, local_s: i64) -> i64 {
        if let [only] = &*self.spans {
            return local_s - i64::from(only.offset_s);
        }
        // Offsets change at most once within two days anywhere, so the offsets two days
        // either side are the only candidates.
        let before = self.offset_s(local_s - 2 * DAY_S);
        let after = self.offset_s(local_s + 2 * DAY_S);
        let valid = |o: i32| {
            let utc = local_s - i64::from(o);
            (self.offset_s(utc) == o).then_some(utc)
        };
        match (valid(before), valid(after)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => local_s - i64::from(before),
        }
    }

    /// The first instant of a local day (local midnight, or the first time after it when
    /// midnight falls in a clock change).
    pub fn day_start(&self, day: Date) -> Timestamp {
        Timestamp::from_secs(self.from_local_s(i64::from(day.0) * DAY_S))
    }

    /// The instant a local wall-clock hour of a day starts, or None when that hour does not
    /// occur that day (clocks going forward).
    pub fn hour_start(&self, day: Date, hour: u32) -> Option<Timestamp> {
        let local = i64::from(day.0) * DAY_S + i64::from(hour) * 3600;
        let utc = self.from_local_s(local);
        (self.to_local_s(utc) == local).then(|| Timestamp::from_secs(utc))
    }
}

/// `+08:00`, `-05:30`, `+0800`, `UTC+8`: a fixed offset in seconds.
fn parse_fixed(text: &str) -> Option<i32> {
    let text = text
        .strip_prefix("UTC")
        .or_else(|| text.strip_prefix("GMT"))
        .unwrap_or(text);
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    // Digits and one colon only, before any slicing by bytes (`+0˿1` split inside its
    // two-byte character; found by fuzzing).
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    if h.is_empty() || h.len() > 2 || m.is_empty() || m.len() > 2 {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 18 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// The offsets of `tz` from 1970 to 2100 and the instants they start, found by checking
/// every day and bisecting to the second where the offset changed.
fn scan(tz: chrono_tz::Tz) -> Vec<Span> {
    let offset = |utc_s: i64| offset_of(tz, utc_s);
    let mut spans = vec![Span {
        from_s: i64::MIN,
        offset_s: offset(SCAN_FROM_S),
    }];
    let mut day = SCAN_FROM_S;
    while day < SCAN_TO_S {
        let next = day + DAY_S;
        let now = spans.last().expect("one span at least").offset_s;
        if offset(next) != now {
            // The first second in (day, next] whose offset is not `now`.
            let (mut lo, mut hi) = (day, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == now {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            spans.push(Span {
                from_s: hi,
                offset_s: offset(hi),
            });
        }
        day = next;
    }
    spans
}

fn offset_of(tz: chrono_tz::Tz, utc_s: i64) -> i32 {
    use chrono::{Offset, TimeZone as _};
    let at = chrono::DateTime::from_timestamp(utc_s, 0)
        .expect("1970..2100 is in chrono's range")
        .naive_utc();
    tz.offset_from_utc_datetime(&at).fix().local_minus_utc()
}

impl PartialEq for TimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TimeZone {}

impl fmt::Debug for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZone({})", self.name)
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn china_is_one_offset() {
        let z = TimeZone::parse("Asia/Shanghai").unwrap();
        // Daylight saving in 1986-1991, none since.
        assert_eq!(z.offset_s(at("1988-07-01T00:00:00Z").as_secs()), 9 * 3600);
        assert_eq!(z.offset_s(at("2026-11-22T00:00:00Z").as_secs()), 8 * 3600);
        assert_eq!(
            z.local_day(at("2026-11-21T16:00:00Z")).to_string(),
            "2026-11-22"
        );
        assert_eq!(
            z.local_day(at("2026-11-21T15:59:59Z")).to_string(),
            "2026-11-21"
        );
        assert_eq!(z.local_hour(at("2026-11-22T00:30:00Z")), 8);
        assert_eq!(
            z.day_start(Date::parse("2026-11-22").unwrap()),
            at("2026-11-22T00:00:00+08:00")
        );
    }

    #[test]
    fn daylight_saving_days_are_23_and_25_hours() {
        let z = TimeZone::parse("Europe/Berlin").unwrap();
        assert!(!z.is_fixed());
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 2026-10-25: 03:00 CEST becomes 02:00 CET.
        let spring = Date::parse("2026-03-29").unwrap();
        let autumn = Date::parse("2026-10-25").unwrap();
        let len = |d: Date| (z.day_start(Date(d.0 + 1)).0 - z.day_start(d).0) / 3_600_000_000;
        assert_eq!(len(spring), 23);
        assert_eq!(len(autumn), 25);
        assert_eq!(z.day_start(spring), at("2026-03-29T00:00:00+01:00"));
        assert_eq!(
            z.hour_start(spring, 2),
            None,
            "02:00 never happens that day"
        );
        assert_eq!(
            z.hour_start(spring, 3),
            Some(at("2026-03-29T03:00:00+02:00"))
        );
        // 02:00 happens twice on the autumn day: the first one counts.
        assert_eq!(
            z.hour_start(autumn, 2),
            Some(at("2026-10-25T02:00:00+02:00"))
        );
        assert_eq!(z.local_hour(at("2026-10-25T02:30:00+01:00")), 2);
        // A time in the gap lands after it.
        let gap = 20_541 * DAY_S + 2 * 3600 + 1800; // 2026-03-29T02:30 local
        assert_eq!(
            Timestamp::from_secs(z.from_local_s(gap)),
            at("2026-03-29T03:30:00+02:00")
        );
        // The southern hemisphere and a half-hour zone.
        let z = TimeZone::parse("Australia/Adelaide").unwrap();
        assert_eq!(
            z.offset_s(at("2026-01-15T00:00:00Z").as_secs()),
            10 * 3600 + 1800
        );
        assert_eq!(
            z.offset_s(at("2026-07-15T00:00:00Z").as_secs()),
            9 * 3600 + 1800
        );
    }

    #[test]
    fn fixed_offsets_and_names() {
        assert_eq!(
            TimeZone::parse("+05:45").unwrap().offset_s(0),
            5 * 3600 + 45 * 60
        );
        assert_eq!(TimeZone::parse("UTC-3").unwrap().name(), "-03:00");
        assert_eq!(TimeZone::parse("UTC").unwrap().offset_s(123), 0);
        assert!(TimeZone::parse("Asia/Zhengzhou").is_err());
        assert!(TimeZone::parse("+25:00").is_err());
        // Found by fuzzing: a multi-byte character where the minutes would be.
        assert!(TimeZone::parse("+0\u{2FF}1").is_err());
        let z: TimeZone = serde_json::from_str("\"America/New_York\"").unwrap();
        assert_eq!(serde_json::to_string(&z).unwrap(), "\"America/New_York\"");
    }
}
