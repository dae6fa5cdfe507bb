//! The capacity index of one pool (pool key and profile): which LBs have room for how many
//! listeners, so that every policy finds its candidate in logarithmic time at any number of
//! LBs — never by scanning, never cut off after a fixed number of probes.
//!
//! Room is kept per protocol class: one class when the profile mixes protocols, else one
//! per protocol (an LB holding TCP listeners has no room for a UDP claim).

mod order;

use std::cmp::Reverse;

use prefetch_index::prefetch_index;

use crate::model::LbId;
use crate::policy::Walks;
use order::RoomOrder;

/// Four entries of a level of the room tree, each a room per class (the fourth class is
/// unused): one aligned cache line, so a node's children are read together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(align(64))]
struct Quad([[u32; 4]; 4]);

impl Quad {
    /// The largest room of its four entries, per class.
    fn max(&self) -> [u32; 4] {
        let [a, b, c, d] = self.0;
        std::array::from_fn(|k| a[k].max(b[k]).max(c[k]).max(d[k]))
    }
}

fn widen(rooms: [u32; 3]) -> [u32; 4] {
    [rooms[0], rooms[1], rooms[2], 0]
}

/// Which levels of a [`RoomTree`] are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Levels {
    /// Every level: "the lowest id with room for k" is a walk up and down.
    #[default]
    All,
    /// Only the positions' rooms, for a policy that never asks for the lowest id: each
    /// update writes one entry, and the lowest id, if asked after all, is a scan.
    Leaves,
}

/// Max-room tree over the pool's LBs in id order: "the lowest id with room for k".
///
/// Four-way, level by level: `levels[0]` holds each position's room, and entry `i` of
/// `levels[l + 1]` the largest room of `levels[l]`'s quad `i`; the last level is one quad.
/// A path from a leaf to the top reads one line per level, and there are half as many
/// levels as in a binary tree: at a million claims the levels below the top are cold, and
/// every decision walks one path up and (first-fit) one down.
#[derive(Clone, Debug, Default)]
pub(crate) struct RoomTree {
    /// The LB at each position, ids ascending; `None` where one was removed.
    ids: Vec<Option<LbId>>,
    /// Never empty once an LB was pushed; entries past the last position hold 0. Only
    /// `levels[0]` when only the leaves are kept.
    levels: Vec<Vec<Quad>>,
    kept: Levels,
    dead: usize,
}

impl RoomTree {
    /// An empty tree keeping `kept`.
    pub fn new(kept: Levels) -> RoomTree {
        RoomTree {
            kept,
            ..RoomTree::default()
        }
    }

    /// Makes room for position `pos` on every level, adding a level on top when the top
    /// level outgrows one quad.
    fn reserve(&mut self, pos: usize) {
        if self.kept == Levels::Leaves {
            if self.levels.is_empty() {
                self.levels.push(Vec::new());
            }
            if self.levels[0].len() <= pos / 4 {
                self.levels[0].resize(pos / 4 + 1, Quad::default());
            }
            return;
        }
        let mut need = pos / 4 + 1;
        let mut l = 0;
        loop {
            if l == self.levels.len() {
                // A new top level: its first entry is the old top's only quad.
                let mut top = Quad::default();
                if l > 0 {
                    top.0[0] = self.levels[l - 1][0].max();
                }
                self.levels.push(vec![top]);
            }
            if self.levels[l].len() < need {
                self.levels[l].resize(need, Quad::default());
            }
            let quads = self.levels[l].len();
            if quads == 1 && l + 1 == self.levels.len() {
                return;
            }
            need = quads.div_ceil(4);
            l += 1;
        }
    }

    /// A tree of the same positions and LBs, every room 0 (grows as this one would).
    pub fn mirror(&self) -> RoomTree {
        RoomTree {
            ids: self.ids.clone(),
            levels: self
                .levels
                .iter()
                .map(|level| vec![Quad::default(); level.len()])
                .collect(),
            kept: self.kept,
            dead: self.dead,
        }
    }

    /// The highest id present, if any (ids are in position order).
    pub fn last_id(&self) -> Option<LbId> {
        self.ids.iter().rev().flatten().next().copied()
    }

    /// Appends an LB (its id is above every id present) and returns its position.
    pub fn push(&mut self, id: LbId, rooms: [u32; 3]) -> u32 {
        debug_assert!(self.last_id().is_none_or(|x| x < id));
        let pos = self.ids.len();
        self.reserve(pos);
        self.ids.push(Some(id));
        self.set(pos as u32, rooms);
        pos as u32
    }

