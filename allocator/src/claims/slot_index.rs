//! A hash index of slot numbers in 64-byte chunks: twelve one-byte tags and their twelve
//! slot numbers share a cache line, so a lookup at a million claims waits for one line
//! where a SwissTable waits for its control bytes and then, elsewhere, its bucket.
//!
//! The keys are not stored: the caller hashes a key and says, for a slot number whose
//! tag matches, whether it holds the key (the claim table compares the slot's own id).
//! An entry sits in the first chunk of its probe sequence with a free place; every
//! chunk passed on the way counts one more entry overflowing it, so a lookup stops at
//! the first chunk that nothing overflowed (as in folly's F14), and a removal gives the
//! counts back: there are no tombstones, and the table never needs rebuilding for them.

/// Places per chunk.
const PLACES: usize = 12;

/// An overflow count that has saturated: never decremented again (until a rebuild).
const SATURATED: u8 = u8::MAX;

/// Twelve tags (0 for a free place, else `0x80 |` seven bits of the hash), how many
/// entries overflowed this chunk, padding, and twelve slot numbers: one cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Chunk {
    /// Tags in bytes 0–11, the overflow count in byte [`OVERFLOW`], then zeros: read as
    /// one 16-byte vector.
    head: [u8; 16],
    slots: [u32; PLACES],
}

/// Where a chunk's head holds its overflow count.
const OVERFLOW: usize = PLACES;

/// The places of a chunk, one bit each.
const ALL_PLACES: u32 = (1 << PLACES) - 1;

/// Low bit of each byte of a word.
#[cfg(any(test, not(target_arch = "x86_64")))]
const LOW: u64 = 0x0101_0101_0101_0101;
/// High bit of each byte of a word.
const HIGH: u64 = 0x8080_8080_8080_8080;

impl Chunk {
    /// The head as two words, bytes 0–7 and 8–15.
    fn words(&self) -> (u64, u64) {
        let (a, b) = self.head.split_at(8);
        let word = |x: &[u8]| u64::from_le_bytes(x.try_into().unwrap_or([0; 8]));
        (word(a), word(b))
    }

    /// Places whose tag is `tag`, one bit each (bit `i` for place `i`): SSE2, part of
    /// every x86-64, compares the sixteen bytes of the head at once.
    #[cfg(target_arch = "x86_64")]
    fn matching(&self, tag: u8) -> u32 {
        use safe_arch::{cmp_eq_mask_i8_m128i, m128i, move_mask_i8_m128i, set_splat_i8_m128i};
        let eq = cmp_eq_mask_i8_m128i(
            m128i::from(self.head),
            set_splat_i8_m128i(tag.cast_signed()),
        );
        move_mask_i8_m128i(eq) as u32 & ALL_PLACES
    }

    /// Places whose tag is `tag`, one bit each (bit `i` for place `i`), a word of eight
    /// bytes at a time.
    #[cfg(not(target_arch = "x86_64"))]
    fn matching(&self, tag: u8) -> u32 {
        swar_matching(self.words(), tag)
    }

    /// Places holding an entry.
    fn held(&self) -> u32 {
        let (a, b) = self.words();
        (byte_bits(a & HIGH) | byte_bits(b & HIGH) << 8) & ALL_PLACES
    }

    fn overflow(&self) -> u8 {
        self.head[OVERFLOW]
    }
}

/// [`Chunk::matching`] without vector instructions, from the head as two words.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn swar_matching((a, b): (u64, u64), tag: u8) -> u32 {
    let t = LOW * u64::from(tag);
    (byte_bits(zero_bytes(a ^ t)) | byte_bits(zero_bytes(b ^ t)) << 8) & ALL_PLACES
}

/// The high bit of each byte of `x` that is zero, exactly (no carries between bytes).
#[cfg(any(test, not(target_arch = "x86_64")))]
fn zero_bytes(x: u64) -> u64 {
    !(((x & !HIGH).wrapping_add(!HIGH)) | x | !HIGH)
}

/// The bytes flagged by their high bits as the low bits of a byte mask.
fn byte_bits(mut flags: u64) -> u32 {
    let mut bits = 0;
    while flags != 0 {
        let byte = flags.trailing_zeros() / 8;
        bits |= 1 << byte;
        flags &= flags - 1;
    }
    bits
}

/// The set bits of a place mask, lowest first.
fn places(mut mask: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

/// A set of slot numbers found by their keys' hashes (see the module's doc).
#[derive(Clone, Debug, Default)]
pub(crate) struct SlotIndex {
    /// A power of two of chunks, or none before the first insert.
    chunks: Vec<Chunk>,
    len: usize,
}

/// The tag of a hash: the top seven bits of a pointer-sized hash, with the high bit set
/// so that no tag is 0. On a 32-bit target (the dashboard's wasm) the Fx hash is 32 bits
/// wide, so the top bits of its `u64` would make every tag the same and every tag match
/// a comparison of ids. hashbrown, which this index replaced, takes its tags the same way.
fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> (usize::BITS.min(64) - 7)) as u8
}

