//! Instants and calendar dates, in UTC, without a clock.
//!
//! Nothing here reads the system clock: times come from records, so the code that uses them
//! is deterministic and testable. The civil-date arithmetic is Howard Hinnant's
//! days-from-civil algorithm, exact over the whole proleptic Gregorian calendar.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Why a time or date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("'{0}' is not an RFC 3339 timestamp with a UTC offset, e.g. 2026-11-22T08:00:00+08:00")]
    Timestamp(String),
    #[error("'{0}' is not a date written YYYY-MM-DD")]
    Date(String),
    #[error(
        "'{0}' is not a time zone: give an IANA name such as Asia/Shanghai, UTC, or an offset such as +08:00"
    )]
    Zone(String),
    #[error("'{0}' is not a local time written YYYY-MM-DD HH:MM:SS (optionally with a UTC offset)")]
    Local(String),
    #[error("'{0}' is not a time written YYYYMMDDHHMMSS")]
    Compact(String),
}

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Date(pub i32);

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')),
    )
}

/// Parses `YYYY-MM-DD` into (year, month, day), checking the day exists.
fn parse_ymd(b: &[u8]) -> Option<(i64, u32, u32)> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = i64::from(digits(&b[0..4])?);
    let m = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some((y, m, d))
}

/// Reads `YYYY-MM-DD[T ]HH:MM[:SS[.f]][Z|±HH:MM]` (also with `/` between the date's parts):
/// local seconds since 1970, microseconds, and the offset in seconds when one is written.
fn parse_wall(b: &[u8]) -> Option<(i64, i64, Option<i64>)> {
    if b.len() < 16 {
        return None;
    }
    let date: [u8; 10] = b[0..10].try_into().ok()?;
    let date = if date[4] == b'/' && date[7] == b'/' {
        let mut d = date;
        d[4] = b'-';
        d[7] = b'-';
        d
    } else {
        date
    };
    let (y, mo, d) = parse_ymd(&date)?;
    if !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let (s, mut rest) = match b.get(16) {
        Some(b':') => (digits(b.get(17..19)?)?, &b[19..]),
        _ => (0, &b[16..]),
    };
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut micros = 0i64;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let frac = &rest[1..1 + n];
        for i in 0..6 {
            micros = micros * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
        }
        rest = &rest[1 + n..];
    }
    let offset = match rest {
        [] => None,
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = i64::from(digits(&[*oh1, *oh2])?);
            let om = i64::from(digits(&[*om1, *om2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            Some(if *sign == b'+' { secs } else { -secs })
        }
        _ => return None,
    };
    let local = days_from_civil(y, mo, d) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(s);
    Some((local, micros, offset))
}

impl Timestamp {
    pub fn from_secs(secs: i64) -> Self {
        Self(secs * MICROS_PER_SECOND)
    }

    /// Parses RFC 3339: `2026-11-22T08:00:00Z`, `2026-11-22 08:00:00.250+08:00`.
    ///
    /// A UTC offset is required: a naive local time is ambiguous, and guessing the zone
    /// silently shifts every index by hours.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        Self::parse_bytes(text.as_bytes()).ok_or_else(|| TimeError::Timestamp(text.to_string()))
    }

    fn parse_bytes(b: &[u8]) -> Option<Self> {
        // RFC 3339 proper: dashes in the date, seconds written, an offset.
        if b.len() < 20 || b[4] != b'-' || b[16] != b':' {
            return None;
        }
        match parse_wall(b)? {
            (local, micros, Some(offset)) => {
                Some(Self((local - offset) * MICROS_PER_SECOND + micros))
            }
            (_, _, None) => None,
        }
    }

    /// Parses a wall-clock time as local exports write it (`2026-03-02 08:15:30`,
    /// `2026/03/02 08:15:30.5`, `2026-03-02T08:15`) in `zone`; a UTC offset in the text,
    /// when there is one, wins over the zone.
    pub fn parse_local(text: &str, zone: &crate::TimeZone) -> Result<Self, TimeError> {
        let b = text.trim().as_bytes();
        let (local, micros, offset) =
            parse_wall(b).ok_or_else(|| TimeError::Local(text.to_string()))?;
        let utc = match offset {
            Some(offset) => local - offset,
            None => zone.from_local_s(local),
        };
        Ok(Self(utc * MICROS_PER_SECOND + micros))
    }

    /// Parses the compact form of checkpoint systems, `20260302081530` (optionally with
    /// milliseconds, `20260302081530123`), as local time in `zone`.
    pub fn parse_compact(text: &str, zone: &crate::TimeZone) -> Result<Self, TimeError> {
        let b = text.trim().as_bytes();
        let bad = || TimeError::Compact(text.to_string());
        if !(b.len() == 14 || b.len() == 17) {
            return Err(bad());
        }
        let n = |r: std::ops::Range<usize>| digits(&b[r]).ok_or_else(bad);
        let (y, mo, d) = (i64::from(n(0..4)?), n(4..6)?, n(6..8)?);
        let (h, mi, s) = (n(8..10)?, n(10..12)?, n(12..14)?);
        let millis = if b.len() == 17 {
            i64::from(n(14..17)?)
        } else {
            0
        };
        if !(1..=12).contains(&mo)
            || d == 0
            || d > days_in_month(y, mo)
            || h > 23
            || mi > 59
            || s > 60
        {
            return Err(bad());
        }
        let local = days_from_civil(y, mo, d) * 86_400
            + i64::from(h) * 3600
            + i64::from(mi) * 60
            + i64::from(s);
        Ok(Self(
            zone.from_local_s(local) * MICROS_PER_SECOND + millis * 1000,
        ))
    }

    /// The UTC calendar date this instant falls on.
    pub fn date(self) -> Date {
        Date(self.0.div_euclid(MICROS_PER_DAY) as i32)
    }

    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(MICROS_PER_SECOND)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with microseconds only when there are any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let in_day = self.0.rem_euclid(MICROS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let secs = in_day / MICROS_PER_SECOND;
        let micros = in_day % MICROS_PER_SECOND;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        f.write_str("Z")
    }
}

