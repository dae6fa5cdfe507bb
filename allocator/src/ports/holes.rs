//! The holes of an LB's automatic ports, as bits: free ports below each port space's
//! cursor, by offset from the range's first port.
//!
//! Most LBs use fewer than 64 automatic ports per space, so their holes are one word per
//! space inside the LB record: finding, taking and giving back a hole touches no other
//! memory and allocates nothing (a `BTreeSet` kept its node on the heap, one more cache
//! miss per decision at a million claims). Larger LBs move to a bitmap per space with a
//! summary word per 64 words, so the lowest and the highest hole are found in at most
//! 1 + 16 word reads for the largest range (65,536 ports), at any number of holes.

/// Port spaces: one per protocol, or one for every protocol (see `PortRule::space`).
const SPACES: usize = 3;

/// The holes of every space, by offset from the automatic range's first port.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum HoleSet {
    /// Every hole lies below offset 64: one word per space.
    Near([u64; SPACES]),
    /// Some space had a hole at offset 64 or above.
    Far(Box<[Bitmap; SPACES]>),
}

/// One space's holes when they reach past offset 64.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    /// Bit `i` of word `j` set when `words[64 * j + i]` is not zero.
    summary: Vec<u64>,
}

impl Bitmap {
    fn from_word(w: u64) -> Bitmap {
        let mut b = Bitmap::default();
        if w != 0 {
            b.words.push(w);
            b.summary.push(1);
        }
        b
    }

    fn insert(&mut self, off: u32) {
        let w = (off / 64) as usize;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
            self.summary.resize(w / 64 + 1, 0);
        }
        self.words[w] |= 1 << (off % 64);
        self.summary[w / 64] |= 1 << (w % 64);
    }

    fn remove(&mut self, off: u32) -> bool {
        let w = (off / 64) as usize;
        let Some(word) = self.words.get_mut(w) else {
            return false;
        };
        let bit = 1 << (off % 64);
        let had = *word & bit != 0;
        *word &= !bit;
        if *word == 0 {
            self.summary[w / 64] &= !(1 << (w % 64));
        }
        had
    }

    fn contains(&self, off: u32) -> bool {
        self.words
            .get((off / 64) as usize)
            .is_some_and(|w| w & (1 << (off % 64)) != 0)
    }

    /// The lowest hole at `from` or above.
    fn first_from(&self, from: u32) -> Option<u32> {
        let w = (from / 64) as usize;
        let here = self.words.get(w)? & (u64::MAX << (from % 64));
        if here != 0 {
            return Some(w as u32 * 64 + here.trailing_zeros());
        }
        // The next non-empty word above `w`, through the summary.
        let w = w + 1;
        let mut j = w / 64;
        let mut s = self.summary.get(j)? & (u64::MAX << (w % 64));
        while s == 0 {
            j += 1;
            s = *self.summary.get(j)?;
        }
        let w = j * 64 + s.trailing_zeros() as usize;
        Some(w as u32 * 64 + self.words[w].trailing_zeros())
    }

    fn last(&self) -> Option<u32> {
        let (j, s) = self
            .summary
            .iter()
            .enumerate()
            .rev()
            .find(|(_, s)| **s != 0)?;
        let w = j * 64 + s.ilog2() as usize;
        Some(w as u32 * 64 + self.words[w].ilog2())
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.summary.iter().all(|&s| s == 0)
    }

    /// The first word, when no hole lies above it.
    fn near(&self) -> Option<u64> {
        match self.last() {
            None => Some(0),
            Some(h) if h < 64 => Some(self.words[0]),
            Some(_) => None,
        }
    }
}

impl Default for HoleSet {
    fn default() -> Self {
        HoleSet::Near([0; SPACES])
    }
}

impl HoleSet {
    /// Records hole `off` of `space`.
    pub fn insert(&mut self, space: usize, off: u32) {
        match self {
            HoleSet::Near(w) if off < 64 => w[space] |= 1 << off,
            HoleSet::Near(w) => {
                let mut far = Box::new(w.map(Bitmap::from_word));
                far[space].insert(off);
                *self = HoleSet::Far(far);
            }
            HoleSet::Far(b) => b[space].insert(off),
        }
    }

    /// Forgets hole `off` of `space`; whether it was one.
    pub fn remove(&mut self, space: usize, off: u32) -> bool {
        match self {
            HoleSet::Near(w) => {
                let bit = 1u64.checked_shl(off).unwrap_or(0);
                let had = w[space] & bit != 0;
                w[space] &= !bit;
                had
            }
            HoleSet::Far(b) => b[space].remove(off),
        }
    }

    /// Whether `off` is a hole of `space`.
    pub fn contains(&self, space: usize, off: u32) -> bool {
        match self {
            HoleSet::Near(w) => off < 64 && w[space] & (1 << off) != 0,
            HoleSet::Far(b) => b[space].contains(off),
        }
    }

