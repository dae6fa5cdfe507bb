//! One protocol class's LBs ordered by (room, position): what best-fit and worst-fit walk.
//!
//! One bit set of positions per room level, and a bit set of the levels holding any: an
//! LB changing room clears one bit and sets another, and the next entry in either
//! direction is the next set bit of its level, or else the first of the next level.
//! Nothing is allocated per decision (a level's set grows to the highest position it has
//! held and keeps its room), and no entry is searched for. Memory is a bit per position
//! for each level held (one inline word while the pool has fewer than 64 positions, as
//! most tenants' pools do), levels spanning at most the listeners of the fullest LB: the
//! whole order of a pool of 100,000 LBs with 22 levels is about 0.7 MB that stays in
//! cache (a treap of the same order took 2.4 MB of nodes and a descent of some 30 of them
//! per move); LBs of thousands of listeners spread over as many levels pay a bit per
//! position for each. Every order read from it is the order of the keys, so walks do not
//! depend on how it is stored.

/// A set of small numbers. Up to 63 it is one word held inline: most pools hold fewer LBs
/// than that, and keep a set per level they have held. Past it, a word per 64 and a
/// summary bit per word that is not zero, so the next or previous member is found in a
/// few words even in a sparse set.
#[derive(Clone, Debug)]
enum Bits {
    Word(u64),
    Wide(Box<Wide>),
}

/// A [`Bits`] past one word.
#[derive(Clone, Debug, Default)]
struct Wide {
    words: Vec<u64>,
    summary: Vec<u64>,
    len: u32,
}

impl Default for Bits {
    fn default() -> Self {
        Bits::Word(0)
    }
}

/// The bits of a word from bit `b` up.
fn from_bit(b: usize) -> u64 {
    !0u64 << b
}

/// The bits of a word up to bit `b`, included.
fn to_bit(b: usize) -> u64 {
    !0u64 >> (63 - b)
}

/// The lowest member of a word's bits, if any.
fn lowest(w: usize, m: u64) -> Option<usize> {
    (m != 0).then(|| w * 64 + m.trailing_zeros() as usize)
}

/// The highest member of a word's bits, if any.
fn highest(w: usize, m: u64) -> Option<usize> {
    (m != 0).then(|| w * 64 + 63 - m.leading_zeros() as usize)
}

impl Bits {
    fn insert(&mut self, i: usize) {
        match self {
            Bits::Word(w) if i < 64 => {
                debug_assert_eq!(*w & (1 << i), 0, "inserted twice");
                *w |= 1 << i;
            }
            Bits::Word(w) => {
                let mut wide = Wide {
                    words: vec![*w],
                    summary: vec![u64::from(*w != 0)],
                    len: w.count_ones(),
                };
                wide.insert(i);
                *self = Bits::Wide(Box::new(wide));
            }
            Bits::Wide(x) => x.insert(i),
        }
    }

    fn remove(&mut self, i: usize) {
        match self {
            Bits::Word(w) => {
                debug_assert!(i < 64 && *w & (1 << i) != 0, "removing an absent entry");
                *w &= !(1 << i);
            }
            Bits::Wide(x) => x.remove(i),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Bits::Word(w) => *w == 0,
            Bits::Wide(x) => x.len == 0,
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            Bits::Word(w) => i < 64 && w & (1 << i) != 0,
            Bits::Wide(x) => x
                .words
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0),
        }
    }

    fn clear(&mut self) {
        match self {
            Bits::Word(w) => *w = 0,
            Bits::Wide(x) => {
                x.words.fill(0);
                x.summary.fill(0);
                x.len = 0;
            }
        }
    }

    /// The first member ≥ `i`.
    fn next_from(&self, i: usize) -> Option<usize> {
        match self {
            Bits::Word(w) if i < 64 => lowest(0, w & from_bit(i)),
            Bits::Word(_) => None,
            Bits::Wide(x) => x.next_from(i),
        }
    }

    /// The last member ≤ `i`.
    fn prev_to(&self, i: usize) -> Option<usize> {
        match self {
            Bits::Word(w) => highest(0, w & to_bit(i.min(63))),
            Bits::Wide(x) => x.prev_to(i),
        }
    }

    fn first(&self) -> Option<usize> {
        self.next_from(0)
    }

    fn last(&self) -> Option<usize> {
        self.prev_to(usize::MAX)
    }
}

