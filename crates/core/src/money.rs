//! Money as integer fen (分, 1 yuan = 100 fen): never floating point, so sums are exact.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in fen.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fen(pub i64);

impl Fen {
    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }
}

impl fmt::Display for Fen {
    /// Formats as yuan with two decimals: `Fen(12345)` is `¥123.45`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}¥{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        assert_eq!(Fen(12345).to_string(), "¥123.45");
        assert_eq!(Fen(-5).to_string(), "-¥0.05");
    }
}
