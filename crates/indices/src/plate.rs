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
        let len = bytes.len();
        if len <= 15 {
            // Whole words, not a copy into a buffer read back as one: the bytes stored one by
            // one could not be forwarded to the wide load, which then waited on memory order.
            let (lo, hi) = if len >= 8 {
                (le_u64(&bytes[..8]), le_u64(&bytes[8..]))
            } else {
                (le_u64(bytes), 0)
            };
            Self(u128::from(lo) | (u128::from(hi) << 64) | ((len as u128) << 120))
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

/// Up to 8 bytes as a little-endian integer (missing high bytes zero), by at most two
/// overlapping loads rather than a byte loop.
#[inline]
fn le_u64(b: &[u8]) -> u64 {
    let n = b.len();
    match n {
        0 => 0,
        // First, middle and last byte cover one to three bytes.
        1..=3 => {
            u64::from(b[0])
                | u64::from(b[n / 2]) << (8 * (n / 2))
                | u64::from(b[n - 1]) << (8 * (n - 1))
        }
        4..=7 => {
            let low = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
            let high = u32::from_le_bytes(b[n - 4..].try_into().expect("4 bytes"));
            u64::from(low) | u64::from(high) << (8 * (n - 4))
        }
        _ => u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
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

/// A key no plate packs to (top byte 0xFE: packed plates have a length there, hashed ones
/// 0xFF): marks a free slot.
const FREE: PlateKey = PlateKey(0xFEu128 << 120);

/// The plate and its state together (32 bytes for the traffic operators' state).
#[derive(Debug, Clone, Copy)]
struct Slot<V> {
    key: PlateKey,
    value: V,
}

/// Two slots on one cache line (for the traffic operators' 16-byte state): a probe that
/// starts at a line's first slot reads its second without another miss.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Line<V>([Slot<V>; 2]);

/// State per plate in an open-addressing table (linear probing from the first slot of a
/// cache line, at most half full: a probe past the line is a second miss; at 70% full a
/// city of 2.5 M plates probed about twice as often, measurably slower).
///
/// Why not a `HashMap`: a city's plates are millions of entries, so nearly every passage's
/// lookup misses the CPU cache, and in a general map each miss waits on the one before
/// (control bytes, then the slot). Here a plate's first slot follows from the plate alone,
/// so [`PlateTable::touch`] can start the loads for the next records before they are
/// applied, and they overlap.
#[derive(Debug, Clone)]
pub struct PlateTable<V> {
    /// Slot `i` is `lines[i / 2].0[i % 2]`.
    lines: Vec<Line<V>>,
    len: usize,
}

impl<V: Copy + Default> Default for PlateTable<V> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<V: Copy + Default> PlateTable<V> {
    /// Room for `n` plates before the table grows.
    pub fn with_capacity(n: usize) -> Self {
        Self::with_slots((n * 2 + 1).next_power_of_two())
    }

    /// An empty table of `slots` slots (a power of two).
    fn with_slots(slots: usize) -> Self {
        let slots = slots.max(16);
        debug_assert!(slots.is_power_of_two());
        let free = Slot {
            key: FREE,
            value: V::default(),
        };
        Self {
            lines: vec![Line([free; 2]); slots / 2],
            len: 0,
        }
    }

    fn slot_count(&self) -> usize {
        self.lines.len() * 2
    }

    #[inline]
    fn slot(&self, i: usize) -> &Slot<V> {
        &self.lines[i >> 1].0[i & 1]
    }

    #[inline]
    fn slot_mut(&mut self, i: usize) -> &mut Slot<V> {
        &mut self.lines[i >> 1].0[i & 1]
    }

    fn occupied(self) -> impl Iterator<Item = Slot<V>> {
        self.lines
            .into_iter()
            .flat_map(|l| l.0)
            .filter(|s| s.key != FREE)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first slot to look in: the top bits of a product (Fibonacci hashing), which
    /// depend on every bit of the plate, unlike the low bits. Always the first of a cache
    /// line's two slots, so the line [`PlateTable::touch`] loads holds the next slot too: a
    /// plate one slot past its home is then no second miss.
    #[inline]
    fn home(&self, key: PlateKey) -> usize {
        let k = key.0;
        let x = (k as u64) ^ ((k >> 64) as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - self.slot_count().trailing_zeros())) as usize & !1
    }

    /// Reads the first slot `key` would be in, so a lookup soon after finds it in cache.
    #[inline]
    pub fn touch(&self, key: PlateKey) {
        std::hint::black_box(self.slot(self.home(key)).key);
    }

    pub fn get(&self, key: PlateKey) -> Option<&V> {
        let mask = self.slot_count() - 1;
        let mut i = self.home(key);
        loop {
            let slot = self.slot(i);
            if slot.key == key {
                return Some(&slot.value);
            }
            if slot.key == FREE {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The plate's state, made with `fresh` if the plate is new.
    #[inline]
    pub fn get_or_insert(&mut self, key: PlateKey, fresh: V) -> &mut V {
        debug_assert!(key != FREE);
        if (self.len + 1) * 2 > self.slot_count() {
            self.grow();
        }
        let mask = self.slot_count() - 1;
        let mut i = self.home(key);
        loop {
            let slot = self.slot(i);
            if slot.key == key {
                break;
            }
            if slot.key == FREE {
                *self.slot_mut(i) = Slot { key, value: fresh };
                self.len += 1;
                break;
            }
            i = (i + 1) & mask;
        }
        &mut self.slot_mut(i).value
    }

    /// Keeps the plates for which `keep` holds (rebuilds the table: called once a day).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let kept: Vec<Slot<V>> = std::mem::take(self)
            .occupied()
            .filter(|s| keep(&s.value))
            .collect();
        *self = Self::with_capacity(kept.len());
        for s in kept {
            *self.get_or_insert(s.key, s.value) = s.value;
        }
    }

    /// Twice the slots. (Sized by capacity, `with_capacity(slots)`, it grew fourfold: a city
    /// of 5.2 M plates took 16 M slots per partition, 1.5 GiB over two partitions.)
    fn grow(&mut self) {
        let mut bigger = Self::with_slots(self.slot_count() * 2);
        for s in std::mem::take(self).occupied() {
            bigger.get_or_insert(s.key, s.value);
        }
        *self = bigger;
    }
}

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
        assert_ne!(PlateKey::new(""), FREE);
    }

    #[test]
    fn plates_pack_as_their_bytes_and_length() {
        let text = "浙AD12345xyzw";
        for end in 0..=text.len() {
            let Some(plate) = text.get(..end) else {
                continue;
            };
            let mut buf = [0u8; 16];
            buf[..end].copy_from_slice(plate.as_bytes());
            buf[15] = end as u8;
            assert_eq!(
                PlateKey::new(plate).0,
                u128::from_le_bytes(buf),
                "{plate:?}"
            );
        }
        for n in 0..=15 {
            let plate: String = "0123456789abcdef"[..n].into();
            let mut buf = [0u8; 16];
            buf[..n].copy_from_slice(plate.as_bytes());
            buf[15] = n as u8;
            assert_eq!(
                PlateKey::new(&plate).0,
                u128::from_le_bytes(buf),
                "{plate:?}"
            );
        }
    }

    #[test]
    fn the_table_finds_inserts_grows_and_forgets() {
        let mut t: PlateTable<u32> = PlateTable::default();
        let plate = |i: u32| PlateKey::new(&format!("浙A{i:05}"));
        for i in 0..10_000 {
            *t.get_or_insert(plate(i), 0) += i;
            // Growth doubles: at most half full, and never under a quarter once grown.
            let slots = t.slot_count();
            assert!(t.len() * 2 <= slots, "{} in {slots}", t.len());
            assert!(slots == 16 || t.len() * 4 > slots);
        }
        // A second insert finds the first.
        *t.get_or_insert(plate(7), 100) += 1;
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.get(plate(7)), Some(&8));
        assert_eq!(t.get(plate(9_999)), Some(&9_999));
        assert_eq!(t.get(plate(10_000)), None);
        // Even values stay: plates 0, 2, …, 9,998 and plate 7 (now 8).
        t.retain(|v| v % 2 == 0);
        assert_eq!(t.len(), 5_001);
        assert_eq!(t.get(plate(8)), Some(&8));
        assert_eq!(t.get(plate(7)), Some(&8));
        assert_eq!(t.get(plate(9)), None);
        *t.get_or_insert(plate(9), 1) += 1;
        assert_eq!(t.get(plate(9)), Some(&2));
    }
}