impl Wide {
    fn insert(&mut self, i: usize) {
        let w = i / 64;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
            self.summary.resize(w / 64 + 1, 0);
        }
        debug_assert_eq!(self.words[w] & (1 << (i % 64)), 0, "inserted twice");
        self.words[w] |= 1 << (i % 64);
        self.summary[w / 64] |= 1 << (w % 64);
        self.len += 1;
    }

    fn remove(&mut self, i: usize) {
        let w = i / 64;
        debug_assert_ne!(
            self.words[w] & (1 << (i % 64)),
            0,
            "removing an absent entry"
        );
        self.words[w] &= !(1 << (i % 64));
        if self.words[w] == 0 {
            self.summary[w / 64] &= !(1 << (w % 64));
        }
        self.len -= 1;
    }

    /// The first member ≥ `i`.
    fn next_from(&self, i: usize) -> Option<usize> {
        let w = i / 64;
        let m = self.words.get(w)? & from_bit(i % 64);
        if m != 0 {
            return lowest(w, m);
        }
        // The next word that is not zero, by the summary.
        let w = w + 1;
        let mut s = w / 64;
        let mut m = self.summary.get(s)? & from_bit(w % 64);
        while m == 0 {
            s += 1;
            m = *self.summary.get(s)?;
        }
        let w = s * 64 + m.trailing_zeros() as usize;
        lowest(w, self.words[w])
    }

    /// The last member ≤ `i`.
    fn prev_to(&self, i: usize) -> Option<usize> {
        let top = self.words.len().checked_sub(1)?;
        let (w, m) = match i / 64 {
            w if w > top => (top, self.words[top]),
            w => (w, self.words[w] & to_bit(i % 64)),
        };
        if m != 0 {
            return highest(w, m);
        }
        // The previous word that is not zero, by the summary.
        let w = w.checked_sub(1)?;
        let mut s = w / 64;
        let mut m = self.summary[s] & to_bit(w % 64);
        while m == 0 {
            s = s.checked_sub(1)?;
            m = self.summary[s];
        }
        let w = s * 64 + 63 - m.leading_zeros() as usize;
        highest(w, self.words[w])
    }
}

/// Positions with room > 0, ordered by (room, position).
///
/// Levels are kept by how far their room is below `top` (the most room an LB of the pool
/// can have: its profile's listener count), so the levels held span at most the
/// listeners of the fullest LB: a pool of fresh LBs of a 50,000-listener profile keeps one
/// level, not 50,000.
#[derive(Clone, Debug)]
pub(crate) struct RoomOrder {
    /// The most room an entry can have.
    top: u32,
    /// Per position, the room recorded; 0 when the position is not in the order.
    rooms: Vec<u32>,
    /// Per level (`top - room`), its positions; empty for a level never held.
    levels: Vec<Bits>,
    /// The levels holding any position, by `top - room`: the first is the most room.
    filled: Bits,
    len: usize,
}

impl RoomOrder {
    /// An empty order of entries with room up to `top`.
    pub fn new(top: u32) -> RoomOrder {
        RoomOrder {
            top,
            rooms: Vec::new(),
            levels: Vec::new(),
            filled: Bits::default(),
            len: 0,
        }
    }

    /// Requests from memory, without waiting, position `pos`'s room.
    pub fn prefetch(&self, pos: u32) {
        if (pos as usize) < self.rooms.len() {
            prefetch_index::prefetch_index(&self.rooms, pos as usize);
        }
    }

    /// Entries in the order.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets every entry, keeping the room for as many positions.
    pub fn clear(&mut self) {
        self.rooms.fill(0);
        for level in &mut self.levels {
            level.clear();
        }
        self.filled.clear();
        self.len = 0;
    }

    /// Whether `pos` is in the order with room `room`.
    pub fn contains(&self, room: u32, pos: u32) -> bool {
        room > 0 && self.room(pos) == room
    }

    /// The level of `room` (≤ `top`).
    fn depth(&self, room: u32) -> usize {
        debug_assert!(room <= self.top, "room {room} above {}", self.top);
        self.top.saturating_sub(room) as usize
    }

    fn level(&self, depth: usize) -> &Bits {
        &self.levels[depth]
    }

    /// Puts `pos` in the order at `room` (> 0, ≤ `top`); it must not be in it.
    pub fn insert(&mut self, pos: u32, room: u32) {
        debug_assert!(room > 0);
        let (i, d) = (pos as usize, self.depth(room));
        if self.rooms.len() <= i {
            self.rooms.resize(i + 1, 0);
        }
        debug_assert_eq!(self.rooms[i], 0, "inserted twice");
        self.rooms[i] = room;
        if self.levels.len() <= d {
            self.levels.resize_with(d + 1, Bits::default);
        }
        let level = &mut self.levels[d];
        if level.is_empty() {
            self.filled.insert(d);
        }
        level.insert(i);
        self.len += 1;
    }