    /// Records an LB's room. Walks up only while an entry's maximum changes: above an
    /// entry that kept its value nothing changes either (most updates stop within a few
    /// levels).
    pub fn set(&mut self, pos: u32, rooms: [u32; 3]) {
        let mut i = pos as usize;
        self.levels[0][i / 4].0[i % 4] = widen(rooms);
        // With the leaves alone, `levels` has no level above.
        for l in 1..self.levels.len() {
            let m = self.levels[l - 1][i / 4].max();
            i /= 4;
            let entry = &mut self.levels[l][i / 4].0[i % 4];
            if *entry == m {
                break;
            }
            *entry = m;
        }
    }

    /// Removes the LB at `pos`. Returns the LBs whose positions changed when the tree
    /// compacted itself (more than half of it removed).
    pub fn remove(&mut self, pos: u32) -> Vec<(LbId, u32)> {
        self.set(pos, [0; 3]);
        self.ids[pos as usize] = None;
        self.dead += 1;
        if self.dead < 32 || self.dead * 2 < self.ids.len() {
            return Vec::new();
        }
        let live: Vec<(LbId, [u32; 3])> = self
            .ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| id.map(|id| (id, self.rooms_at(i as u32))))
            .collect();
        *self = RoomTree::new(self.kept);
        live.into_iter()
            .map(|(id, rooms)| (id, self.push(id, rooms)))
            .collect()
    }

    /// The lowest position at or after `from` with room ≥ `k` in `class`.
    pub fn first_from(&self, class: usize, k: u32, from: usize) -> Option<usize> {
        if from >= self.ids.len() {
            return None;
        }
        if self.kept == Levels::Leaves {
            return (from..self.ids.len()).find(|&p| self.rooms_at(p as u32)[class] >= k);
        }
        // Up: the rest of each quad from where the search stands, then on the level above
        // from the entry after the quad's own, until an entry has the room.
        let top = self.levels.len() - 1;
        let (mut l, mut i) = (0, from);
        loop {
            let quad = &self.levels[l][i / 4];
            if let Some(c) = (i % 4..4).find(|&c| quad.0[c][class] >= k) {
                i = i / 4 * 4 + c;
                break;
            }
            if l == top {
                return None;
            }
            i = i / 4 + 1;
            l += 1;
            if i >= 4 * self.levels[l].len() {
                return None;
            }
        }
        // Down: the first child with the room, to a position.
        while l > 0 {
            l -= 1;
            let quad = &self.levels[l][i];
            let c = (0..4)
                .find(|&c| quad.0[c][class] >= k)
                .unwrap_or_else(|| unreachable!("an entry is the largest room of its quad"));
            i = i * 4 + c;
        }
        (i < self.ids.len()).then_some(i)
    }

    /// Positions, removed ones included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The LBs present, in position order.
    pub fn lbs(&self) -> impl Iterator<Item = LbId> + '_ {
        self.ids.iter().flatten().copied()
    }

    /// How many LBs are present.
    pub fn lb_count(&self) -> usize {
        self.ids.len() - self.dead
    }

    /// The LB at a position.
    pub fn id(&self, pos: usize) -> Option<LbId> {
        self.ids.get(pos).copied().flatten()
    }

    /// Whether the ids rise with the positions, as first-fit's walk assumes (for the
    /// invariant check).
    pub fn ids_ascend(&self) -> bool {
        self.ids.iter().flatten().is_sorted_by(|a, b| a < b)
    }

    /// The first entry above the positions that does not hold the largest room of its
    /// quad below, if any, as (level, entry) (for the invariant check).
    pub fn stale_node(&self) -> Option<(usize, usize)> {
        (1..self.levels.len()).find_map(|l| {
            (0..4 * self.levels[l].len()).find_map(|i| {
                let below = self.levels[l - 1].get(i).map_or([0; 4], Quad::max);
                (self.levels[l][i / 4].0[i % 4] != below).then_some((l, i))
            })
        })
    }

    /// Requests from memory, without waiting, the line holding a position's room.
    pub fn prefetch(&self, pos: u32) {
        if let Some(leaves) = self.levels.first()
            && (pos as usize / 4) < leaves.len()
        {
            prefetch_index(leaves, pos as usize / 4);
        }
    }

    /// The room recorded at a position.
    pub fn rooms_at(&self, pos: u32) -> [u32; 3] {
        let pos = pos as usize;
        self.levels
            .first()
            .and_then(|leaves| leaves.get(pos / 4))
            .map_or([0; 3], |q| {
                let r = q.0[pos % 4];
                [r[0], r[1], r[2]]
            })
    }
}