impl SlotIndex {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The start of `hash`'s probe: its home chunk (low bits). Triangular steps from
    /// there ([`Probe::next`]) visit every chunk of a power-of-two table once.
    fn probe(&self, hash: u64) -> Probe {
        let mask = self.chunks.len().wrapping_sub(1);
        Probe {
            at: hash as usize & mask,
            mask,
            step: 0,
        }
    }

    /// The slot number with `hash` for which `is` holds.
    pub fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        self.locate(hash, &mut is)
            .map(|(p, i)| self.chunks[p.at].slots[i])
    }

    /// Where the entry with `hash` for which `is` holds sits: the probe at its chunk (its
    /// steps say how many chunks came before), and its place there.
    fn locate(&self, hash: u64, is: &mut impl FnMut(u32) -> bool) -> Option<(Probe, usize)> {
        let tag = tag_of(hash);
        let mut p = self.probe(hash);
        while p.step < self.chunks.len() {
            let chunk = &self.chunks[p.at];
            let mut m = chunk.matching(tag);
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                if is(chunk.slots[i]) {
                    return Some((p, i));
                }
                m &= m - 1;
            }
            if chunk.overflow() == 0 {
                return None;
            }
            p.next();
        }
        None
    }

    /// Requests from memory, without waiting, the line of `hash`'s home chunk, where its
    /// entry most likely is: known from the hash alone, before anything is read.
    pub fn prefetch(&self, hash: u64) {
        if !self.chunks.is_empty() {
            prefetch_index::prefetch_index(&self.chunks, self.probe(hash).at);
        }
    }

    /// Adds slot number `k` under `hash`; the caller has checked that no entry for its
    /// key is present. `rehash` gives the hash of a slot number already held (to grow).
    pub fn insert(&mut self, hash: u64, k: u32, rehash: impl Fn(u32) -> u64) {
        // At most 7/8 of the places full: most entries in their home chunk.
        if (self.len + 1) * 8 > self.chunks.len() * PLACES * 7 {
            self.grow(&rehash);
        }
        self.put(hash, k);
        self.len += 1;
    }

    /// Puts `k` in the first chunk of its probe with a free place (there is one: the
    /// table is never full); the chunks passed each count one more overflowing entry.
    fn put(&mut self, hash: u64, k: u32) {
        let mut p = self.probe(hash);
        loop {
            debug_assert!(p.step < self.chunks.len(), "the probe found no free place");
            let chunk = &mut self.chunks[p.at];
            let free = chunk.matching(0);
            if free != 0 {
                let i = free.trailing_zeros() as usize;
                chunk.head[i] = tag_of(hash);
                chunk.slots[i] = k;
                break;
            }
            chunk.head[OVERFLOW] = chunk.head[OVERFLOW].saturating_add(1);
            p.next();
        }
    }

    /// Twice the chunks (one at first), every entry placed again.
    fn grow(&mut self, rehash: &impl Fn(u32) -> u64) {
        let n = (self.chunks.len() * 2).max(1);
        let old = std::mem::replace(&mut self.chunks, vec![Chunk::default(); n]);
        for chunk in &old {
            for i in places(chunk.held()) {
                let k = chunk.slots[i];
                self.put(rehash(k), k);
            }
        }
    }

    /// Removes slot number `k`, held under `hash`; returns whether it was held.
    pub fn remove(&mut self, hash: u64, k: u32) -> bool {
        let Some((at, i)) = self.locate(hash, &mut |j| j == k) else {
            return false;
        };
        self.chunks[at.at].head[i] = 0;
        // The chunks it passed on the way in count it no more.
        let mut p = self.probe(hash);
        while p.step < at.step {
            let o = &mut self.chunks[p.at].head[OVERFLOW];
            if *o != SATURATED {
                *o -= 1;
            }
            p.next();
        }
        self.len -= 1;
        true
    }
}

/// A position in a probe sequence: the chunk, and how many came before it.
#[derive(Clone, Copy, Debug)]
struct Probe {
    at: usize,
    mask: usize,
    step: usize,
}

