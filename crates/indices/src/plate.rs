//! Plates as fixed-size keys: state per vehicle is looked up once per passage, so the key
//! must hash and compare in a few instructions, not as a heap string.

use std::hash::{BuildHasherDefault, Hasher};

/// A plate packed into 128 bits: up to 15 bytes of UTF-8 verbatim plus their length (every
/// Chinese plate fits: `浙AD12345` is 10 bytes). Longer strings are hashed into the key with
/// the top byte 0xFF, which no packed plate has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlateKey(pub u128);

impl PlateKey {
    pub fn new(plate: &str) -> Self {
        let bytes = plate.as_bytes();
        if bytes.len() <= 15 {
            let mut buf = [0u8; 16];
            buf[..bytes.len()].copy_from_slice(bytes);
            buf[15] = bytes.len() as u8;
            Self(u128::from_le_bytes(buf))
        } else {
            // FNV-1a over 128 bits: long "plates" are garbage input, kept apart, not trusted.
            let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
            for b in bytes {
                h ^= u128::from(*b);
                h = h.wrapping_mul(0x0000000001000000000000000000013B);
            }
            Self(h | (0xFFu128 << 120))
        }
    }
}

/// A multiply-shift hasher for keys that are already well-mixed integers or packed bytes;
/// SipHash (the standard default) would cost more than the rest of the per-passage work.
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517cc1b727220a95);
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
        // Final avalanche, so the low bits hashbrown uses depend on every input bit.
        self.0 ^= self.0 >> 29;
        self.0 = self.0.wrapping_mul(0xbf58476d1ce4e5b9);
        self.0 ^= self.0 >> 32;
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

pub type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_pack_distinctly() {
        let a = PlateKey::new("浙A12345");
        assert_eq!(a, PlateKey::new("浙A12345"));
        assert_ne!(a, PlateKey::new("浙A12346"));
        assert_ne!(PlateKey::new("浙A1"), PlateKey::new("浙A1\0"));
        let long = PlateKey::new("a plate far longer than fifteen bytes");
        assert_eq!(long.0 >> 120, 0xFF);
    }
}
