//! Masks for personal values. Pure functions over strings; the SQL crate applies them to
//! whole columns where a dataset is scanned.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};

/// Holds a pseudonym key, so the same value gets the same pseudonym in every query (joins
/// and distinct counts work), and no one without the key can test a guess against a
/// pseudonym. The hub's key is never used as it is: each column pseudonymises under a
/// key of its own linkage domain ([`Masker::for_domain`]), so equal values in two
/// datasets get equal pseudonyms only where both owners agreed to link them
/// (docs/adr/2026-12-01-linkage-domains.md).
///
/// The pseudonym function is AES-128-CMAC (NIST SP 800-38B), a standard keyed PRF: with
/// AES instructions it costs a few nanoseconds for an ID or phone number, against
/// hundreds for HMAC-SHA256, and masking runs once per row of every masked scan.
#[derive(Clone)]
pub struct Masker {
    cipher: Aes128,
    /// CMAC's subkeys: K1 for a complete last block, K2 for a padded one.
    k1: [u8; 16],
    k2: [u8; 16],
}

/// Doubling in GF(2¹²⁸), as CMAC derives its subkeys.
fn double(block: [u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (block[i] << 1) | block.get(i + 1).map_or(0, |next| next >> 7);
    }
    if block[0] & 0x80 != 0 {
        out[15] ^= 0x87;
    }
    out
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker { key: <secret> }")
    }
}

/// Bytes in a pseudonym: `ps_` and 16 hex digits.
pub const PSEUDONYM_LEN: usize = 19;

/// Appends `ps_` and the first 8 bytes of `tag` in hex.
fn push_pseudonym(tag: &[u8; 16], out: &mut Vec<u8>) {
    let mut text = *b"ps_0000000000000000";
    for (pair, byte) in text[3..].chunks_exact_mut(2).zip(tag) {
        pair.copy_from_slice(&HEX_PAIRS[*byte as usize]);
    }
    out.extend_from_slice(&text);
}

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    table
};

/// Characters a plate mask keeps at each end.
const PLATE_KEEP: usize = 2;

impl Masker {
    /// `key` must hold at least 16 bytes; the first 16 are used.
    pub fn new(key: &[u8]) -> Self {
        let mut k = [0u8; 16];
        for (i, b) in key.iter().take(16).enumerate() {
            k[i] = *b;
        }
        let cipher = Aes128::new(&k.into());
        let mut l = aes::Block::default();
        cipher.encrypt_block(&mut l);
        let k1 = double(l.into());
        let k2 = double(k1);
        Self { cipher, k1, k2 }
    }

    /// AES-CMAC of `message` (RFC 4493), written out so the per-value cost is the block
    /// encryptions and nothing else.
    pub fn cmac(&self, message: &[u8]) -> [u8; 16] {
        let blocks = message.len().div_ceil(16).max(1);
        let complete = !message.is_empty() && message.len().is_multiple_of(16);
        let mut x = aes::Block::default();
        for chunk in message.chunks(16).take(blocks - 1) {
            for (a, b) in x.iter_mut().zip(chunk) {
                *a ^= b;
            }
            self.cipher.encrypt_block(&mut x);
        }
        let last = &message[(blocks - 1) * 16..];
        let mut m = [0u8; 16];
        m[..last.len()].copy_from_slice(last);
        let subkey = if complete {
            &self.k1
        } else {
            m[last.len()] = 0x80;
            &self.k2
        };
        for (a, (b, k)) in x.iter_mut().zip(m.iter().zip(subkey)) {
            *a ^= b ^ k;
        }
        self.cipher.encrypt_block(&mut x);
        x.into()
    }

    /// The masker of one linkage domain: its key is this key's CMAC of the domain's name,
    /// so domains' pseudonyms are unrelated to one another.
    pub fn for_domain(&self, domain: &str) -> Masker {
        let mut message = b"citybrain linkage v1\0".to_vec();
        message.extend_from_slice(domain.as_bytes());
        Masker::new(&self.cmac(&message))
    }