impl Date {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        parse_ymd(text.as_bytes())
            .map(|(y, m, d)| Self(days_from_civil(y, m, d) as i32))
            .ok_or_else(|| TimeError::Date(text.to_string()))
    }

    pub fn from_ymd(y: i64, m: u32, d: u32) -> Self {
        Self(days_from_civil(y, m, d) as i32)
    }

    /// Year, month (1–12) and day of the month.
    pub fn ymd(self) -> (i64, u32, u32) {
        civil_from_days(i64::from(self.0))
    }

    /// Full years from `birth` to this date: a year is complete on its anniversary, and
    /// someone born on 29 February completes it on 1 March in a common year.
    pub fn years_since(self, birth: Date) -> i64 {
        let (y, m, d) = self.ymd();
        let (by, bm, bd) = birth.ymd();
        y - by - i64::from((m, d) < (bm, bd))
    }

    /// Midnight UTC at the start of this date.
    pub fn start(self) -> Timestamp {
        Timestamp(i64::from(self.0) * MICROS_PER_DAY)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(i64::from(self.0));
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Serde for a [`Timestamp`] as RFC 3339 text, where the derived form is the integer: for
/// rows stored as NDJSON and read by people and browsers (`#[serde(with = "...")]`).
pub mod as_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::Timestamp;

    pub fn serialize<S: Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(at)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(D::Error::custom)
    }
}

/// Serde for a [`Date`] as `YYYY-MM-DD`, where the derived form is the day number.
pub mod date_as_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::Date;

    pub fn serialize<S: Serializer>(day: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(day)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        Date::parse(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_years_count_from_the_anniversary() {
        let d = |t| Date::parse(t).unwrap();
        assert_eq!(d("2026-03-14").years_since(d("1946-03-14")), 80);
        assert_eq!(d("2026-03-13").years_since(d("1946-03-14")), 79);
        // Born on 29 February: a year older on 1 March in a common year.
        assert_eq!(d("2026-02-28").years_since(d("1944-02-29")), 81);
        assert_eq!(d("2026-03-01").years_since(d("1944-02-29")), 82);
        assert_eq!(d("2028-02-29").years_since(d("1944-02-29")), 84);
        assert_eq!(d("2026-12-01").years_since(d("2026-12-01")), 0);
    }

    #[test]
    fn local_and_compact_times_in_a_zone() {
        let sh = crate::TimeZone::parse("Asia/Shanghai").unwrap();
        let want = Timestamp::parse("2026-03-02T08:15:30+08:00").unwrap();
        assert_eq!(
            Timestamp::parse_local("2026-03-02 08:15:30", &sh).unwrap(),
            want
        );
        assert_eq!(
            Timestamp::parse_local("2026/03/02 08:15:30", &sh).unwrap(),
            want
        );
        assert_eq!(
            Timestamp::parse_local(" 2026-03-02T08:15:30 ", &sh).unwrap(),
            want
        );
        assert_eq!(
            Timestamp::parse_compact("20260302081530", &sh).unwrap(),
            want
        );
        assert_eq!(
            Timestamp::parse_compact("20260302081530250", &sh)
                .unwrap()
                .0,
            want.0 + 250_000
        );
        // A written offset wins over the zone.
        assert_eq!(
            Timestamp::parse_local("2026-03-02 00:15:30Z", &sh).unwrap(),
            want
        );
        assert!(Timestamp::parse_local("2026-02-30 08:15:30", &sh).is_err());
        assert!(Timestamp::parse_compact("2026030208153", &sh).is_err());
        // RFC 3339 stays strict: no slashes, seconds required, an offset required.
        assert!(Timestamp::parse("2026/03/02 08:15:30Z").is_err());
        assert!(Timestamp::parse("2026-03-02T08:15Z").is_err());
        assert!(Timestamp::parse("2026-03-02 08:15:30").is_err());
    }

    #[test]
    fn parses_and_formats() {
        let t = Timestamp::parse("2026-11-22T08:00:00+08:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-22T00:00:00Z");
        let t = Timestamp::parse("2026-11-22 00:00:01.25Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-22T00:00:01.250000Z");
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:00Z").unwrap(),
            Timestamp(0)
        );
        assert_eq!(
            Timestamp::parse("1969-12-31T23:59:59Z")
                .unwrap()
                .date()
                .to_string(),
            "1969-12-31"
        );
    }

    #[test]
    fn refuses_bad_times() {
        for bad in [
            "2026-11-22T08:00:00",
            "2026-02-30T08:00:00Z",
            "2026-11-22T25:00:00Z",
            "2026-11-22T08:00:00+8",
            "yesterday",
            "2026-11-22T08:00:00.Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn dates_round_trip() {
        for text in ["2024-02-29", "2000-01-01", "1969-07-20", "2026-12-31"] {
            assert_eq!(Date::parse(text).unwrap().to_string(), text);
        }
        assert!(Date::parse("2023-02-29").is_err());
        assert_eq!(Date::parse("1970-01-02").unwrap(), Date(1));
    }
}
