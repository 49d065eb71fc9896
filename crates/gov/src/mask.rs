//! Masks for personal values. Pure functions over strings; the SQL crate applies them to
//! whole columns where a dataset is scanned.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Holds the hub's pseudonym key, so the same value gets the same pseudonym in every
/// dataset and every query (joins and distinct counts work), and no one without the key
/// can test a guess against a pseudonym.
#[derive(Clone)]
pub struct Masker {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker { key: <secret> }")
    }
}

/// Characters a plate mask keeps at each end.
const PLATE_KEEP: usize = 2;

impl Masker {
    pub fn new(key: &[u8]) -> Self {
        Self {
            keyed: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// Appends the pseudonym of `value`: `ps_` and 16 hex digits (64 bits of a keyed
    /// HMAC-SHA256, so even 10⁹ distinct values collide with odds below 1 in 30).
    pub fn pseudonym_into(&self, value: &str, out: &mut String) {
        let mut mac = self.keyed.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        out.push_str("ps_");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for byte in &digest[..8] {
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 15) as usize] as char);
        }
    }

    pub fn pseudonym(&self, value: &str) -> String {
        let mut out = String::with_capacity(19);
        self.pseudonym_into(value, &mut out);
        out
    }
}

/// Appends the plate mask of `value`: `浙A12345` becomes `浙A·***45`. Values too short to
/// keep both ends become `***`.
pub fn plate_into(value: &str, out: &mut String) {
    let count = value.chars().count();
    if count <= 2 * PLATE_KEEP {
        out.push_str("***");
        return;
    }
    let head_end = value
        .char_indices()
        .nth(PLATE_KEEP)
        .map_or(value.len(), |(i, _)| i);
    let tail_start = value
        .char_indices()
        .nth(count - PLATE_KEEP)
        .map_or(value.len(), |(i, _)| i);
    out.push_str(&value[..head_end]);
    out.push_str("·***");
    out.push_str(&value[tail_start..]);
}

pub fn plate(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 6);
    plate_into(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_keep_province_city_and_last_two() {
        assert_eq!(plate("浙A12345"), "浙A·***45");
        assert_eq!(plate("浙AD12345"), "浙A·***45");
        assert_eq!(plate("浙A1"), "***");
        assert_eq!(plate(""), "***");
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_distinct() {
        let a = Masker::new(b"key one");
        let b = Masker::new(b"key two");
        assert_eq!(a.pseudonym("330102199001011234"), a.pseudonym("330102199001011234"));
        assert_ne!(a.pseudonym("330102199001011234"), b.pseudonym("330102199001011234"));
        assert_ne!(a.pseudonym("13800000000"), a.pseudonym("13800000001"));
        let p = a.pseudonym("x");
        assert!(p.starts_with("ps_") && p.len() == 19, "{p}");
        assert!(!format!("{a:?}").contains("key one"));
    }
}