    /// Appends the pseudonym of `value`: `ps_` and 16 hex digits (64 bits of the keyed
    /// PRF, so even 10⁹ distinct values collide with odds below 1 in 30).
    pub fn pseudonym_into(&self, value: &str, out: &mut String) {
        let mut text = Vec::with_capacity(PSEUDONYM_LEN);
        push_pseudonym(&self.cmac(value.as_bytes()), &mut text);
        out.push_str(std::str::from_utf8(&text).expect("pseudonyms are ASCII"));
    }

    /// Appends the pseudonyms of many values, [`PSEUDONYM_LEN`] bytes each, in order. Values
    /// that fit one cipher block (plates, phone numbers) go through the cipher eight at a
    /// time, which AES instructions pipeline; longer ones (ID numbers) one by one.
    pub fn pseudonyms_into(&self, values: &[&[u8]], out: &mut Vec<u8>) {
        const BATCH: usize = 8;
        let mut blocks = [aes::Block::default(); BATCH];
        let mut short = [false; BATCH];
        for chunk in values.chunks(BATCH) {
            for (i, value) in chunk.iter().enumerate() {
                short[i] = value.len() <= 16;
                if !short[i] {
                    continue;
                }
                let mut m = [0u8; 16];
                m[..value.len()].copy_from_slice(value);
                let subkey = if value.len() == 16 {
                    &self.k1
                } else {
                    m[value.len()] = 0x80;
                    &self.k2
                };
                for (b, (x, k)) in blocks[i].iter_mut().zip(m.iter().zip(subkey)) {
                    *b = x ^ k;
                }
            }
            self.cipher.encrypt_blocks(&mut blocks[..chunk.len()]);
            for (i, value) in chunk.iter().enumerate() {
                let tag: [u8; 16] = if short[i] {
                    blocks[i].into()
                } else {
                    self.cmac(value)
                };
                push_pseudonym(&tag, out);
            }
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
        let a = Masker::new(b"key one, sixteen bytes");
        let b = Masker::new(b"key two, sixteen bytes");
        assert_eq!(
            a.pseudonym("330102199001011234"),
            a.pseudonym("330102199001011234")
        );
        assert_ne!(
            a.pseudonym("330102199001011234"),
            b.pseudonym("330102199001011234")
        );
        assert_ne!(a.pseudonym("13800000000"), a.pseudonym("13800000001"));
        let p = a.pseudonym("x");
        assert!(p.starts_with("ps_") && p.len() == 19, "{p}");
        assert!(!format!("{a:?}").contains("key one"));
        // RFC 4493's first AES-CMAC vector (empty message) pins the function: pseudonyms
        // must not change across versions, or joins with earlier exports would break.
        let rfc_key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let m = Masker::new(&rfc_key);
        // The batched path agrees with the one-by-one path, across lengths 0..40.
        let values: Vec<String> = (0..40)
            .map(|n| "浙".repeat(n / 3) + &"7".repeat(n % 3))
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let mut batched = Vec::new();
        m.pseudonyms_into(&refs, &mut batched);
        let single: String = values.iter().map(|v| m.pseudonym(v)).collect();
        assert_eq!(String::from_utf8(batched).unwrap(), single);
        assert_eq!(m.pseudonym(""), "ps_bb1d6929e9593728");
        let message = hex::decode(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        )
        .unwrap();
        for (len, tag) in [
            (0, "bb1d6929e9593728 7fa37d129b756746"),
            (16, "070a16b46b4d4144 f79bdd9dd04a287c"),
            (40, "dfa66747de9ae630 30ca32611497c827"),
            (64, "51f0bebf7e3b9d92 fc49741779363cfe"),
        ] {
            assert_eq!(
                hex::encode(m.cmac(&message[..len])),
                tag.replace(' ', ""),
                "{len}"
            );
        }
    }
}