/// One pool's index: the room tree (lowest id first) and, per class, LBs ordered by room
/// (fullest or emptiest first). Neither allocates as LBs change room: the tree is an
/// array, the orders link positions in place.
///
/// Only the orders the policy walks ([`Walks`]) are kept: the tree's levels above the
/// positions for the lowest id, the room orders for fullest and emptiest. A walk in an
/// order not kept is answered all the same, from the positions' rooms.
///
/// While fixed listeners are hot, the index also keeps, per hot listener, an index of the
/// same positions holding only the LBs that listener does not clash on
/// ([`PoolIndex::clash_free`]): a claim asking for it walks that one, and never steps over
/// the LBs that all fail it with the same clash.
#[derive(Clone, Debug)]
pub(crate) struct PoolIndex {
    pub tree: RoomTree,
    /// Empty when `walks` keeps no order by room.
    pub by_room: [RoomOrder; 3],
    walks: Walks,
    /// Per class, the LBs with room in it: in a hot listener's index, how many candidates
    /// it leaves (a claim asking for two walks the index leaving fewer); kept in every
    /// index alike, one compare per room change.
    open: [u32; 3],
    /// The most room an LB of the pool can have (its profile's listener count).
    top: u32,
    /// Per tracked hot listener: its index of the LBs it does not clash on (the same
    /// positions, room 0 where it clashes), while it is tracked; none inside those.
    clash_free: [Option<Box<PoolIndex>>; HOT_LISTENERS],
    /// Which `clash_free` entries are kept, one bit each: an update skips the array when
    /// no listener is hot.
    clash_free_bits: u8,
    /// The protocol class each `clash_free` index records: the one a claim asking for its
    /// listener walks (the others' rooms are not kept there).
    clash_free_class: [u8; HOT_LISTENERS],
}

/// How many fixed listeners the allocator tracks as hot (one bit each in an LB record).
pub(crate) const HOT_LISTENERS: usize = 8;

/// The set bits of a hot mask (none to step over when it is 0, as it is for every LB
/// while no listener is hot).
pub(crate) fn bits(mut mask: u8) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let h = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(h)
    })
}

/// An LB's rooms as hot listener `h`'s index records them: its room in `class` where `h`
/// does not clash, nothing else.
fn without_clash(rooms: [u32; 3], mask: u8, h: usize, class: u8) -> [u32; 3] {
    let mut kept = [0; 3];
    if mask & (1 << h) == 0 {
        kept[class as usize] = rooms[class as usize];
    }
    kept
}

impl PoolIndex {
    /// An empty index keeping the orders `walks` names, of LBs with room up to `top`.
    pub fn new(walks: Walks, top: u32) -> PoolIndex {
        let levels = if walks.by_id() {
            Levels::All
        } else {
            Levels::Leaves
        };
        PoolIndex {
            tree: RoomTree::new(levels),
            by_room: std::array::from_fn(|_| RoomOrder::new(top)),
            walks,
            open: [0; 3],
            top,
            clash_free: Default::default(),
            clash_free_bits: 0,
            clash_free_class: [0; HOT_LISTENERS],
        }
    }

    /// Starts hot listener `h`'s index of the LBs it does not clash on, recording room
    /// in `class` (the class of a claim asking for it) and none anywhere yet: the caller
    /// enters each such LB's rooms with [`PoolIndex::enter_clash_free`].
    pub fn start_clash_free(&mut self, h: usize, class: usize) {
        let mut sub = PoolIndex::new(self.walks, self.top);
        sub.tree = self.tree.mirror();
        self.clash_free[h] = Some(Box::new(sub));
        self.clash_free_bits |= 1 << h;
        self.clash_free_class[h] = class as u8;
    }

    /// Enters the rooms of the LB at `pos`, which hot listener `h` does not clash on, into
    /// its index (just started: none recorded there).
    pub fn enter_clash_free(&mut self, h: usize, pos: u32, rooms: [u32; 3]) {
        let kept = without_clash(rooms, 0, h, self.clash_free_class[h]);
        if let Some(sub) = &mut self.clash_free[h] {
            sub.update(pos, (Default::default(), 0), (kept, 0));
        }
    }

    /// Drops hot listener `h`'s index (it is no longer tracked).
    pub fn stop_clash_free(&mut self, h: usize) {
        self.clash_free[h] = None;
        self.clash_free_bits &= !(1 << h);
    }

