//! The capacity index of one pool (pool key and profile): which LBs have room for how many
//! listeners, so that every policy finds its candidate in logarithmic time at any number of
//! LBs — never by scanning, never cut off after a fixed number of probes.
//!
//! Room is kept per protocol class: one class when the profile mixes protocols, else one
//! per protocol (an LB holding TCP listeners has no room for a UDP claim).

mod order;

use std::cmp::Reverse;

use crate::model::LbId;
use order::RoomOrder;

/// Max-room segment tree over the pool's LBs in id order: "the lowest id with room for k".
#[derive(Clone, Debug, Default)]
pub(crate) struct RoomTree {
    /// The LB at each position, ids ascending; `None` where one was removed.
    ids: Vec<Option<LbId>>,
    /// Node `i` holds the largest room below it, per class; leaves start at `size`.
    nodes: Vec<[u32; 3]>,
    size: usize,
    dead: usize,
}

impl RoomTree {
    fn grow(&mut self) {
        let size = (self.size * 2).max(8);
        let mut nodes = vec![[0; 3]; 2 * size];
        nodes[size..size + self.size].copy_from_slice(&self.nodes[self.size..2 * self.size]);
        for i in (1..size).rev() {
            nodes[i] = max3(nodes[2 * i], nodes[2 * i + 1]);
        }
        self.nodes = nodes;
        self.size = size;
    }

    /// Appends an LB (its id is above every id present) and returns its position.
    pub fn push(&mut self, id: LbId, rooms: [u32; 3]) -> u32 {
        debug_assert!(
            self.ids
                .iter()
                .rev()
                .flatten()
                .next()
                .is_none_or(|&x| x < id)
        );
        if self.ids.len() == self.size {
            self.grow();
        }
        let pos = self.ids.len();
        self.ids.push(Some(id));
        self.set(pos as u32, rooms);
        pos as u32
    }

    /// Records an LB's room. Walks up only while a node's maximum changes: above a node
    /// that kept its value nothing changes either (most updates stop within a few levels).
    pub fn set(&mut self, pos: u32, rooms: [u32; 3]) {
        let mut i = self.size + pos as usize;
        self.nodes[i] = rooms;
        while i > 1 {
            i /= 2;
            let m = max3(self.nodes[2 * i], self.nodes[2 * i + 1]);
            if self.nodes[i] == m {
                break;
            }
            self.nodes[i] = m;
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
            .filter_map(|(i, id)| id.map(|id| (id, self.nodes[self.size + i])))
            .collect();
        *self = RoomTree::default();
        live.into_iter()
            .map(|(id, rooms)| (id, self.push(id, rooms)))
            .collect()
    }

    /// The lowest position at or after `from` with room ≥ `k` in `class`.
    pub fn first_from(&self, class: usize, k: u32, from: usize) -> Option<usize> {
        if from >= self.ids.len() || self.nodes.get(1).is_none_or(|n| n[class] < k) {
            return None;
        }
        self.descend(1, 0, self.size, class, k, from)
    }

    fn descend(
        &self,
        node: usize,
        lo: usize,
        hi: usize,
        class: usize,
        k: u32,
        from: usize,
    ) -> Option<usize> {
        if hi <= from || self.nodes[node][class] < k {
            return None;
        }
        if hi - lo == 1 {
            return Some(lo);
        }
        let mid = lo + (hi - lo) / 2;
        self.descend(2 * node, lo, mid, class, k, from)
            .or_else(|| self.descend(2 * node + 1, mid, hi, class, k, from))
    }

    /// The LB at a position.
    pub fn id(&self, pos: usize) -> Option<LbId> {
        self.ids.get(pos).copied().flatten()
    }

    /// The first inner node that does not hold the largest room of its two children, if
    /// any (for the invariant check).
    pub fn stale_node(&self) -> Option<usize> {
        (1..self.size).find(|&i| self.nodes[i] != max3(self.nodes[2 * i], self.nodes[2 * i + 1]))
    }

    /// The room recorded at a position.
    pub fn rooms_at(&self, pos: u32) -> [u32; 3] {
        self.nodes
            .get(self.size + pos as usize)
            .copied()
            .unwrap_or_default()
    }
}

fn max3(a: [u32; 3], b: [u32; 3]) -> [u32; 3] {
    [a[0].max(b[0]), a[1].max(b[1]), a[2].max(b[2])]
}

/// One pool's index: the room tree (lowest id first) and, per class, LBs ordered by room
/// (fullest or emptiest first). Neither allocates as LBs change room: the tree is an
/// array, the orders link positions in place.
#[derive(Clone, Debug, Default)]
pub(crate) struct PoolIndex {
    pub tree: RoomTree,
    pub by_room: [RoomOrder; 3],
}

impl PoolIndex {
    /// Adds a new LB (its id above all others); returns its position.
    pub fn insert(&mut self, id: LbId, rooms: [u32; 3]) -> u32 {
        let pos = self.tree.push(id, rooms);
        for (c, &r) in rooms.iter().enumerate() {
            if r > 0 {
                self.by_room[c].insert(pos, r);
            }
        }
        pos
    }

    /// Moves an LB's entries from `old` room to `new`.
    pub fn update(&mut self, pos: u32, old: [u32; 3], new: [u32; 3]) {
        if old == new {
            return;
        }
        for c in 0..3 {
            if old[c] != new[c] {
                if old[c] > 0 {
                    self.by_room[c].remove(pos);
                }
                if new[c] > 0 {
                    self.by_room[c].insert(pos, new[c]);
                }
            }
        }
        self.tree.set(pos, new);
    }

    /// Removes an LB; returns moved positions (see [`RoomTree::remove`]).
    pub fn remove(&mut self, pos: u32, old: [u32; 3]) -> Vec<(LbId, u32)> {
        for (c, &r) in old.iter().enumerate() {
            if r > 0 {
                self.by_room[c].remove(pos);
            }
        }
        let moved = self.tree.remove(pos);
        if !moved.is_empty() {
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
        Fullest {
            index: self,
            class,
            at: self.by_room[class].lower_bound(k, 0),
        }
    }

    /// LBs with room ≥ `k` in `class`, most room first, then lowest id.
    pub fn emptiest(&self, class: usize, k: u32) -> Emptiest<'_> {
        Emptiest {
            index: self,
            class,
            k,
            at: None,
            level: Level::Top,
        }
    }

    /// The id at a position of the orders.
    fn id_at(&self, pos: u32) -> LbId {
        self.tree
            .id(pos as usize)
            .unwrap_or_else(|| unreachable!("an ordered position holds an LB"))
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
    class: usize,
    at: Option<u32>,
}

impl Iterator for Fullest<'_> {
    type Item = ((u32, LbId), LbId);
    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.at?;
        let order = &self.index.by_room[self.class];
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
    class: usize,
    k: u32,
    /// The next entry of the current level.
    at: Option<u32>,
    level: Level,
}

impl Iterator for Emptiest<'_> {
    type Item = ((Reverse<u32>, LbId), LbId);
    fn next(&mut self) -> Option<Self::Item> {
        let order = &self.index.by_room[self.class];
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