impl Probe {
    /// The next chunk: `step + 1` chunks on.
    fn next(&mut self) {
        self.step += 1;
        self.at = (self.at + self.step) & self.mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn a_chunk_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Chunk>(), 64);
        assert_eq!(std::mem::align_of::<Chunk>(), 64);
    }

    /// Tag matching finds exactly the places holding the tag, the last four included.
    #[test]
    fn matching_is_exact() {
        let mut c = Chunk::default();
        c.head[..PLACES].copy_from_slice(&[
            0x81, 0x80, 0x81, 0, 0xff, 0x81, 0x7f, 0x01, 0x81, 0, 0x80, 0x81,
        ]);
        // An overflow count equal to a tag is not a place.
        c.head[OVERFLOW] = 0x81;
        assert_eq!(c.matching(0x81), 0b1001_0010_0101);
        assert_eq!(c.matching(0x80), 0b0100_0000_0010);
        assert_eq!(c.matching(0xff), 0b0000_0001_0000);
        assert_eq!(c.held(), 0b1101_0011_0111);
        assert_eq!(c.matching(0), 0b0010_0000_1000, "free places");
        // The word-at-a-time comparison other targets use finds the same places.
        for tag in [0x80u8, 0x81, 0xff, 0x7f, 0x01] {
            assert_eq!(swar_matching(c.words(), tag), c.matching(tag), "{tag:#x}");
        }
    }

    /// Tags spread over all 128 values for the hashes this target's Fx hasher makes
    /// (32 bits wide on wasm32, where the top bits of a `u64` are all zero).
    #[test]
    fn tags_come_from_the_top_of_a_pointer_sized_hash() {
        let width = usize::BITS.min(64);
        let tags: std::collections::BTreeSet<u8> =
            (0..128u64).map(|i| tag_of(i << (width - 7))).collect();
        assert_eq!(tags.len(), 128);
        assert_eq!(
            tag_of(u64::from(u32::MAX) >> 7),
            0x80,
            "below the top seven bits"
        );
    }

    /// Hashes of few distinct values, so that chunks fill, overflow and saturate.
    fn hash() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..4, (0u64..4).prop_map(|h| h << 57 | 3), any::<u64>(),]
    }

    /// Entries passing a chunk past what its count can say: the count stops at 255 and
    /// stays (lookups then go on past it), and every entry is still found and removed.
    #[test]
    fn saturated_overflow_counts_keep_entries_found() {
        let mut index = SlotIndex::default();
        for k in 0..400 {
            index.insert(0, k, |_| 0);
        }
        assert_eq!(index.chunks[0].overflow(), SATURATED);
        for k in (0..400).filter(|k| k % 7 != 0) {
            assert!(index.remove(0, k), "{k}");
        }
        assert_eq!(index.chunks[0].overflow(), SATURATED);
        for k in 0..400 {
            assert_eq!(index.find(0, |j| j == k), (k % 7 == 0).then_some(k));
        }
        assert_eq!(index.len(), 58);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![3 => hash().prop_map(Op::Insert), 2 => any::<usize>().prop_map(Op::Remove)]
    }

    proptest! {
        /// Against a map of slot number to hash: after any inserts and removals, every
        /// held number is found under its hash (and no other number is), absent ones are
        /// not, and the count agrees. Many entries share a hash, so probes run long.
        #[test]
        fn finds_what_a_map_holds(ops in prop::collection::vec(op(), 1..600)) {
            let mut index = SlotIndex::default();
            let mut model: HashMap<u32, u64> = HashMap::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert(h) => {
                        let hashes = model.clone();
                        index.insert(h, next, |k| hashes[&k]);
                        model.insert(next, h);
                        next += 1;
                    }
                    Op::Remove(i) if !model.is_empty() => {
                        let mut keys: Vec<u32> = model.keys().copied().collect();
                        keys.sort_unstable();
                        let k = keys[i % keys.len()];
                        prop_assert!(index.remove(model[&k], k));
                        prop_assert!(!index.remove(model[&k], k), "removed twice");
                        model.remove(&k);
                    }
                    Op::Remove(_) => {}
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for (&k, &h) in &model {
                prop_assert_eq!(index.find(h, |j| j == k), Some(k));
            }
            for k in next..next + 5 {
                prop_assert_eq!(index.find(k as u64, |j| j == k), None);
            }
            // Overflow counts say exactly how many entries passed each chunk (unless
            // saturated).
            let mut passed = vec![0usize; index.chunks.len()];
            for (&k, &h) in &model {
                let (at, _) = index.locate(h, &mut |j| j == k).expect("held");
                let mut p = index.probe(h);
                while p.step < at.step {
                    passed[p.at] += 1;
                    p.next();
                }
            }
            for (c, chunk) in index.chunks.iter().enumerate() {
                if chunk.overflow() != SATURATED {
                    prop_assert_eq!(usize::from(chunk.overflow()), passed[c], "chunk {}", c);
                }
            }
        }
    }
}