    /// The LBs in the pool, in position order.
    pub fn lbs(&self) -> impl Iterator<Item = LbId> + '_ {
        self.tree.lbs()
    }

    /// How many LBs the pool holds.
    pub fn lb_count(&self) -> usize {
        self.tree.lb_count()
    }

    /// Hot listener `h`'s index of the LBs it does not clash on, with the class whose
    /// rooms it records, if `h` is tracked and the pool keeps one (see
    /// `Allocator::track_hot`).
    pub fn clash_free(&self, h: usize) -> Option<(&PoolIndex, usize)> {
        let class = usize::from(self.clash_free_class[h]);
        self.clash_free[h].as_deref().map(|sub| (sub, class))
    }

    /// The LBs with room in `class`.
    pub fn open(&self, class: usize) -> u32 {
        self.open[class]
    }

    /// Counts the LBs with room in each class, for checking [`PoolIndex::open`].
    pub fn recount_open(&self) -> [u32; 3] {
        let mut open = [0; 3];
        for pos in 0..self.tree.len() as u32 {
            for (c, r) in self.tree.rooms_at(pos).into_iter().enumerate() {
                open[c] += u32::from(r > 0);
            }
        }
        open
    }

    fn count_open(&mut self, old: [u32; 3], new: [u32; 3]) {
        for c in 0..3 {
            match (old[c] > 0, new[c] > 0) {
                (false, true) => self.open[c] += 1,
                (true, false) => self.open[c] -= 1,
                _ => {}
            }
        }
    }

    /// Whether the room orders are kept.
    pub fn keeps_room_orders(&self) -> bool {
        self.walks.by_room()
    }

    /// Adds a new LB (its id above all others, empty: no hot listener on it); returns its
    /// position.
    pub fn insert(&mut self, id: LbId, rooms: [u32; 3]) -> u32 {
        for h in bits(self.clash_free_bits) {
            if let Some(sub) = &mut self.clash_free[h] {
                sub.insert(id, without_clash(rooms, 0, h, self.clash_free_class[h]));
            }
        }
        self.count_open([0; 3], rooms);
        let pos = self.tree.push(id, rooms);
        if self.walks.by_room() {
            for (c, &r) in rooms.iter().enumerate() {
                if r > 0 {
                    self.by_room[c].insert(pos, r);
                }
            }
        }
        pos
    }

    /// Requests from memory, without waiting, the lines an update of position `pos` starts
    /// from: its room-tree leaf and, where room orders are kept, its node in each.
    pub fn prefetch(&self, pos: u32) {
        self.tree.prefetch(pos);
        if self.walks.by_room() {
            for order in &self.by_room {
                order.prefetch(pos);
            }
        }
    }

    /// Moves an LB's entries from `old` rooms and hot mask to `new` ones.
    #[inline]
    pub fn update(&mut self, pos: u32, old: ([u32; 3], u8), new: ([u32; 3], u8)) {
        for h in bits(self.clash_free_bits) {
            if let Some(sub) = &mut self.clash_free[h] {
                let class = self.clash_free_class[h];
                let (o, n) = (
                    without_clash(old.0, old.1, h, class),
                    without_clash(new.0, new.1, h, class),
                );
                sub.update_kept(pos, usize::from(class), o, n);
            }
        }
        let (old, new) = (old.0, new.0);
        if old == new {
            return;
        }
        self.count_open(old, new);
        for c in 0..3 {
            if old[c] != new[c] {
                self.reorder(c, pos, old[c], new[c]);
            }
        }
        self.tree.set(pos, new);
    }

    /// Moves `pos` from room `old` to `new` (0: none) in `class`'s order, where kept.
    fn reorder(&mut self, class: usize, pos: u32, old: u32, new: u32) {
        if self.walks.by_room() {
            if old > 0 {
                self.by_room[class].remove(pos);
            }
            if new > 0 {
                self.by_room[class].insert(pos, new);
            }
        }
    }

    /// [`PoolIndex::update`] in a hot listener's index, whose rooms are 0 outside `class`
    /// (and which keeps no index of its own): one class to move, the most frequent update
    /// there is while listeners are hot.
    #[inline]
    fn update_kept(&mut self, pos: u32, class: usize, old: [u32; 3], new: [u32; 3]) {
        let (o, n) = (old[class], new[class]);
        if o == n {
            return;
        }
        debug_assert_eq!(self.clash_free_bits, 0, "no index inside a hot listener's");
        self.count_open(old, new);
        self.reorder(class, pos, o, n);
        self.tree.set(pos, new);
    }

    /// Removes an LB (its rooms and hot mask as recorded); returns moved positions (see
    /// [`RoomTree::remove`]).
    pub fn remove(&mut self, pos: u32, old: [u32; 3], hot_mask: u8) -> Vec<(LbId, u32)> {
        self.count_open(old, [0; 3]);
        if self.walks.by_room() {
            for (c, &r) in old.iter().enumerate() {
                if r > 0 {
                    self.by_room[c].remove(pos);
                }
            }
        }
        let moved = self.tree.remove(pos);
        if !moved.is_empty() && self.walks.by_room() {
            // Positions changed: the orders are rebuilt on the new ones.
            for order in &mut self.by_room {
                order.clear();
            }
            for &(_, p) in &moved {
                for (c, &r) in self.tree.rooms_at(p).iter().enumerate() {
                    if r > 0 {
                        self.by_room[c].insert(p, r);
                    }
                }
            }
        }
        // The same positions die in the hot listeners' indexes, so they compact alike.
        for h in bits(self.clash_free_bits) {
            if let Some(sub) = &mut self.clash_free[h] {
                let kept = without_clash(old, hot_mask, h, self.clash_free_class[h]);
                let theirs = sub.remove(pos, kept, 0);
                debug_assert_eq!(theirs, moved, "a hot listener's index moves alike");
            }
        }
        moved
    }

    /// Whether the LB at `pos` is ordered at `room` in `class`.
    pub fn ordered_at(&self, class: usize, room: u32, pos: u32) -> bool {
        self.by_room[class].contains(room, pos)
    }

    /// Entries in the room orders, all classes.
    pub fn ordered_len(&self) -> usize {
        self.by_room.iter().map(RoomOrder::len).sum()
    }

    /// LBs with room ≥ `k` in `class`, lowest id first.
    pub fn lowest_id(&self, class: usize, k: u32) -> LowestId<'_> {
        LowestId {
            tree: &self.tree,
            class,
            k,
            at: 0,
        }
    }

    /// LBs with room ≥ `k` in `class`, least room first, then lowest id.
    pub fn fullest(&self, class: usize, k: u32) -> Fullest<'_> {
        let order = self.room_order(class, k);
        Fullest {
            index: self,
            at: order.lower_bound(k, 0),
            order,
        }
    }

    /// LBs with room ≥ `k` in `class`, most room first, then lowest id.
    pub fn emptiest(&self, class: usize, k: u32) -> Emptiest<'_> {
        Emptiest {
            index: self,
            order: self.room_order(class, k),
            k,
            at: None,
            level: Level::Top,
        }
    }

    /// The order by room of `class`: the one kept, or else one built for this walk from
    /// the positions with room ≥ `k` (a policy walking an order it did not name).
    fn room_order(&self, class: usize, k: u32) -> OrderRef<'_> {
        if self.walks.by_room() {
            return OrderRef::Kept(&self.by_room[class]);
        }
        let mut order = RoomOrder::new(self.top);
        for pos in 0..self.tree.len() as u32 {
            let room = self.tree.rooms_at(pos)[class];
            if room >= k.max(1) {
                order.insert(pos, room);
            }
        }
        OrderRef::Built(Box::new(order))
    }

    /// The id at a position of the orders.
    fn id_at(&self, pos: u32) -> LbId {
        self.tree
            .id(pos as usize)
            .unwrap_or_else(|| unreachable!("an ordered position holds an LB"))
    }
}