    /// Takes `pos` out of the order; it must be in it.
    pub fn remove(&mut self, pos: u32) {
        let i = pos as usize;
        let room = self.rooms[i];
        debug_assert!(room > 0, "removing an absent entry");
        let d = self.depth(room);
        self.rooms[i] = 0;
        let level = &mut self.levels[d];
        level.remove(i);
        if level.is_empty() {
            self.filled.remove(d);
        }
        self.len -= 1;
    }

    /// The first position of the next level with more room than depth `d` has.
    fn first_above(&self, d: usize) -> Option<u32> {
        let above = self.filled.prev_to(d.checked_sub(1)?)?;
        self.level(above).first().map(|p| p as u32)
    }

    /// The first entry at or after `(room, pos)`.
    pub fn lower_bound(&self, room: u32, pos: u32) -> Option<u32> {
        if room > self.top {
            return None;
        }
        // Room 0 is depth `top`, never held: every entry lies above it.
        let d = self.depth(room);
        let here = self
            .filled
            .contains(d)
            .then(|| self.level(d).next_from(pos as usize))
            .flatten();
        here.map(|p| p as u32).or_else(|| self.first_above(d))
    }

    /// The last entry.
    pub fn last(&self) -> Option<u32> {
        let d = self.filled.first()?;
        self.level(d).last().map(|p| p as u32)
    }

    /// The entry after `pos`, which is in the order.
    pub fn next(&self, pos: u32) -> Option<u32> {
        let d = self.depth(self.rooms[pos as usize]);
        match self.level(d).next_from(pos as usize + 1) {
            Some(p) => Some(p as u32),
            None => self.first_above(d),
        }
    }

    /// The entry before `pos`, which is in the order.
    pub fn prev(&self, pos: u32) -> Option<u32> {
        let d = self.depth(self.rooms[pos as usize]);
        let here = (pos as usize)
            .checked_sub(1)
            .and_then(|p| self.level(d).prev_to(p));
        if let Some(p) = here {
            return Some(p as u32);
        }
        let below = self.filled.next_from(d + 1)?;
        self.level(below).last().map(|p| p as u32)
    }

    /// The room recorded for `pos` (0 when absent).
    pub fn room(&self, pos: u32) -> u32 {
        self.rooms.get(pos as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most room in these tests: above every room they insert.
    const TOP: u32 = 100;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ascending(o: &RoomOrder) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        let mut at = o.lower_bound(0, 0);
        // Bounded, so an order that loops fails the comparison instead of hanging.
        while let Some(p) = at.filter(|_| v.len() <= o.len()) {
            v.push((o.room(p), p));
            at = o.next(p);
        }
        v
    }

    fn descending(o: &RoomOrder) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        let mut at = o.last();
        while let Some(p) = at.filter(|_| v.len() <= o.len()) {
            v.push((o.room(p), p));
            at = o.prev(p);
        }
        v
    }

    /// Positions packed in one word, either side of the inline word's end, and spread
    /// over several words and summary words.
    fn position() -> impl Strategy<Value = u32> {
        prop_oneof![
            4 => 0u32..40,
            2 => 58u32..70,
            1 => 4_000u32..4_200,
            1 => 262_100u32..262_200,
        ]
    }

    /// Rooms of a few levels, and levels either side of the level set's inline word
    /// (depth 63 is room 37).
    fn room() -> impl Strategy<Value = u32> {
        prop_oneof![3 => 0u32..6, 1 => 34u32..40, 1 => 60u32..70]
    }

    proptest! {
        /// Against a `BTreeSet` of (room, position): after any sequence of moves the two
        /// hold the same entries in the same order, both ways, and `lower_bound` agrees.
        #[test]
        fn orders_like_a_sorted_set(
            moves in prop::collection::vec((position(), room()), 1..400),
            probes in prop::collection::vec((prop_oneof![room(), 95u32..=110], position()), 1..20),
        ) {
            let mut order = RoomOrder::new(TOP);
            let mut model: BTreeSet<(u32, u32)> = BTreeSet::new();
            for (pos, room) in moves {
                let old = order.room(pos);
                if old > 0 {
                    order.remove(pos);
                    model.remove(&(old, pos));
                }
                if room > 0 {
                    order.insert(pos, room);
                    model.insert((room, pos));
                }
                prop_assert_eq!(order.len(), model.len());
            }
            let want: Vec<(u32, u32)> = model.iter().copied().collect();
            prop_assert_eq!(ascending(&order), want.clone());
            let mut rev = want;
            rev.reverse();
            prop_assert_eq!(descending(&order), rev);
            for (room, pos) in probes {
                prop_assert_eq!(
                    order.lower_bound(room, pos),
                    model.range((room, pos)..).next().map(|&(_, p)| p)
                );
            }
            order.clear();
            prop_assert_eq!(order.len(), 0);
            prop_assert_eq!(order.lower_bound(0, 0), None);
        }
    }