    /// The lowest hole of `space` at offset `from` or above.
    pub fn first_from(&self, space: usize, from: u32) -> Option<u32> {
        match self {
            HoleSet::Near(w) => {
                let here = w[space] & u64::MAX.checked_shl(from).unwrap_or(0);
                (here != 0).then(|| here.trailing_zeros())
            }
            HoleSet::Far(b) => b[space].first_from(from),
        }
    }

    /// The highest hole of `space`.
    pub fn last(&self, space: usize) -> Option<u32> {
        match self {
            HoleSet::Near(w) => w[space].checked_ilog2(),
            HoleSet::Far(b) => b[space].last(),
        }
    }

    /// The holes of `space`, lowest first.
    pub fn iter(&self, space: usize) -> impl Iterator<Item = u32> + '_ {
        let mut from = Some(0);
        std::iter::from_fn(move || {
            let h = self.first_from(space, from?)?;
            from = h.checked_add(1);
            Some(h)
        })
    }

    /// Whether no space has a hole.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        match self {
            HoleSet::Near(w) => w.iter().all(|&w| w == 0),
            HoleSet::Far(b) => b.iter().all(Bitmap::is_empty),
        }
    }

    /// Back to one word per space when every hole lies below offset 64 again (an LB that
    /// grew large and drained gives its bitmaps back).
    pub fn shrink(&mut self) {
        if let HoleSet::Far(b) = self
            && let [Some(a), Some(c), Some(d)] = [b[0].near(), b[1].near(), b[2].near()]
        {
            *self = HoleSet::Near([a, c, d]);
        }
    }
}

impl std::fmt::Debug for HoleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries((0..SPACES).map(|s| self.iter(s).collect::<Vec<_>>()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// An operation on one space's holes.
    #[derive(Clone, Debug)]
    enum Op {
        Insert(usize, u32),
        Remove(usize, u32),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Offsets cluster near the word boundaries the representation changes at, and
        // reach the top of the largest range.
        let off = prop_oneof![0u32..70, 4000u32..4200, 65_400u32..65_536];
        prop_oneof![
            4 => (0..SPACES, off.clone()).prop_map(|(s, o)| Op::Insert(s, o)),
            4 => (0..SPACES, off).prop_map(|(s, o)| Op::Remove(s, o)),
            1 => Just(Op::Shrink),
        ]
    }

    proptest! {
        /// Every query answers as a sorted set of (space, offset) does, whichever way the
        /// holes are stored.
        #[test]
        fn answers_like_a_sorted_set(ops in proptest::collection::vec(op(), 1..200)) {
            let mut set = HoleSet::default();
            let mut model: BTreeSet<(usize, u32)> = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(s, o) => {
                        set.insert(s, o);
                        model.insert((s, o));
                    }
                    Op::Remove(s, o) => {
                        prop_assert_eq!(set.remove(s, o), model.remove(&(s, o)));
                    }
                    Op::Shrink => set.shrink(),
                }
                prop_assert_eq!(set.is_empty(), model.is_empty());
                for s in 0..SPACES {
                    let mine: Vec<u32> =
                        model.range((s, 0)..(s + 1, 0)).map(|&(_, o)| o).collect();
                    prop_assert_eq!(set.iter(s).collect::<Vec<_>>(), mine.clone());
                    prop_assert_eq!(set.last(s), mine.last().copied());
                    for from in [0, 1, 63, 64, 65, 4095, 4096, 4130, 65_535] {
                        prop_assert_eq!(
                            set.first_from(s, from),
                            mine.iter().copied().find(|&o| o >= from)
                        );
                        prop_assert_eq!(set.contains(s, from), mine.contains(&from));
                    }
                }
            }
        }
    }

    /// Holes below 64 stay inside the record; one above moves the set to bitmaps, and
    /// draining back below 64 returns it.
    #[test]
    fn moves_to_bitmaps_past_64_and_back() {
        let mut set = HoleSet::default();
        set.insert(1, 63);
        assert!(matches!(set, HoleSet::Near(_)));
        set.insert(1, 64);
        assert!(matches!(set, HoleSet::Far(_)));
        assert_eq!(set.iter(1).collect::<Vec<_>>(), [63, 64]);
        set.shrink();
        assert!(matches!(set, HoleSet::Far(_)), "64 is still a hole");
        assert!(set.remove(1, 64));
        set.shrink();
        assert_eq!(set, HoleSet::Near([0, 1 << 63, 0]));
    }

    /// The highest hole of the largest range and the lowest above a gap of many empty
    /// words are found through the summary.
    #[test]
    fn finds_holes_across_empty_words() {
        let mut set = HoleSet::default();
        set.insert(2, 65_535);
        set.insert(2, 100);
        assert_eq!(set.first_from(2, 101), Some(65_535));
        assert_eq!(set.first_from(2, 0), Some(100));
        assert_eq!(set.last(2), Some(65_535));
        assert_eq!(set.first_from(0, 0), None);
        assert!(set.remove(2, 65_535));
        assert_eq!(set.first_from(2, 101), None);
        assert_eq!(set.last(2), Some(100));
    }
}