/// The room order a walk reads: the pool's own, or one built for the walk. Two words, so
/// the walks that hold it stay small to move (a walk is set up per decision).
enum OrderRef<'a> {
    Kept(&'a RoomOrder),
    Built(Box<RoomOrder>),
}

impl std::ops::Deref for OrderRef<'_> {
    type Target = RoomOrder;
    fn deref(&self) -> &RoomOrder {
        match self {
            OrderRef::Kept(o) => o,
            OrderRef::Built(o) => o,
        }
    }
}

/// Iterator of [`PoolIndex::lowest_id`].
pub(crate) struct LowestId<'a> {
    tree: &'a RoomTree,
    class: usize,
    k: u32,
    at: usize,
}

impl Iterator for LowestId<'_> {
    type Item = (LbId, LbId);
    fn next(&mut self) -> Option<(LbId, LbId)> {
        let pos = self.tree.first_from(self.class, self.k, self.at)?;
        self.at = pos + 1;
        let id = self.tree.id(pos)?;
        Some((id, id))
    }
}

/// Iterator of [`PoolIndex::fullest`].
pub(crate) struct Fullest<'a> {
    index: &'a PoolIndex,
    order: OrderRef<'a>,
    at: Option<u32>,
}

impl Iterator for Fullest<'_> {
    type Item = ((u32, LbId), LbId);
    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.at?;
        let order = &self.order;
        self.at = order.next(pos);
        let id = self.index.id_at(pos);
        Some(((order.room(pos), id), id))
    }
}