    /// Levels are kept from the most room down: LBs of a large profile, all fresh, keep
    /// one level, not one per possible room; one nearly full keeps as many as it is deep.
    #[test]
    fn keeps_levels_for_the_rooms_held_not_the_rooms_possible() {
        let mut o = RoomOrder::new(50_000);
        for p in 0..1_000 {
            o.insert(p, 50_000);
        }
        assert_eq!(o.levels.len(), 1);
        o.insert(1_000, 49_990);
        assert_eq!(o.levels.len(), 11);
        assert_eq!(o.last(), Some(999));
        assert_eq!(o.lower_bound(1, 0), Some(1_000));
        assert_eq!(o.next(1_000), Some(0));
        assert_eq!(o.prev(0), Some(1_000));
        assert_eq!(o.lower_bound(50_001, 0), None);
    }

    /// A pool of fewer than 64 positions keeps each level, and the set of levels held,
    /// in a word inline: no heap per level for the many small pools of many tenants.
    #[test]
    fn a_small_pool_keeps_its_levels_inline() {
        let mut o = RoomOrder::new(TOP);
        for p in 0..64 {
            o.insert(p, 1 + p % 50);
        }
        assert_eq!(o.levels.len(), 100, "room 1 is depth 99");
        assert!(o.levels.iter().all(|l| matches!(l, Bits::Word(_))));
        assert!(matches!(o.filled, Bits::Wide(_)), "levels deeper than 63");
        o.insert(64, 1);
        assert!(matches!(o.levels[99], Bits::Wide(_)));
    }

    /// A level's set held in one word finds its last bit both ways, and keeps its members
    /// when a position past the word makes it wide.
    #[test]
    fn a_level_outgrows_its_inline_word() {
        let mut o = RoomOrder::new(TOP);
        for p in [0, 62, 63] {
            o.insert(p, 4);
        }
        assert_eq!(o.lower_bound(4, 63), Some(63));
        assert_eq!(o.next(62), Some(63));
        assert_eq!(o.prev(63), Some(62));
        assert_eq!(o.last(), Some(63));
        o.insert(64, 4);
        assert_eq!(ascending(&o), vec![(4, 0), (4, 62), (4, 63), (4, 64)]);
        o.remove(64);
        o.remove(0);
        assert_eq!(descending(&o), vec![(4, 63), (4, 62)]);
        assert_eq!(o.lower_bound(4, 1), Some(62));
        assert_eq!(o.lower_bound(4, 64), None);
    }

    /// Sparse and dense levels far apart: the summary words find members past long
    /// runs of empty words both ways, across the summary's own word boundary.
    #[test]
    fn finds_members_across_long_empty_runs() {
        let mut o = RoomOrder::new(TOP);
        let far = [
            0u32, 1, 63, 64, 4_095, 4_096, 4_097, 70_000, 262_143, 262_144,
        ];
        for &p in &far {
            o.insert(p, 3);
        }
        o.insert(5, 1);
        o.insert(300_000, 9);
        let mut want: Vec<(u32, u32)> = far.iter().map(|&p| (3, p)).collect();
        want.insert(0, (1, 5));
        want.push((9, 300_000));
        assert_eq!(ascending(&o), want);
        want.reverse();
        assert_eq!(descending(&o), want);
        assert_eq!(o.lower_bound(3, 4_098), Some(70_000));
        assert_eq!(o.lower_bound(3, 262_145), Some(300_000));
        assert_eq!(o.lower_bound(2, 0), Some(0));
        assert_eq!(o.lower_bound(9, 300_001), None);
        o.remove(300_000);
        assert_eq!(o.last(), Some(262_144));
        assert_eq!(o.prev(4_096), Some(4_095));
        assert_eq!(o.prev(0), Some(5));
        assert_eq!(o.prev(5), None);
    }
}