/// Which room level [`Emptiest`] reads next.
enum Level {
    /// The top one, not started.
    Top,
    /// The one below the level that starts at this position.
    Below(u32),
    /// None left.
    Done,
}

/// Iterator of [`PoolIndex::emptiest`]: room levels from the top, ids ascending within one.
pub(crate) struct Emptiest<'a> {
    index: &'a PoolIndex,
    order: OrderRef<'a>,
    k: u32,
    /// The next entry of the current level.
    at: Option<u32>,
    level: Level,
}

impl Iterator for Emptiest<'_> {
    type Item = ((Reverse<u32>, LbId), LbId);
    fn next(&mut self) -> Option<Self::Item> {
        let order = &self.order;
        if self.at.is_none() {
            let top = match self.level {
                Level::Top => order.last(),
                Level::Below(start) => order.prev(start),
                Level::Done => None,
            };
            let Some(top) = top.filter(|&p| order.room(p) >= self.k) else {
                self.level = Level::Done;
                return None;
            };
            let start = order.lower_bound(order.room(top), 0);
            self.level = start.map_or(Level::Done, Level::Below);
            self.at = start;
        }
        let pos = self.at?;
        let room = order.room(pos);
        self.at = order.next(pos).filter(|&n| order.room(n) == room);
        let id = self.index.id_at(pos);
        Some(((Reverse(room), id), id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push([u32; 3]),
        Set(usize, [u32; 3]),
        Remove(usize),
    }

    /// The most room an LB has in these tests: what [`rooms`] draws up to, so the fullest
    /// level and the emptiest are both reached.
    const TOP: u32 = 4;

    fn rooms() -> impl Strategy<Value = [u32; 3]> {
        // Few distinct rooms, so maxima tie and updates stop at every height.
        proptest::array::uniform3(0u32..=TOP)
    }

    fn op() -> impl Strategy<Value = Op> {
        // Removals nearly as often as pushes, so that more than half the positions die
        // and the tree compacts itself.
        prop_oneof![
            4 => rooms().prop_map(Op::Push),
            4 => (any::<usize>(), rooms()).prop_map(|(i, r)| Op::Set(i, r)),
            3 => any::<usize>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// After any mix of pushes, updates and removals (compactions included), every
        /// query answers as a scan of the positions does, and no entry is stale.
        #[test]
        fn answers_like_a_scan(
            ops in proptest::collection::vec(op(), 1..400),
            leaves_only in any::<bool>(),
        ) {
            let mut t = RoomTree::new(if leaves_only { Levels::Leaves } else { Levels::All });
            // The model: each position's LB (if live) and room.
            let mut model: Vec<(Option<LbId>, [u32; 3])> = Vec::new();
            let mut next_id = 0;
            for op in ops {
                match op {
                    Op::Push(r) => {
                        next_id += 1;
                        let pos = t.push(LbId(next_id), r);
                        prop_assert_eq!(pos as usize, model.len());
                        model.push((Some(LbId(next_id)), r));
                    }
                    Op::Set(i, r) => {
                        let live: Vec<usize> =
                            (0..model.len()).filter(|&p| model[p].0.is_some()).collect();
                        if let Some(&p) = live.get(i % live.len().max(1)) {
                            t.set(p as u32, r);
                            model[p].1 = r;
                        }
                    }
                    Op::Remove(i) => {
                        let live: Vec<usize> =
                            (0..model.len()).filter(|&p| model[p].0.is_some()).collect();
                        if let Some(&p) = live.get(i % live.len().max(1)) {
                            let moved = t.remove(p as u32);
                            model[p] = (None, [0; 3]);
                            // Once 32 positions and at least half are dead, the live ones
                            // move to the front, in order.
                            let dead = model.iter().filter(|m| m.0.is_none()).count();
                            if dead >= 32 && dead * 2 >= model.len() {
                                model.retain(|m| m.0.is_some());
                                let want: Vec<(LbId, u32)> = model
                                    .iter()
                                    .enumerate()
                                    .filter_map(|(n, m)| m.0.map(|id| (id, n as u32)))
                                    .collect();
                                prop_assert_eq!(moved, want);
                            } else {
                                prop_assert!(moved.is_empty());
                            }
                        }
                    }
                }
                prop_assert_eq!(t.stale_node(), None);
                if leaves_only {
                    prop_assert!(t.levels.len() <= 1, "no level above the leaves");
                }
                for (p, &(id, r)) in model.iter().enumerate() {
                    prop_assert_eq!(t.id(p), id);
                    prop_assert_eq!(t.rooms_at(p as u32), r);
                }
                for class in 0..3 {
                    for k in 1..6 {
                        // The answer from every position, by a scan from the end.
                        let mut want = vec![None; model.len() + 1];
                        for p in (0..model.len()).rev() {
                            want[p] = if model[p].1[class] >= k { Some(p) } else { want[p + 1] };
                        }
                        for (from, &w) in want.iter().enumerate() {
                            prop_assert_eq!(t.first_from(class, k, from), w, "class {} k {} from {}", class, k, from);
                        }
                    }
                }
            }
        }
    }

    #[derive(Clone, Debug)]
    enum IndexOp {
        Insert([u32; 3]),
        Update(usize, [u32; 3]),
        Remove(usize),
    }

    fn index_op() -> impl Strategy<Value = IndexOp> {
        prop_oneof![
            4 => rooms().prop_map(IndexOp::Insert),
            4 => (any::<usize>(), rooms()).prop_map(|(i, r)| IndexOp::Update(i, r)),
            3 => any::<usize>().prop_map(IndexOp::Remove),
        ]
    }

    /// Every walk of an index: by id, fullest and emptiest, for every class and room.
    fn walks_of(index: &PoolIndex) -> Vec<Vec<LbId>> {
        let mut out = Vec::new();
        for class in 0..3 {
            for k in 1..6 {
                out.push(index.lowest_id(class, k).map(|(_, id)| id).collect());
                out.push(index.fullest(class, k).map(|(_, id)| id).collect());
                out.push(index.emptiest(class, k).map(|(_, id)| id).collect());
            }
        }
        out
    }

    proptest! {
        /// An index keeping one order walks every order as one keeping all does, after any
        /// inserts, updates and removals (compactions included); the orders it does not
        /// keep stay empty.
        #[test]
        fn walks_alike_whatever_it_keeps(ops in proptest::collection::vec(index_op(), 1..300)) {
            let mut all = PoolIndex::new(Walks::Every, TOP);
            let mut by_id = PoolIndex::new(Walks::LowestIdFirst, TOP);
            let mut by_room = PoolIndex::new(Walks::ByRoom, TOP);
            // Live LBs with their position and room, as the allocator keeps them.
            let mut live: Vec<(LbId, u32, [u32; 3])> = Vec::new();
            let mut next_id = 0;
            for op in ops {
                match op {
                    IndexOp::Insert(r) => {
                        next_id += 1;
                        let id = LbId(next_id);
                        let pos = all.insert(id, r);
                        prop_assert_eq!(by_id.insert(id, r), pos);
                        prop_assert_eq!(by_room.insert(id, r), pos);
                        live.push((id, pos, r));
                    }
                    IndexOp::Update(i, r) if !live.is_empty() => {
                        let n = i % live.len();
                        let (_, pos, old) = live[n];
                        for x in [&mut all, &mut by_id, &mut by_room] {
                            x.update(pos, (old, 0), (r, 0));
                        }
                        live[n].2 = r;
                    }
                    IndexOp::Remove(i) if !live.is_empty() => {
                        let (_, pos, old) = live.remove(i % live.len());
                        let moved = all.remove(pos, old, 0);
                        prop_assert_eq!(&by_id.remove(pos, old, 0), &moved);
                        prop_assert_eq!(&by_room.remove(pos, old, 0), &moved);
                        for (id, p) in moved {
                            if let Some(e) = live.iter_mut().find(|e| e.0 == id) {
                                e.1 = p;
                            }
                        }
                    }
                    _ => {}
                }
                let want = walks_of(&all);
                prop_assert_eq!(walks_of(&by_id), want.clone());
                prop_assert_eq!(walks_of(&by_room), want);
                prop_assert_eq!(by_id.ordered_len(), 0, "room orders not kept");
                prop_assert_eq!(by_id.tree.stale_node(), None);
                prop_assert!(by_room.tree.levels.len() <= 1, "only the leaves kept");
            }
        }
    }

    #[derive(Clone, Debug)]
    enum HotOp {
        Insert([u32; 3]),
        Update(usize, [u32; 3], u8),
        Remove(usize),
        Start(usize, usize),
        Stop(usize),
    }

    fn hot_op() -> impl Strategy<Value = HotOp> {
        prop_oneof![
            4 => rooms().prop_map(HotOp::Insert),
            5 => (any::<usize>(), rooms(), any::<u8>()).prop_map(|(i, r, m)| HotOp::Update(i, r, m)),
            3 => any::<usize>().prop_map(HotOp::Remove),
            1 => (0..HOT_LISTENERS, 0usize..3).prop_map(|(h, c)| HotOp::Start(h, c)),
            1 => (0..HOT_LISTENERS).prop_map(HotOp::Stop),
        ]
    }

    proptest! {
        /// Each hot listener's index walks, in its class, exactly the main index's walk
        /// without the LBs whose mask says the listener clashes, and nothing in the other
        /// classes: after any inserts, updates of rooms and masks, removals (compactions
        /// included), and listeners started over existing LBs and stopped.
        #[test]
        fn clash_free_walks_are_the_walks_without_the_clashes(
            ops in proptest::collection::vec(hot_op(), 1..300),
            by_room in any::<bool>(),
        ) {
            let mut index = PoolIndex::new(if by_room { Walks::ByRoom } else { Walks::LowestIdFirst }, TOP);
            // Live LBs: id, position, rooms, mask; and each started listener's class.
            let mut live: Vec<(LbId, u32, [u32; 3], u8)> = Vec::new();
            let mut started: [Option<usize>; HOT_LISTENERS] = [None; HOT_LISTENERS];
            let mut next_id = 0;
            for op in ops {
                match op {
                    HotOp::Insert(r) => {
                        next_id += 1;
                        let pos = index.insert(LbId(next_id), r);
                        live.push((LbId(next_id), pos, r, 0));
                    }
                    HotOp::Update(i, r, m) if !live.is_empty() => {
                        let n = i % live.len();
                        let (_, pos, old, old_mask) = live[n];
                        index.update(pos, (old, old_mask), (r, m));
                        live[n].2 = r;
                        live[n].3 = m;
                    }
                    HotOp::Remove(i) if !live.is_empty() => {
                        let (_, pos, old, mask) = live.remove(i % live.len());
                        for (id, p) in index.remove(pos, old, mask) {
                            if let Some(e) = live.iter_mut().find(|e| e.0 == id) {
                                e.1 = p;
                            }
                        }
                    }
                    HotOp::Start(h, class) if started[h].is_none() => {
                        index.start_clash_free(h, class);
                        for &(_, pos, r, mask) in &live {
                            if mask & (1 << h) == 0 {
                                index.enter_clash_free(h, pos, r);
                            }
                        }
                        started[h] = Some(class);
                    }
                    HotOp::Stop(h) => {
                        index.stop_clash_free(h);
                        started[h] = None;
                    }
                    _ => {}
                }
                for (h, &class) in started.iter().enumerate() {
                    let Some((sub, kept)) = index.clash_free(h) else {
                        prop_assert!(class.is_none(), "listener {} started, no index", h);
                        continue;
                    };
                    prop_assert_eq!(Some(kept), class);
                    let clashes = |id: LbId| {
                        live.iter().any(|e| e.0 == id && e.3 & (1 << h) != 0)
                    };
                    for k in 1..6 {
                        let want = |walk: Vec<LbId>| -> Vec<LbId> {
                            walk.into_iter().filter(|&id| !clashes(id)).collect()
                        };
                        let main_by_id: Vec<LbId> = index.lowest_id(kept, k).map(|(_, id)| id).collect();
                        let main_fullest: Vec<LbId> = index.fullest(kept, k).map(|(_, id)| id).collect();
                        let main_emptiest: Vec<LbId> = index.emptiest(kept, k).map(|(_, id)| id).collect();
                        prop_assert_eq!(sub.lowest_id(kept, k).map(|(_, id)| id).collect::<Vec<_>>(), want(main_by_id));
                        prop_assert_eq!(sub.fullest(kept, k).map(|(_, id)| id).collect::<Vec<_>>(), want(main_fullest));
                        prop_assert_eq!(sub.emptiest(kept, k).map(|(_, id)| id).collect::<Vec<_>>(), want(main_emptiest));
                        for other in (0..3).filter(|&c| c != kept) {
                            prop_assert_eq!(sub.lowest_id(other, k).count(), 0);
                        }
                    }
                    prop_assert_eq!(sub.tree.stale_node(), None);
                    prop_assert_eq!([0, 1, 2].map(|c| sub.open(c)), sub.recount_open());
                }
                prop_assert_eq!([0, 1, 2].map(|c| index.open(c)), index.recount_open());
            }
        }
    }

    /// A stale entry is reported where it is, at any level.
    #[test]
    fn a_stale_entry_is_found() {
        let mut t = RoomTree::default();
        for n in 0..20 {
            t.push(LbId(n), [n, 0, 0]);
        }
        assert_eq!(t.levels.len(), 3, "20 positions: 5 quads, 2, then 1");
        assert_eq!(t.stale_node(), None);
        t.levels[2][0].0[1][0] = 0;
        assert_eq!(t.stale_node(), Some((2, 1)));
        t.levels[1][1].0[0][0] += 1;
        assert_eq!(t.stale_node(), Some((1, 4)));
    }
}
